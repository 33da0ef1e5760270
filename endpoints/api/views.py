"""Endpoint onboarding API (tenant-scoped; another tenant's id is 404)."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane import scoping, tenancy
from controlplane.errors import FerryError, ValidationFailed
from controlplane.pagination import CursorPage
from controlplane.parsers import parse_time
from controlplane.schema import errors
from endpoints import netguard, network, probes, selectors, services, sshkeys
from endpoints.api import schema
from endpoints.api import serializers as s
from endpoints.models import Endpoint


def _valid(serializer_class, request: Request, **context):
    serializer = serializer_class(data=request.data, context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class EndpointListView(APIView):
    restricted_refused = ("post",)  # controlplane/scoping.py
    pagination_class = CursorPage

    @extend_schema(
        summary="List endpoints",
        description="The tenant's endpoints, newest first, a page at a time: follow `next` until it is null.",
        parameters=[
            OpenApiParameter("kind", str, enum=Endpoint.Kind.values, description="Only endpoints of this kind."),
            OpenApiParameter("since", str, description="ISO 8601 time: endpoints created at or after it."),
        ],
        responses=schema.endpoint_out(many=True),
    )
    def get(self, request: Request) -> Response:
        kind = request.query_params.get("kind") or None
        if kind and kind not in Endpoint.Kind.values:
            raise ValidationFailed("The request is not valid.", fields={"kind": ["Use sftp or s3."]})
        since = None
        if request.query_params.get("since"):
            since = parse_time(request.query_params["since"])
            if since is None:
                raise ValidationFailed("The request is not valid.", fields={"since": ["Use an ISO 8601 time."]})
        endpoints = selectors.endpoint_list(tenant=tenancy.tenant_of(request), kind=kind, since=since)
        endpoints = scoping.narrow(request, endpoints, endpoint_fields=["pk"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(endpoints, request, view=self)
        return paginator.get_paginated_response(s.EndpointSerializer(page, many=True).data)

    @extend_schema(
        summary="Create an endpoint",
        description="An SFTP server or an S3 bucket that routes and transfers read from or write to. "
        "`kind` chooses the shape of `config` and `credentials`. Credentials are stored in AWS "
        "Secrets Manager and never shown again; the host must not resolve to a private address.",
        request=schema.ENDPOINT_CREATE,
        responses={201: schema.endpoint_out(), **errors({503: "Secrets Manager is not available now; try again."})},
    )
    def post(self, request: Request) -> Response:
        tenant = tenancy.tenant_of(request)
        data = _valid(s.EndpointCreateSerializer, request, tenant=tenant)
        endpoint = services.create_endpoint(
            tenant=tenant,
            name=data["name"],
            kind=data["kind"],
            config=data["config"],
            credentials=data.get("credentials"),
        )
        return Response(s.EndpointSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailView(APIView):
    @extend_schema(
        summary="Show an endpoint",
        description="The endpoint's config and which credentials are stored (never the secrets).",
        responses=schema.endpoint_out(),
    )
    def get(self, request: Request, endpoint_id) -> Response:
        endpoint = selectors.endpoint_get(tenant=tenancy.tenant_of(request), endpoint_id=endpoint_id)
        return Response(s.EndpointSerializer(endpoint).data)

    @extend_schema(
        summary="Change an endpoint",
        description="Rename the endpoint and/or change its config: the fields given are merged into "
        "the current config, which is then validated whole. The kind cannot change; credentials "
        "change with `PUT /endpoints/{id}/credentials`.",
        request=schema.EndpointPatch,
        responses={
            200: schema.endpoint_out(),
            **errors({409: "The endpoint changed while this request was made; read it again and retry."}),
        },
    )
    def patch(self, request: Request, endpoint_id) -> Response:
        tenant = tenancy.tenant_of(request)
        endpoint = selectors.endpoint_get(tenant=tenant, endpoint_id=endpoint_id)
        data = _valid(s.EndpointUpdateSerializer, request, tenant=tenant, endpoint=endpoint)
        endpoint = services.update_endpoint(
            endpoint=endpoint, expected_version=endpoint.version, name=data.get("name"), config=data.get("config")
        )
        return Response(s.EndpointSerializer(endpoint).data)

    @extend_schema(
        summary="Delete an endpoint",
        description="Refused while a route uses the endpoint or one of its transfers has not finished. "
        "Its secret is scheduled for deletion.",
        responses={
            204: None,
            **errors(
                {409: "A route uses the endpoint (`endpoint_in_use`) or its transfers are running (`endpoint_busy`)."}
            ),
        },
    )
    def delete(self, request: Request, endpoint_id) -> Response:
        endpoint = selectors.endpoint_get(tenant=tenancy.tenant_of(request), endpoint_id=endpoint_id)
        services.delete_endpoint(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointCredentialsView(APIView):
    @extend_schema(
        summary="Replace an endpoint's credentials",
        description="Store new credentials as a new secret version. The body is the credentials object "
        "of the endpoint's kind; transfers already running finish with the old ones.",
        request=schema.CREDENTIALS,
        responses={200: schema.endpoint_out(), **errors({503: "Secrets Manager is not available now; try again."})},
    )
    def put(self, request: Request, endpoint_id) -> Response:
        endpoint = selectors.endpoint_get(tenant=tenancy.tenant_of(request), endpoint_id=endpoint_id)
        credentials = s.validate_credentials(endpoint.kind, request.data)
        endpoint = services.rotate_credentials(endpoint=endpoint, credentials=credentials)
        return Response(s.EndpointSerializer(endpoint).data)


class EndpointSshKeyView(APIView):
    @extend_schema(
        summary="Show an endpoint's SSH key",
        description="The public half of the SSH key Ferry issued for this SFTP endpoint, in OpenSSH format for "
        "the partner's `authorized_keys`, and the key it replaced while that one is still offered. The private "
        "key is never shown. Not found when no key was issued (or the credentials were replaced since).",
        responses=s.SshKeySerializer,
    )
    def get(self, request: Request, endpoint_id) -> Response:
        endpoint = selectors.endpoint_get(tenant=tenancy.tenant_of(request), endpoint_id=endpoint_id)
        return Response(sshkeys.shown(endpoint))

    @extend_schema(
        summary="Issue or rotate an endpoint's SSH key",
        description="Ferry generates an Ed25519 key pair for this SFTP endpoint: the private key goes to AWS "
        "Secrets Manager with the endpoint's credentials (a password there is kept), the public key is "
        "returned for the partner's `authorized_keys`. The key the endpoint used until now (Ferry's or your "
        "own) is still offered after the new one for `overlap_hours`, so the partner can switch without a "
        "gap. An S3 endpoint is a 400 `not_sftp`.",
        request=s.SshKeyIssueSerializer,
        responses={201: s.SshKeySerializer, **errors({503: "Secrets Manager is not available now; try again."})},
    )
    def post(self, request: Request, endpoint_id) -> Response:
        endpoint = selectors.endpoint_get(tenant=tenancy.tenant_of(request), endpoint_id=endpoint_id)
        data = _valid(s.SshKeyIssueSerializer, request)
        endpoint = sshkeys.issue(endpoint=endpoint, overlap=timedelta(hours=data["overlap_hours"]))
        return Response(sshkeys.shown(endpoint), status=status.HTTP_201_CREATED)


class EndpointTestView(APIView):
    throttle_scope = "probe"  # opens an outbound connection (controlplane/throttling.py)

    @extend_schema(
        summary="Test an endpoint",
        description="Connect with the stored config and credentials and report each check it ran. "
        "A failed check is `ok: false` with its detail, not an error response. Takes no body.",
        request=None,
        responses=s.ConnectionTestSerializer,
    )
    def post(self, request: Request, endpoint_id) -> Response:
        endpoint = selectors.endpoint_get(tenant=tenancy.tenant_of(request), endpoint_id=endpoint_id)
        if request.data:
            raise ValidationFailed(
                "The request is not valid.", fields={k: ["Unknown field."] for k in sorted(request.data)}
            )
        return Response(probes.connection_test(endpoint))


class HostKeyScanView(APIView):
    throttle_scope = "probe"  # opens an outbound connection (controlplane/throttling.py)

    @extend_schema(
        summary="Scan a server's host keys",
        description="Connect to an SSH server and return its host keys as pins for an SFTP endpoint's "
        "`config.host_keys`. Compare them with what the server's operator tells you before pinning. "
        "A server that does not answer is a 400 with code `unreachable`.",
        request=s.HostKeyScanSerializer,
        responses=s.HostKeyScanResultSerializer,
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.HostKeyScanSerializer, request)
        try:
            found = probes.scan_host_keys(data["host"], data["port"])
        except netguard.Refused as exc:
            raise ValidationFailed("The request is not valid.", fields={"host": [str(exc)]}) from None
        except probes.ScanFailed as exc:
            raise FerryError(str(exc), code="unreachable") from None
        return Response(found)


class NetworkView(APIView):
    @extend_schema(
        summary="Show Ferry's network facts",
        description="What a partner's firewall and SSH server must allow: the addresses Ferry connects from in "
        "each region (allowlist all of them: either region may run a transfer), and the SSH algorithms Ferry's "
        "client offers (host key algorithms, ciphers, key exchange, MACs) and the type of the keys it issues.",
        responses=s.NetworkSerializer,
    )
    def get(self, request: Request) -> Response:
        return Response(network.facts())
