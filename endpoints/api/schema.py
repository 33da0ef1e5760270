"""Schema-only serializers: each kind of endpoint with its own shape in the OpenAPI schema.

The API takes ``config`` and ``credentials`` as objects and validates them by ``kind``
(``serializers.py``); these serializers are never used on data. They give the schema one
shape per kind, with a discriminator on ``kind``, so the docs say what an SFTP or an S3
endpoint needs, with the limits the validation applies.
"""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from endpoints.api.serializers import (
    CredentialsInfoSerializer,
    S3ConfigSerializer,
    S3CredentialsSerializer,
    SftpConfigSerializer,
    SftpCredentialsSerializer,
    StrictSerializer,
)

_NAME = "1-100 characters: letters, digits, space, '.', '_' and '-', starting with a letter or digit; unique."


# --- what a client sends ------------------------------------------------------------------


class SftpEndpointCreate(StrictSerializer):
    name = serializers.CharField(max_length=100, help_text=_NAME)
    kind = serializers.ChoiceField(choices=["sftp"])
    config = SftpConfigSerializer()
    credentials = SftpCredentialsSerializer(help_text="A password, a private key (with its passphrase), or both.")


class S3EndpointCreate(StrictSerializer):
    name = serializers.CharField(max_length=100, help_text=_NAME)
    kind = serializers.ChoiceField(choices=["s3"])
    config = S3ConfigSerializer()
    credentials = S3CredentialsSerializer(
        required=False, allow_null=True, help_text="Required unless `config.role_arn` is given."
    )


ENDPOINT_CREATE = PolymorphicProxySerializer(
    component_name="EndpointCreate",
    serializers={"sftp": SftpEndpointCreate, "s3": S3EndpointCreate},
    resource_type_field_name="kind",
)


class SftpConfigChange(SftpConfigSerializer):
    schema_partial = True  # PATCH merges it into the current config: no field is required


class S3ConfigChange(S3ConfigSerializer):
    schema_partial = True


class EndpointPatch(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False, help_text=_NAME)
    config = PolymorphicProxySerializer(
        component_name="EndpointConfigPatch",
        serializers=[SftpConfigChange, S3ConfigChange],
        resource_type_field_name=None,
        required=False,
        help_text="Merged into the current config, then validated whole; the kind cannot change.",
    )


CREDENTIALS = PolymorphicProxySerializer(
    component_name="EndpointCredentials",
    serializers=[SftpCredentialsSerializer, S3CredentialsSerializer],
    resource_type_field_name=None,
)


# --- what the API shows -------------------------------------------------------------------


class SftpConfigOut(serializers.Serializer):
    host = serializers.CharField()
    port = serializers.IntegerField()
    username = serializers.CharField()
    root = serializers.CharField()
    host_keys = serializers.ListField(child=serializers.CharField(), help_text="Pinned host keys.")
    max_connections = serializers.IntegerField(
        help_text="Connections open at once, fleet-wide (all workers, both regions)."
    )
    max_bytes_per_second = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Bandwidth cap, fleet-wide, shared by the endpoint's connections; null: none.",
    )


class S3ConfigOut(serializers.Serializer):
    bucket = serializers.CharField()
    prefix = serializers.CharField(allow_blank=True)
    region = serializers.CharField()
    role_arn = serializers.CharField(required=False, allow_null=True)
    external_id = serializers.CharField(required=False, allow_null=True)
    sse = serializers.ChoiceField(choices=["AES256", "aws:kms"], required=False, allow_null=True)
    kms_key_id = serializers.CharField(required=False, allow_null=True)


class CircuitOut(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=["closed", "open", "half_open"],
        help_text="closed: dialled as usual; open: not dialled until open_until; half_open: one probe is under way.",
    )
    consecutive_failures = serializers.IntegerField(
        min_value=0, help_text="Connection failures in a row since the last connection that worked."
    )
    open_until = serializers.DateTimeField(
        allow_null=True, help_text="End of the cool-down (open) or of the probe's turn (half_open); null when closed."
    )


class _EndpointOut(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    credentials = CredentialsInfoSerializer(help_text="Which credentials are stored and when; never the secrets.")
    circuit = CircuitOut(help_text="The endpoint's circuit breaker (docs/endpoints.md, 'Circuit breaker').")
    version = serializers.IntegerField(help_text="Goes up by one with every change.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SftpEndpoint(_EndpointOut):
    kind = serializers.ChoiceField(choices=["sftp"])
    config = SftpConfigOut()


class S3Endpoint(_EndpointOut):
    kind = serializers.ChoiceField(choices=["s3"])
    config = S3ConfigOut()


def endpoint_out(*, many: bool = False) -> PolymorphicProxySerializer:
    """An endpoint as the API shows it, by kind."""
    return PolymorphicProxySerializer(
        component_name="Endpoint",
        serializers={"sftp": SftpEndpoint, "s3": S3Endpoint},
        resource_type_field_name="kind",
        many=many,
    )
