"""OpenPGP keys API (``/api/v1/pgp-keys``; tenant-scoped, another tenant's id is 404).

Upload takes a public key, or a private key with its passphrase; the private parts are
write-only (Secrets Manager), and the API shows what GnuPG says of the key: fingerprint,
user ids, algorithm, dates, what it can do.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane import tenancy
from controlplane.pagination import CursorPage
from controlplane.schema import errors
from endpoints import validation as endpoint_validation
from endpoints.api.serializers import StrictSerializer
from engine.pgp import MAX_KEY_BYTES
from transfers import pgpkeys
from transfers.models import PgpKey

_NAME = "1-100 characters: letters, digits, space, '.', '_' and '-', starting with a letter or digit; unique."


class PgpKeyIn(StrictSerializer):
    name = serializers.CharField(max_length=100, help_text=_NAME)
    key = serializers.CharField(
        max_length=MAX_KEY_BYTES,
        trim_whitespace=False,
        help_text="One ASCII-armored OpenPGP key: a public key (a partner's, to encrypt to or verify "
        "with) or a private key (the tenant's, to sign or decrypt with). A private key is kept in "
        "AWS Secrets Manager only and never shown again.",
    )
    passphrase = serializers.CharField(
        max_length=1024,
        required=False,
        allow_null=True,
        trim_whitespace=False,
        write_only=True,
        help_text="The private key's passphrase, if it has one (checked at upload; stored with the key).",
    )

    def validate_name(self, value: str) -> str:
        try:
            return endpoint_validation.name(value)
        except endpoint_validation.Invalid as exc:
            raise serializers.ValidationError(str(exc)) from None


class PgpKeyOut(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=PgpKey.Kind.choices, help_text="public: stored as data; private: its secret parts in Secrets Manager."
    )
    fingerprint = serializers.CharField(help_text="The primary key's fingerprint (hex, upper case).")
    algorithm = serializers.CharField(help_text="The primary key's algorithm, e.g. ed25519 or rsa3072.")
    user_ids = serializers.ListField(child=serializers.CharField())
    can_encrypt = serializers.BooleanField()
    can_sign = serializers.BooleanField()
    key_created_at = serializers.DateTimeField(help_text="When the key itself was made.")
    expires_at = serializers.DateTimeField(allow_null=True, help_text="Null: it does not expire.")
    expired = serializers.SerializerMethodField()
    public_key = serializers.CharField(help_text="The armored public part (never the private one).")
    created_at = serializers.DateTimeField(help_text="When it was uploaded.")

    @extend_schema_field(serializers.BooleanField(help_text="The key has expired since it was uploaded."))
    def get_expired(self, key: PgpKey) -> bool:
        return key.expires_at is not None and key.expires_at <= timezone.now()


class PgpKeyListView(APIView):
    pagination_class = CursorPage

    @extend_schema(
        summary="List OpenPGP keys",
        description="The tenant's OpenPGP keys, newest first, a page at a time: follow `next` until it is null.",
        responses=PgpKeyOut(many=True),
    )
    def get(self, request: Request) -> Response:
        keys = pgpkeys.key_list(tenant=tenancy.tenant_of(request))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(keys, request, view=self)
        return paginator.get_paginated_response(PgpKeyOut(page, many=True).data)

    @extend_schema(
        summary="Upload an OpenPGP key",
        description="A partner's public key or one of the tenant's private keys, for the route options "
        "`encrypt`, `sign`, `decrypt` and `verify_signature` (docs/pgp.md). Refused when GnuPG cannot "
        "read it, when it is expired or revoked, or when the passphrase does not unlock it.",
        request=PgpKeyIn,
        responses={201: PgpKeyOut, **errors({503: "Secrets Manager or GnuPG is not available now; try again."})},
    )
    def post(self, request: Request) -> Response:
        tenant = tenancy.tenant_of(request)
        serializer = PgpKeyIn(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = pgpkeys.create_key(
            tenant=tenant, name=data["name"], armored=data["key"], passphrase=data.get("passphrase")
        )
        return Response(PgpKeyOut(key).data, status=status.HTTP_201_CREATED)


class PgpKeyDetailView(APIView):
    @extend_schema(
        summary="Show an OpenPGP key",
        description="The key's fingerprint, user ids, algorithm, expiry and public part (never a private part).",
        responses=PgpKeyOut,
    )
    def get(self, request: Request, key_id) -> Response:
        return Response(PgpKeyOut(pgpkeys.key_get(tenant=tenancy.tenant_of(request), key_id=key_id)).data)

    @extend_schema(
        summary="Delete an OpenPGP key",
        description="Refused while a route's options name the key. A private key's secret is scheduled for deletion.",
        responses={204: None, **errors({409: "A route uses the key (`pgp_key_in_use`)."})},
    )
    def delete(self, request: Request, key_id) -> Response:
        key = pgpkeys.key_get(tenant=tenancy.tenant_of(request), key_id=key_id)
        pgpkeys.delete_key(key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)
