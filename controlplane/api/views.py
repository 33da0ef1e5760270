"""The calling tenant and its API keys."""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane import oauth, selectors, tenancy
from controlplane.api.serializers import (
    ApiKeyCreateSerializer,
    ApiKeyIssuedSchema,
    ApiKeyRotatedSchema,
    ApiKeyRotateSerializer,
    ApiKeySerializer,
    AuditEntrySerializer,
    OAuthClientCreateSerializer,
    OAuthClientIssuedSchema,
    OAuthClientSerializer,
)
from controlplane.errors import NotFound, ValidationFailed
from controlplane.models import ApiKey, OAuthClient
from controlplane.pagination import CursorPage
from controlplane.parsers import parse_time


class TenantView(APIView):
    """Who am I: the tenant the key belongs to, and the key's scope."""

    @extend_schema(
        summary="Show the calling tenant",
        description="The tenant the API key belongs to, and the key's prefix and scope. Called with an OAuth "
        "access token, `key` describes the token: `kind` is `oauth_client`, `prefix` the client id and "
        "`expires_at` the token's expiry.",
        responses=inline_serializer(
            "Tenant",
            {
                "id": serializers.UUIDField(),
                "name": serializers.CharField(),
                "key": inline_serializer(
                    "TenantKey",
                    {
                        "kind": serializers.ChoiceField(
                            choices=["api_key", "oauth_client"], help_text="What the caller authenticated with."
                        ),
                        "prefix": serializers.CharField(),
                        "scope": serializers.ChoiceField(choices=ApiKey.Scope.choices),
                        "expires_at": serializers.DateTimeField(
                            allow_null=True, help_text="When this key stops working; null: never."
                        ),
                    },
                ),
                "role_trust_principals": serializers.ListField(
                    child=serializers.CharField(),
                    help_text="The IAM roles of Ferry that assume an S3 endpoint's role: the Principal of its "
                    "trust policy (with the endpoint's config.external_id as sts:ExternalId).",
                ),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        tenant = tenancy.tenant_of(request)
        return Response(
            {
                "id": str(tenant.id),
                "name": tenant.name,
                "key": {
                    "kind": "oauth_client" if isinstance(request.auth, oauth.OAuthCaller) else "api_key",
                    "prefix": request.auth.prefix,
                    "scope": request.auth.scope,
                    "expires_at": serializers.DateTimeField().to_representation(request.auth.expires_at)
                    if request.auth.expires_at
                    else None,
                },
                "role_trust_principals": list(settings.FERRY_TASK_ROLE_ARNS),
            }
        )


class ApiKeyListView(APIView):
    restricted_refused = "*"  # a restricted key manages no keys (controlplane/scoping.py)
    pagination_class = CursorPage

    @extend_schema(
        summary="List API keys",
        description="The tenant's API keys, revoked ones included, newest first, a page at a time. "
        "Only the prefix of a key is shown, never the key. `expires_soon` flags a working key that expires "
        "within 14 days; `last_used_at` and `last_used_from` are updated at most once a minute.",
        responses=ApiKeySerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        keys = ApiKey.objects.filter(tenant=tenancy.tenant_of(request))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(keys, request, view=self)
        return paginator.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(
        summary="Issue an API key",
        description="A new key for the tenant. `key` is shown in this answer only: store it now. "
        "A `read` key can only read; a `write` key can also change things. Without `expires_at` the key "
        "expires after the deployment's maximum lifetime (365 days unless the operator set another); an "
        "expired key is answered 401 `api_key_expired`.",
        request=ApiKeyCreateSerializer,
        responses={201: ApiKeyIssuedSchema},
    )
    def post(self, request: Request) -> Response:
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = tenancy.issue_api_key(tenant=tenancy.tenant_of(request), **serializer.validated_data)
        data = ApiKeySerializer(issued.api_key).data
        data["key"] = issued.plaintext  # shown once, never again
        return Response(data, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    restricted_refused = "*"  # a restricted key manages no keys (controlplane/scoping.py)

    @extend_schema(
        summary="Revoke an API key",
        description="The key stops working at once. A key already revoked is not found.",
        request=None,
        responses={204: None},
    )
    def delete(self, request: Request, key_id) -> Response:
        tenant = tenancy.tenant_of(request)
        key = get_object_or_404(ApiKey, pk=key_id, tenant=tenant, revoked_at__isnull=True)
        if not tenancy.revoke_api_key(prefix=key.prefix, tenant=tenant):
            raise NotFound("Not found.")  # revoked meanwhile
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyRotateView(APIView):
    restricted_refused = "*"  # a restricted key manages no keys (controlplane/scoping.py)

    @extend_schema(
        summary="Rotate an API key",
        description="Issues a new key with the same scope and label, and lets the old one run out: it keeps "
        "working for `overlap_hours` (24 unless given, at most 168), so clients can switch without a gap. "
        "`key` is the new key, shown in this answer only; `previous` is the old key with its new `expires_at`. "
        "A key revoked or already expired is not found.",
        request=ApiKeyRotateSerializer,
        responses={201: ApiKeyRotatedSchema},
    )
    def post(self, request: Request, key_id) -> Response:
        key = get_object_or_404(ApiKey, pk=key_id, tenant=tenancy.tenant_of(request), revoked_at__isnull=True)
        serializer = ApiKeyRotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        overlap = timedelta(hours=serializer.validated_data["overlap_hours"])
        rotated = tenancy.rotate_api_key(key=key, overlap=overlap)
        data = ApiKeySerializer(rotated.issued.api_key).data
        data["key"] = rotated.issued.plaintext  # shown once, never again
        data["previous"] = ApiKeySerializer(rotated.previous).data
        return Response(data, status=status.HTTP_201_CREATED)


class OAuthClientListView(APIView):
    restricted_refused = "*"  # a restricted key manages no keys (controlplane/scoping.py)
    pagination_class = CursorPage

    @extend_schema(
        summary="List OAuth clients",
        description="The tenant's OAuth2 clients (client credentials), revoked ones included, newest first, "
        "a page at a time. The client secret is never shown again.",
        responses=OAuthClientSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        clients = OAuthClient.objects.filter(tenant=tenancy.tenant_of(request))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(clients, request, view=self)
        return paginator.get_paginated_response(OAuthClientSerializer(page, many=True).data)

    @extend_schema(
        summary="Register an OAuth client",
        description="A machine client for the OAuth2 client credentials grant. `client_secret` is shown in "
        "this answer only: store it now. The client gets access tokens from `POST /oauth/token` "
        "(`grant_type=client_credentials`, the client id and secret by HTTP Basic authentication, optionally "
        "`scope=read` or `scope=read write`) and sends them as `Authorization: Bearer <token>`. Tokens are "
        "short-lived (an hour unless the operator set another lifetime); a `read` client's tokens can only read.",
        request=OAuthClientCreateSerializer,
        responses={201: OAuthClientIssuedSchema},
    )
    def post(self, request: Request) -> Response:
        serializer = OAuthClientCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = oauth.register_client(tenant=tenancy.tenant_of(request), **serializer.validated_data)
        data = OAuthClientSerializer(issued.client).data
        data["client_secret"] = issued.client_secret  # shown once, never again
        data["token_url"] = request.build_absolute_uri("/oauth/token")
        return Response(data, status=status.HTTP_201_CREATED)


class OAuthClientDetailView(APIView):
    restricted_refused = "*"  # a restricted key manages no keys (controlplane/scoping.py)

    @extend_schema(
        summary="Revoke an OAuth client",
        description="The client can get no new token, and the tokens it holds stop working at once. "
        "A client already revoked is not found.",
        request=None,
        responses={204: None},
    )
    def delete(self, request: Request, client_id) -> Response:
        oauth.revoke_client(tenant=tenancy.tenant_of(request), client_id=client_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditPage(CursorPage):
    """Newest first by the chain's order (``seq`` grows with every entry)."""

    ordering = ("-seq",)  # type: ignore[assignment]


_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


def _audit_filters(request: Request) -> dict:
    params = request.query_params
    errors: dict[str, list[str]] = {}
    out: dict = {}
    for name in ("kind", "action"):
        value = params.get(name)
        if value:
            if not _IDENTIFIER.match(value):
                errors[name] = ["Lower-case letters, digits, `_` and `.`, at most 64."]
            out[name] = value
    if params.get("object_id"):
        if len(params["object_id"]) > 64 or not params["object_id"].isprintable():
            errors["object_id"] = ["An object id: at most 64 printable characters."]
        out["object_id"] = params["object_id"]
    for name in ("since", "until"):
        if params.get(name):
            when = parse_time(params[name])
            if when is None or when.tzinfo is None:
                errors[name] = ["Use an ISO 8601 time with its offset, such as 2026-01-31T00:00:00Z."]
            out[name] = when
    if errors:
        raise ValidationFailed("The request is not valid.", fields=errors)
    return out


class AuditListView(APIView):
    pagination_class = AuditPage

    @extend_schema(
        summary="List the audit log",
        description="Every configuration change made to the tenant's objects (API keys, endpoints, routes, "
        "re-drives and cancels…), by its keys, OAuth clients or Ferry's operators, newest first, a page at a "
        "time. `before` and `after` show the object around the change; secrets are never shown. The filters "
        "combine.",
        parameters=[
            OpenApiParameter("kind", str, description="Only changes of this kind of object (`endpoint`, `route`…)."),
            OpenApiParameter("action", str, description="Only this action (`endpoint.update`…)."),
            OpenApiParameter("object_id", str, description="Only changes of this object."),
            OpenApiParameter("since", str, description="ISO 8601 time: made at or after it."),
            OpenApiParameter("until", str, description="ISO 8601 time: made before it."),
        ],
        responses=AuditEntrySerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        entries = selectors.audit_entries(tenant=tenancy.tenant_of(request), **_audit_filters(request))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(AuditEntrySerializer(page, many=True).data)
