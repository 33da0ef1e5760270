"""Endpoint onboarding API (tenant-scoped; another tenant's id is 404)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane import tenancy
from controlplane.errors import FerryError, ValidationFailed
from controlplane.pagination import CursorPage
from controlplane.parsers import parse_time
from endpoints import netguard, probes, selectors, services
from endpoints.api import serializers as s
from endpoints.models import Endpoint


def _valid(serializer_class, request: Request, **context):
    serializer = serializer_class(data=request.data, context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class EndpointListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, enum=Endpoint.Kind.values),
            OpenApiParameter("since", str, description="ISO 8601 time: endpoints created at or after it."),
        ],
        responses=s.EndpointSerializer(many=True),
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
        paginator = CursorPage()
        page = paginator.paginate_queryset(endpoints, request, view=self)
        return paginator.get_paginated_response(s.EndpointSerializer(page, many=True).data)

    @extend_schema(request=s.EndpointCreateSerializer, responses={201: s.EndpointSerializer})
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
    @extend_schema(responses=s.EndpointSerializer)
    def get(self, request: Request, endpoint_id) -> Response:
        endpoint = selectors.endpoint_get(tenant=tenancy.tenant_of(request), endpoint_id=endpoint_id)
        return Response(s.EndpointSerializer(endpoint).data)

    @extend_schema(request=s.EndpointUpdateSerializer, responses=s.EndpointSerializer)
    def patch(self, request: Request, endpoint_id) -> Response:
        tenant = tenancy.tenant_of(request)
        endpoint = selectors.endpoint_get(tenant=tenant, endpoint_id=endpoint_id)
        data = _valid(s.EndpointUpdateSerializer, request, tenant=tenant, endpoint=endpoint)
        endpoint = services.update_endpoint(
            endpoint=endpoint, expected_version=endpoint.version, name=data.get("name"), config=data.get("config")
        )
        return Response(s.EndpointSerializer(endpoint).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, endpoint_id) -> Response:
        endpoint = selectors.endpoint_get(tenant=tenancy.tenant_of(request), endpoint_id=endpoint_id)
        services.delete_endpoint(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointCredentialsView(APIView):
    @extend_schema(
        request=s.SftpCredentialsSerializer,
        responses=s.EndpointSerializer,
        description="Replace the endpoint's credentials (a new secret version). The body is the "
        "credentials object of the endpoint's kind.",
    )
    def put(self, request: Request, endpoint_id) -> Response:
        endpoint = selectors.endpoint_get(tenant=tenancy.tenant_of(request), endpoint_id=endpoint_id)
        credentials = s.validate_credentials(endpoint.kind, request.data)
        endpoint = services.rotate_credentials(endpoint=endpoint, credentials=credentials)
        return Response(s.EndpointSerializer(endpoint).data)


class EndpointTestView(APIView):
    @extend_schema(request=None, responses=s.ConnectionTestSerializer)
    def post(self, request: Request, endpoint_id) -> Response:
        endpoint = selectors.endpoint_get(tenant=tenancy.tenant_of(request), endpoint_id=endpoint_id)
        if request.data:
            raise ValidationFailed(
                "The request is not valid.", fields={k: ["Unknown field."] for k in sorted(request.data)}
            )
        return Response(probes.connection_test(endpoint))


class HostKeyScanView(APIView):
    @extend_schema(request=s.HostKeyScanSerializer, responses=s.HostKeyScanResultSerializer)
    def post(self, request: Request) -> Response:
        data = _valid(s.HostKeyScanSerializer, request)
        try:
            found = probes.scan_host_keys(data["host"], data["port"])
        except netguard.Refused as exc:
            raise ValidationFailed("The request is not valid.", fields={"host": [str(exc)]}) from None
        except probes.ScanFailed as exc:
            raise FerryError(str(exc), code="unreachable") from None
        return Response(found)
