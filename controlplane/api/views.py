"""The calling tenant and its API keys."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane import tenancy
from controlplane.api.serializers import ApiKeyCreateSerializer, ApiKeySerializer
from controlplane.models import ApiKey


class TenantView(APIView):
    """Who am I: the tenant the key belongs to, and the key's scope."""

    @extend_schema(
        responses=inline_serializer(
            "Tenant",
            {
                "id": serializers.UUIDField(),
                "name": serializers.CharField(),
                "key": inline_serializer(
                    "TenantKey", {"prefix": serializers.CharField(), "scope": serializers.CharField()}
                ),
                "role_trust_principals": serializers.ListField(
                    child=serializers.CharField(),
                    help_text="The IAM roles of Ferry that assume an S3 endpoint's role: the Principal of its "
                    "trust policy (with the endpoint's config.external_id as sts:ExternalId).",
                ),
            },
        )
    )
    def get(self, request: Request) -> Response:
        tenant = tenancy.tenant_of(request)
        return Response(
            {
                "id": str(tenant.id),
                "name": tenant.name,
                "key": {"prefix": request.auth.prefix, "scope": request.auth.scope},
                "role_trust_principals": list(settings.FERRY_TASK_ROLE_ARNS),
            }
        )


class ApiKeyListView(APIView):
    @extend_schema(responses=ApiKeySerializer(many=True))
    def get(self, request: Request) -> Response:
        keys = ApiKey.objects.filter(tenant=tenancy.tenant_of(request)).order_by("-created_at")
        return Response({"results": ApiKeySerializer(keys, many=True).data, "next": None})

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeySerializer})
    def post(self, request: Request) -> Response:
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = tenancy.issue_api_key(tenant=tenancy.tenant_of(request), **serializer.validated_data)
        data = ApiKeySerializer(issued.api_key).data
        data["key"] = issued.plaintext  # shown once, never again
        return Response(data, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, key_id) -> Response:
        key = get_object_or_404(ApiKey, pk=key_id, tenant=tenancy.tenant_of(request), revoked_at__isnull=True)
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)
