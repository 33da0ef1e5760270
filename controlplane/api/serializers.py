from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.models import ApiKey, AuditEntry, OAuthClient

# Rotation keeps the old key working for this long by default, and at most a week.
OVERLAP_HOURS_DEFAULT = 24
OVERLAP_HOURS_MAX = 7 * 24


@extend_schema_field({"type": "string", "format": "date-time", "maxLength": 64})
class BoundedDateTimeField(serializers.DateTimeField):
    """An input time no longer than 64 characters (every request string has a maximum)."""

    MAX_LENGTH = 64

    def to_internal_value(self, value):
        if isinstance(value, str) and len(value) > self.MAX_LENGTH:
            self.fail("invalid", format="ISO 8601")
        return super().to_internal_value(value)


RESTRICTION_HELP = (
    "Restricts the {what} to these {objects}: with `endpoint_ids` and/or `route_ids` it sees and acts on only "
    "the endpoints and routes listed and the transfers of those routes or from or to those endpoints (anything "
    "else is not found), and it creates nothing and manages no keys. Null or absent: the whole tenant."
)


@extend_schema_field(
    {"type": "array", "items": {"type": "string", "format": "uuid"}, "maxItems": 100, "nullable": True}
)
class RestrictionIdsField(serializers.ListField):
    """Up to 100 ids; null allowed (no restriction)."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.UUIDField(), max_length=100, allow_null=True, required=False, **kwargs)


def _restriction_out(help_text: str):
    return serializers.ListField(child=serializers.UUIDField(), allow_null=True, read_only=True, help_text=help_text)


class ApiKeySerializer(serializers.ModelSerializer):
    endpoint_ids = _restriction_out("The endpoints the key is restricted to (null: no restriction by endpoint).")
    route_ids = _restriction_out("The routes the key is restricted to (null: no restriction by route).")
    last_used_from = serializers.IPAddressField(
        read_only=True, allow_null=True, help_text="The address of the key's last use (recorded at most once a minute)."
    )
    expires_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When the key stops working; null: never."
    )
    expires_soon = serializers.SerializerMethodField(
        help_text="The key works now but expires within 14 days (FERRY_API_KEY_EXPIRING_SOON_DAYS): rotate it."
    )

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "prefix",
            "scope",
            "label",
            "created_at",
            "last_used_at",
            "last_used_from",
            "expires_at",
            "expires_soon",
            "revoked_at",
            "endpoint_ids",
            "route_ids",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.BooleanField())
    def get_expires_soon(self, key: ApiKey) -> bool:
        if key.expires_at is None or key.revoked_at is not None:
            return False
        now = timezone.now()
        return now < key.expires_at <= now + timedelta(days=settings.FERRY_API_KEY_EXPIRING_SOON_DAYS)


class ApiKeyIssuedSchema(ApiKeySerializer):
    """Schema only: the answer to issuing a key, with the key itself."""

    key = serializers.CharField(help_text="The API key. Shown once: Ferry keeps only its hash.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields
        ref_name = "ApiKeyIssued"


class ApiKeyRotatedSchema(ApiKeyIssuedSchema):
    """Schema only: the answer to a rotation, the new key with the old one's new expiry."""

    previous = ApiKeySerializer(help_text="The rotated key: it works until its `expires_at`, the end of the overlap.")

    class Meta(ApiKeyIssuedSchema.Meta):
        fields = [*ApiKeyIssuedSchema.Meta.fields, "previous"]
        read_only_fields = fields
        ref_name = "ApiKeyRotated"


class StrictSerializer(serializers.Serializer):
    closed_schema = True  # unknown fields are refused (below); the schema says so

    def to_internal_value(self, data):
        unknown = set(data) - set(self.fields) if isinstance(data, dict) else set()
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        return super().to_internal_value(data)


class ApiKeyCreateSerializer(StrictSerializer):
    scope = serializers.ChoiceField(choices=ApiKey.Scope.choices, default=ApiKey.Scope.WRITE)
    label = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
    expires_at = BoundedDateTimeField(
        required=False,
        help_text="When the key stops working: in the future and within the deployment's maximum lifetime "
        "(365 days unless the operator set another). Without it the key gets that maximum.",
    )
    endpoint_ids = RestrictionIdsField(help_text=RESTRICTION_HELP.format(what="key", objects="endpoints"))
    route_ids = RestrictionIdsField(help_text=RESTRICTION_HELP.format(what="key", objects="routes"))


