"""Subscriptions API serializers: strict input (unknown fields refused), the target
checked here (URL shape and SSRF guard, bus ARN), and the outputs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from endpoints.api.serializers import StrictSerializer
from notifications import catalogue, targets
from notifications.models import Delivery, DeliveryAttempt, Subscription

OVERLAP_HOURS_DEFAULT = 24
OVERLAP_HOURS_MAX = 7 * 24


class EventTypesField(serializers.ListField):
    child = serializers.ChoiceField(choices=[(t, t) for t in catalogue.TYPES])

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", len(catalogue.TYPES))
        kwargs.setdefault(
            "help_text", "The event types delivered (docs/notifications.md); empty or omitted: every type."
        )
        super().__init__(**kwargs)


def _url(value: str) -> str:
    try:
        targets.check_url(value)
    except targets.Invalid as exc:
        raise serializers.ValidationError(str(exc)) from None
    return value


def _arn(value: str) -> str:
    try:
        targets.bus_region(value)
    except targets.Invalid as exc:
        raise serializers.ValidationError(str(exc)) from None
    return value


class SubscriptionIn(StrictSerializer):
    target = serializers.ChoiceField(choices=Subscription.Target.choices)
    url = serializers.CharField(
        max_length=targets.MAX_URL,
        required=False,
        trim_whitespace=False,
        help_text="Webhooks: the receiver's HTTPS URL. Its host must resolve to public addresses only.",
    )
    event_bus_arn = serializers.CharField(
        max_length=1600,
        required=False,
        trim_whitespace=False,
        help_text="EventBridge: the ARN of your event bus; its policy must let Ferry's account put events.",
    )
    event_types = EventTypesField(required=False, default=list)
    description = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)

    def validate_url(self, value: str) -> str:
        return _url(value)

    def validate_event_bus_arn(self, value: str) -> str:
        return _arn(value)

    def validate(self, data: dict) -> dict:
        if data["target"] == Subscription.Target.WEBHOOK:
            if not data.get("url"):
                raise serializers.ValidationError({"url": ["Required for a webhook."]})
            if data.get("event_bus_arn"):
                raise serializers.ValidationError({"event_bus_arn": ["Only for an eventbridge target."]})
        else:
            if not data.get("event_bus_arn"):
                raise serializers.ValidationError({"event_bus_arn": ["Required for an eventbridge target."]})
            if data.get("url"):
                raise serializers.ValidationError({"url": ["Only for a webhook target."]})
        return data


class SubscriptionChange(StrictSerializer):
    schema_partial = True
    url = serializers.CharField(max_length=targets.MAX_URL, required=False, trim_whitespace=False)
    event_bus_arn = serializers.CharField(max_length=1600, required=False, trim_whitespace=False)
    event_types = EventTypesField(required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    enabled = serializers.BooleanField(
        required=False, help_text="false stops deliveries; true enables a disabled subscription again."
    )

    def validate_url(self, value: str) -> str:
        return _url(value)

    def validate_event_bus_arn(self, value: str) -> str:
        return _arn(value)


class RotateSecretIn(StrictSerializer):
    overlap_hours = serializers.IntegerField(
        min_value=0,
        max_value=OVERLAP_HOURS_MAX,
        default=OVERLAP_HOURS_DEFAULT,
        help_text="How long the old secret keeps signing beside the new one, in hours (0-168; 24 unless given).",
    )


class EmptyIn(StrictSerializer):
    """Actions that take no body."""


class SubscriptionOut(serializers.ModelSerializer):
    url = serializers.CharField(allow_null=True)
    event_bus_arn = serializers.CharField(allow_null=True)
    event_types = serializers.ListField(child=serializers.CharField())
    disabled_at = serializers.DateTimeField(allow_null=True, help_text="When Ferry or the tenant disabled it.")
    disabled_reason = serializers.CharField(allow_null=True, help_text="Why it was disabled.")
    previous_secret_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Until then the previous signing secret signs too (a rotation's overlap)."
    )

    class Meta:
        model = Subscription
        fields = [
            "id",
            "target",
            "url",
            "event_bus_arn",
            "event_types",
            "description",
            "enabled",
            "disabled_at",
            "disabled_reason",
            "consecutive_failures",
            "previous_secret_expires_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Subscription) -> dict:
        data = super().to_representation(instance)
        data["url"] = instance.url or None
        data["event_bus_arn"] = instance.event_bus_arn or None
        data["disabled_reason"] = instance.disabled_reason or None
        return data


class SubscriptionWithSecret(SubscriptionOut):
    """Schema and answer of a creation or a rotation: with the signing secret, shown once."""

    secret = serializers.CharField(
        allow_null=True,
        help_text="The webhook signing secret (`whsec_…`), for Standard Webhooks verification. Shown in this "
        "answer only. null for an eventbridge target.",
    )

    class Meta(SubscriptionOut.Meta):
        fields = [*SubscriptionOut.Meta.fields, "secret"]
        read_only_fields = fields
        ref_name = "SubscriptionWithSecret"


class AttemptOut(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["at", "region", "ok", "status_code", "latency_ms", "error"]
        read_only_fields = fields


class DeliveryOut(serializers.ModelSerializer):
    event_id = serializers.UUIDField(source="event.id", help_text="The event's id, sent as `webhook-id`.")
    event_type = serializers.CharField(source="event.type")
    attempts_log = AttemptOut(source="attempt_log", many=True, help_text="Every attempt, oldest first.")
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="When a pending delivery is tried next.")

    class Meta:
        model = Delivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "state",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_latency_ms",
            "last_error",
            "created_at",
            "delivered_at",
            "attempts_log",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Delivery) -> dict:
        data = super().to_representation(instance)
        if instance.state != Delivery.State.PENDING:
            data["next_attempt_at"] = None
        return data
