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

from controlplane import selectors, tenancy
from controlplane.api.serializers import (
    ApiKeyCreateSerializer,
    ApiKeyIssuedSchema,
    ApiKeyRotatedSchema,
    ApiKeyRotateSerializer,
    ApiKeySerializer,
    AuditEntrySerializer,
)
from controlplane.errors import NotFound, ValidationFailed
from controlplane.models import ApiKey
from controlplane.pagination import CursorPage
from controlplane.parsers import parse_time


class TenantView(APIView):
    """Who am I: the tenant the key belongs to, and the key's scope."""

    @extend_schema(
        summary="Show the calling tenant",
        description="The tenant the API key belongs to, and the key's prefix and scope.",
        responses=inline_serializer(
            "Tenant",
            {
                "id": serializers.UUIDField(),
                "name": serializers.CharField(),
                "key": inline_serializer(
                    "TenantKey",
                    {
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