class ApiKeyRotateSerializer(StrictSerializer):
    overlap_hours = serializers.IntegerField(
        min_value=0,
        max_value=OVERLAP_HOURS_MAX,
        default=OVERLAP_HOURS_DEFAULT,
        help_text="How long the old key keeps working, in hours (0-168; 24 unless given). "
        "Never longer than it would have anyway.",
    )


class OAuthClientSerializer(serializers.ModelSerializer):
    endpoint_ids = _restriction_out("The endpoints the client's tokens are restricted to (null: none).")
    route_ids = _restriction_out("The routes the client's tokens are restricted to (null: none).")

    class Meta:
        model = OAuthClient
        fields = ["id", "client_id", "scope", "label", "created_at", "revoked_at", "endpoint_ids", "route_ids"]
        read_only_fields = fields


class OAuthClientIssuedSchema(OAuthClientSerializer):
    """Schema only: the answer to registering a client, with its secret."""

    client_secret = serializers.CharField(help_text="The client secret. Shown once: Ferry keeps only its hash.")
    token_url = serializers.CharField(help_text="Where the client gets its access tokens (grant client_credentials).")

    class Meta(OAuthClientSerializer.Meta):
        fields = [*OAuthClientSerializer.Meta.fields, "client_secret", "token_url"]
        read_only_fields = fields
        ref_name = "OAuthClientIssued"


class OAuthClientCreateSerializer(StrictSerializer):
    scope = serializers.ChoiceField(
        choices=OAuthClient.Scope.choices,
        default=OAuthClient.Scope.WRITE,
        help_text="`read`: its tokens can only read. `write`: its tokens may ask for `read` or `write`.",
    )
    label = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
    endpoint_ids = RestrictionIdsField(help_text=RESTRICTION_HELP.format(what="client's tokens", objects="endpoints"))
    route_ids = RestrictionIdsField(help_text=RESTRICTION_HELP.format(what="client's tokens", objects="routes"))


class AuditActorSerializer(serializers.Serializer):
    kind = serializers.CharField(
        help_text="`api_key` (name: the key's prefix), `oauth_client` (the client id), `operator` (a Ferry "
        "operator), `command` (an operator's command) or `system`."
    )
    name = serializers.CharField(help_text="Who, within the kind.")


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField(help_text="Who made the change.")
    before = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text="The object before the change (null: created). Secrets are never shown.",
    )
    after = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text="The object after the change (null: deleted). Secrets are never shown.",
    )
    source_address = serializers.SerializerMethodField(
        help_text="The IP address the change came from (null: not a request, such as an operator's command)."
    )

    class Meta:
        model = AuditEntry
        fields = [
            "seq",
            "at",
            "action",
            "object_kind",
            "object_id",
            "actor",
            "before",
            "after",
            "source_address",
            "request_id",
            "region",
            "hash",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "seq": {"help_text": "The entry's place in Ferry's audit chain (increasing; gaps are other tenants')."},
            "at": {"help_text": "When the change was made."},
            "action": {"help_text": "What was done: `<kind>.<verb>`, such as `endpoint.update`."},
            "object_kind": {"help_text": "The kind of object changed: `endpoint`, `route`, `api_key`…"},
            "object_id": {"help_text": "The changed object's id."},
            "request_id": {"help_text": "The id of the request that made the change (its `X-Request-ID`)."},
            "region": {"help_text": "The region that served the change."},
            "hash": {"help_text": "The entry's SHA-256 in the chain: sha256(previous hash + canonical entry)."},
        }

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_source_address(self, entry: AuditEntry) -> str | None:
        return entry.source_address or None

    @extend_schema_field(AuditActorSerializer)
    def get_actor(self, entry: AuditEntry) -> dict[str, str]:
        return {"kind": entry.actor_kind, "name": entry.actor}
