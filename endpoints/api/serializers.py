"""Endpoint API serializers: strict input (unknown fields refused), credentials write-only.

Error messages come from ``endpoints.validation`` and never repeat a submitted secret.
Field paths in errors follow the body: ``config.host``, ``credentials.private_key``…
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from endpoints import netguard, validation
from endpoints.models import Circuit, Endpoint
from endpoints.services import ISSUED_CONFIG_KEYS


def _rule(fn, value, *args):
    try:
        return fn(value, *args)
    except validation.Invalid as exc:
        raise serializers.ValidationError(str(exc)) from None


MIN_BYTES_PER_SECOND = 1024
MAX_BYTES_PER_SECOND = 10 * 1024**3


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not declare (``explain`` gives a better message for some)."""

    explain: dict[str, str] = {}
    closed_schema = True  # the OpenAPI schema says additionalProperties: false (controlplane/schema.py)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({k: [self.explain.get(k, "Unknown field.")] for k in unknown})
        return super().to_internal_value(data)


# --- config ------------------------------------------------------------------------------


class SftpConfigSerializer(StrictSerializer):
    host = serializers.CharField(max_length=255)
    port = serializers.IntegerField(default=22, min_value=1, max_value=65535)
    username = serializers.CharField(max_length=255, trim_whitespace=False)
    root = serializers.CharField(default="/", max_length=1024, trim_whitespace=False)
    host_keys = serializers.ListField(child=serializers.CharField(max_length=200), allow_empty=True)
    max_connections = serializers.IntegerField(default=4, min_value=1, max_value=32)
    # Fleet-wide, shared by the endpoint's connections (docs/endpoints.md "Connection and
    # bandwidth caps"). 1 KiB/s .. 10 GiB/s; null: no cap.
    max_bytes_per_second = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=MIN_BYTES_PER_SECOND, max_value=MAX_BYTES_PER_SECOND
    )

    def validate_host(self, value: str) -> str:
        return _rule(validation.host, value)

    def validate_username(self, value: str) -> str:
        return _rule(validation.username, value)

    def validate_root(self, value: str) -> str:
        return _rule(validation.remote_root, value)

    def validate_host_keys(self, value: list[str]) -> list[str]:
        return _rule(validation.pins, value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The SSRF guard at onboarding (it runs again at every connect).
        try:
            netguard.check_port(attrs["port"], allowed_ports=netguard.parse_ports(settings.FERRY_SFTP_ALLOWED_PORTS))
        except netguard.Refused as exc:
            raise serializers.ValidationError({"port": [str(exc)]}) from None
        try:
            netguard.guard_from_settings(attrs["host"], attrs["port"])
        except netguard.Refused as exc:
            raise serializers.ValidationError({"host": [str(exc)]}) from None
        return attrs


class S3ConfigSerializer(StrictSerializer):
    explain = {
        "external_id": (
            "Ferry issues the external id of each S3 endpoint; it cannot be set. Read it from the "
            "endpoint (config.external_id) and require it in your role's trust policy."
        ),
    }
    bucket = serializers.CharField(max_length=63)
    prefix = serializers.CharField(default="", allow_blank=True, max_length=512, trim_whitespace=False)
    region = serializers.CharField(max_length=32)
    role_arn = serializers.CharField(required=False, allow_null=True, default=None, max_length=2048)
    sse = serializers.ChoiceField(choices=["AES256", "aws:kms"], required=False, allow_null=True, default=None)
    kms_key_id = serializers.CharField(required=False, allow_null=True, default=None, max_length=2048)
    # Sent as ExpectedBucketOwner when Ferry proves an S3 event's object readable (docs/events.md).
    expected_bucket_owner = serializers.CharField(required=False, allow_null=True, default=None, max_length=12)

    def validate_bucket(self, value: str) -> str:
        return _rule(validation.bucket, value)

    def validate_prefix(self, value: str) -> str:
        return _rule(validation.prefix, value)

    def validate_region(self, value: str) -> str:
        return _rule(validation.region, value)

    def validate_role_arn(self, value: str | None) -> str | None:
        return None if value is None else _rule(validation.role_arn, value)

    def validate_kms_key_id(self, value: str | None) -> str | None:
        return None if value is None else _rule(validation.kms_key_id, value)

    def validate_expected_bucket_owner(self, value: str | None) -> str | None:
        return None if value is None else _rule(validation.account_id, value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        if attrs.get("kms_key_id") and attrs.get("sse") != "aws:kms":
            errors["kms_key_id"] = ["A KMS key is only used with sse 'aws:kms'."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


CONFIG_SERIALIZERS: dict[str, type[StrictSerializer]] = {
    Endpoint.Kind.SFTP: SftpConfigSerializer,
    Endpoint.Kind.S3: S3ConfigSerializer,
}


# --- credentials (write-only) ----------------------------------------------------------


class SftpCredentialsSerializer(StrictSerializer):
    password = serializers.CharField(required=False, trim_whitespace=False, max_length=validation.MAX_PASSWORD)
    private_key = serializers.CharField(required=False, trim_whitespace=False, max_length=validation.MAX_PRIVATE_KEY)
    passphrase = serializers.CharField(required=False, trim_whitespace=False, max_length=1024)

    def validate_password(self, value: str) -> str:
        return _rule(validation.password, value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("password") and not attrs.get("private_key"):
            raise serializers.ValidationError({"password": ["Give a password, a private_key, or both."]})
        if attrs.get("passphrase") and not attrs.get("private_key"):
            raise serializers.ValidationError({"passphrase": ["A passphrase needs a private_key."]})
        if attrs.get("private_key"):
            try:
                validation.private_key(attrs["private_key"], attrs.get("passphrase"))
            except validation.KeyProblem as exc:
                raise serializers.ValidationError({exc.field: [str(exc)]}) from None
        return attrs


class S3CredentialsSerializer(StrictSerializer):
    access_key_id = serializers.CharField(max_length=128)
    secret_access_key = serializers.CharField(max_length=128, trim_whitespace=False)

    def validate_access_key_id(self, value: str) -> str:
        return _rule(validation.access_key_id, value)

    def validate_secret_access_key(self, value: str) -> str:
        return _rule(validation.secret_access_key, value)


CREDENTIAL_SERIALIZERS: dict[str, type[StrictSerializer]] = {
    Endpoint.Kind.SFTP: SftpCredentialsSerializer,
    Endpoint.Kind.S3: S3CredentialsSerializer,
}


def validate_credentials(kind: str, data: Any) -> dict[str, Any]:
    """Validate a credentials object for ``kind``; raise ValidationError with its field errors."""
    serializer = CREDENTIAL_SERIALIZERS[kind](data=data)
    if not serializer.is_valid():
        raise serializers.ValidationError(serializer.errors)
    return {k: v for k, v in serializer.validated_data.items() if v}


def _validate_config(kind: str, data: Any) -> dict[str, Any]:
    serializer = CONFIG_SERIALIZERS[kind](data=data)
    if not serializer.is_valid():
        raise serializers.ValidationError(serializer.errors)
    return dict(serializer.validated_data)


def _name_free(tenant, name: str, exclude: Any = None) -> None:
    taken = Endpoint.objects.filter(tenant=tenant, name=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise serializers.ValidationError("An endpoint with this name already exists.")


# --- request bodies --------------------------------------------------------------------

# ``config`` and ``credentials`` are validated by kind (above), so the serializer fields are
# free-form objects; the schema shows the per-kind shapes with their limits instead.


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="EndpointConfig",
        serializers=[SftpConfigSerializer, S3ConfigSerializer],
        resource_type_field_name=None,
    )
)
class ConfigField(serializers.DictField):
    """An endpoint's config: :class:`SftpConfigSerializer` or :class:`S3ConfigSerializer`."""


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="EndpointCredentials",
        serializers=[SftpCredentialsSerializer, S3CredentialsSerializer],
        resource_type_field_name=None,
    )
)
class CredentialsField(serializers.DictField):
    """An endpoint's credentials, by kind."""


class EndpointCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=Endpoint.Kind.choices)
    config = ConfigField()
    credentials = CredentialsField(required=False, allow_null=True, default=None)

    def validate_name(self, value: str) -> str:
        value = _rule(validation.name, value)
        _name_free(self.context["tenant"], value)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = attrs["kind"]
        errors: dict[str, Any] = {}
        try:
            attrs["config"] = _validate_config(kind, attrs["config"])
        except serializers.ValidationError as exc:
            errors["config"] = exc.detail
        credentials = attrs.get("credentials")
        if credentials:
            try:
                attrs["credentials"] = validate_credentials(kind, credentials)
            except serializers.ValidationError as exc:
                errors["credentials"] = exc.detail
        elif kind == Endpoint.Kind.SFTP:
            errors["credentials"] = ["SFTP endpoints need credentials: a password, a private_key, or both."]
        elif "config" not in errors and not attrs["config"].get("role_arn"):
            errors["credentials"] = ["S3 endpoints need credentials unless config.role_arn is given."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class EndpointUpdateSerializer(StrictSerializer):
    """PATCH: ``name`` and/or ``config`` (merged into the current config, then validated whole)."""

    explain = {
        "kind": "The kind of an endpoint cannot change; create a new endpoint.",
        "credentials": "Rotate credentials with PUT /endpoints/{id}/credentials.",
    }
    name = serializers.CharField(max_length=100, required=False)
    config = ConfigField(required=False)

    def validate_name(self, value: str) -> str:
        value = _rule(validation.name, value)
        _name_free(self.context["tenant"], value, exclude=self.context["endpoint"].pk)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        endpoint: Endpoint = self.context["endpoint"]
        if not attrs:
            raise serializers.ValidationError("Nothing to change: give name and/or config.")
        if "config" in attrs:
            # What Ferry issued is not the tenant's to send back: only the request is checked for it.
            current = {k: v for k, v in endpoint.config.items() if k not in ISSUED_CONFIG_KEYS}
            merged = {**current, **attrs["config"]}
            try:
                attrs["config"] = _validate_config(endpoint.kind, merged)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"config": exc.detail}) from None
            if endpoint.kind == Endpoint.Kind.S3 and not endpoint.secret_arn and not attrs["config"].get("role_arn"):
                raise serializers.ValidationError(
                    {"config": {"role_arn": ["This endpoint has no credentials, so it needs a role."]}}
                )
        return attrs


