from rest_framework import serializers

from controlplane.models import ApiKey


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "prefix", "scope", "label", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class ApiKeyIssuedSchema(ApiKeySerializer):
    """Schema only: the answer to issuing a key, with the key itself."""

    key = serializers.CharField(help_text="The API key. Shown once: Ferry keeps only its hash.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields
        ref_name = "ApiKeyIssued"


class ApiKeyCreateSerializer(serializers.Serializer):
    closed_schema = True  # unknown fields are refused (below); the schema says so
    scope = serializers.ChoiceField(choices=ApiKey.Scope.choices, default=ApiKey.Scope.WRITE)
    label = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)

    def to_internal_value(self, data):
        unknown = set(data) - set(self.fields) if isinstance(data, dict) else set()
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        return super().to_internal_value(data)