class HostKeyScanSerializer(StrictSerializer):
    host = serializers.CharField(max_length=255)
    port = serializers.IntegerField(default=22, min_value=1, max_value=65535)

    def validate_host(self, value: str) -> str:
        return _rule(validation.host, value)


# --- responses -------------------------------------------------------------------------


class CredentialsInfoSerializer(serializers.Serializer):
    kinds = serializers.ListField(child=serializers.CharField())
    version = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class CircuitSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=Circuit.choices)
    consecutive_failures = serializers.IntegerField()
    open_until = serializers.DateTimeField(allow_null=True)


class EndpointSerializer(serializers.ModelSerializer):
    """What the API shows: never a secret, only which credentials are stored and when."""

    credentials = serializers.SerializerMethodField()
    circuit = serializers.SerializerMethodField()

    class Meta:
        model = Endpoint
        fields = ["id", "name", "kind", "config", "credentials", "circuit", "version", "created_at", "updated_at"]
        read_only_fields = fields

    def get_circuit(self, endpoint: Endpoint) -> dict[str, Any]:
        return CircuitSerializer(
            {
                "state": endpoint.circuit_state,
                "consecutive_failures": endpoint.consecutive_failures,
                "open_until": endpoint.circuit_open_until,
            }
        ).data

    def get_credentials(self, endpoint: Endpoint) -> dict[str, Any]:
        return CredentialsInfoSerializer(
            {
                "kinds": list(endpoint.credential_kinds),
                "version": endpoint.secret_version or None,
                "updated_at": endpoint.credentials_updated_at,
            }
        ).data


class CheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    detail = serializers.CharField()
    ms = serializers.FloatField()


class ConnectionTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checks = CheckSerializer(many=True)


class HostKeyScanResultSerializer(serializers.Serializer):
    host = serializers.CharField()
    port = serializers.IntegerField()
    address = serializers.CharField()
    host_keys = serializers.ListField(child=serializers.CharField())


# --- Ferry-issued SSH keys (endpoints/sshkeys.py) -------------------------------------------


class SshKeyIssueSerializer(StrictSerializer):
    overlap_hours = serializers.IntegerField(
        min_value=0,
        max_value=168,
        default=24,
        help_text="How long the key in use until now is still offered after the new one, in hours (0-168; 24 "
        "unless given), so the partner can install the new public key without a gap.",
    )


class PreviousSshKeySerializer(serializers.Serializer):
    public_key = serializers.CharField(allow_null=True, help_text="The previous key's public key (OpenSSH format).")
    fingerprint = serializers.CharField(allow_null=True, help_text="Its SHA256 fingerprint.")
    valid_until = serializers.DateTimeField(help_text="Ferry stops offering it then.")


class SshKeySerializer(serializers.Serializer):
    algorithm = serializers.CharField(help_text="Always `ssh-ed25519`.")
    public_key = serializers.CharField(help_text="The line to add to the partner's `authorized_keys`.")
    fingerprint = serializers.CharField(help_text="`SHA256:…`, as `ssh-keygen -l` prints it.")
    created_at = serializers.DateTimeField()
    previous = PreviousSshKeySerializer(
        allow_null=True, help_text="The key it replaced, while Ferry still offers it (the overlap); else null."
    )


# --- GET /network (endpoints/network.py) -----------------------------------------------------


class RegionEgressSerializer(serializers.Serializer):
    region = serializers.CharField()
    egress_addresses = serializers.ListField(
        child=serializers.IPAddressField(),
        help_text="The addresses Ferry connects from in this region (empty until the operator published them).",
    )


class SshPolicySerializer(serializers.Serializer):
    host_key_types = serializers.ListField(
        child=serializers.CharField(), help_text="The key types a host key pin may name."
    )
    host_key_algorithms = serializers.ListField(
        child=serializers.CharField(), help_text="Host key signature algorithms Ferry accepts (only the pinned types')."
    )
    ciphers = serializers.ListField(child=serializers.CharField(), help_text="Ciphers Ferry offers, preferred first.")
    kex_algorithms = serializers.ListField(
        child=serializers.CharField(), help_text="Key exchange methods Ferry offers, preferred first."
    )
    macs = serializers.ListField(child=serializers.CharField(), help_text="MACs Ferry offers (with the -ctr ciphers).")
    client_key_algorithm = serializers.CharField(help_text="The type of the SSH keys Ferry issues.")


class NetworkSerializer(serializers.Serializer):
    regions = RegionEgressSerializer(many=True)
    ssh = SshPolicySerializer()
