"""Routes and transfers API serializers.

Input serializers are strict (unknown fields refused) and only check shapes and types;
the services check meaning (tenant ownership, cron, options…) and report errors with the
same field paths (``source.endpoint``, ``trigger.cron``, ``options.max_attempts``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from endpoints.api.serializers import StrictSerializer
from transfers import expectations, manifests, naming
from transfers import metadata as business_metadata
from transfers import options as route_options
from transfers.models import Batch, Route, Transfer
from transfers.states import State

# --- options: one schema, the limits transfers.options enforces ----------------------------

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Route options (docs/transfers.md); omitted ones keep their defaults.",
    "properties": {
        "min_age_seconds": {"type": "integer", "minimum": 0, "maximum": 7 * 24 * 3600},
        "stable_polls": {"type": "boolean"},
        "done_marker": {"type": "string", "maxLength": naming.MAX_TEMPLATE, "nullable": True},
        "after_delivery": {
            "oneOf": [
                {"type": "string", "enum": ["keep", "delete"]},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["move_to"],
                    "properties": {"move_to": {"type": "string", "maxLength": naming.MAX_PATH}},
                },
            ]
        },
        "on_conflict": {"type": "string", "enum": list(route_options.ON_CONFLICT)},
        "always_stage": {"type": "boolean"},
        "verify": {"type": "string", "enum": list(route_options.VERIFY)},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": route_options.MAX_ATTEMPTS_LIMIT},
        "write_manifest": {
            "type": "object",
            "nullable": True,
            "additionalProperties": False,
            "description": "Routes only: after each run's batch completes, write a manifest file of its "
            "deliveries to the destination folder (docs/batches.md). `name` may use {batch_id} and "
            "{date:<strftime>}.",
            "properties": {
                "format": {"type": "string", "enum": list(manifests.FORMATS)},
                "name": {"type": "string", "maxLength": naming.MAX_TEMPLATE},
            },
        },
        # OpenPGP on delivery (docs/pgp.md): ids of the tenant's keys (/api/v1/pgp-keys).
        "encrypt": {
            "type": "array",
            "items": {"type": "string", "format": "uuid"},
            "maxItems": route_options.MAX_RECIPIENTS,
            "uniqueItems": True,
            "description": "Encrypt to these keys (recipients' public keys); the name gets .pgp (.asc with armor).",
        },
        "sign": {"type": "string", "format": "uuid", "nullable": True, "description": "Sign with this private key."},
        "decrypt": {
            "type": "string",
            "format": "uuid",
            "nullable": True,
            "description": "Decrypt with this private key; a .pgp/.gpg/.asc suffix is taken off the name.",
        },
        "verify_signature": {
            "type": "string",
            "format": "uuid",
            "nullable": True,
            "description": "The file must be signed by this key, or the transfer ends dead (pgp_verify_failed).",
        },
        "armor": {"type": "boolean", "description": "ASCII armor on what Ferry encrypts or signs."},
        "expect": {
            "type": "object",
            "nullable": True,
            "additionalProperties": False,
            "required": ["cron"],
            "description": "Late files (docs/late-files.md): at least `min_files` files are expected by each "
            "time `cron` fires in the route's time zone, with `grace_seconds` of tolerance; null for none.",
            "properties": {
                "cron": {"type": "string", "maxLength": 120},
                "grace_seconds": {"type": "integer", "minimum": 0, "maximum": route_options.EXPECT_MAX_GRACE},
                "min_files": {"type": "integer", "minimum": 1, "maximum": route_options.EXPECT_MAX_FILES},
            },
        },
    },
}


@extend_schema_field(OPTIONS_SCHEMA)
class OptionsField(serializers.DictField):
    """A free-form object here (``transfers.options.normalize`` validates it, with field
    paths such as ``options.after_delivery.move_to``); typed, with its limits, in the schema."""


class OptionsShown(serializers.DictField):
    """Options as stored, with the defaults of options added since the row was written
    (a route or transfer older than ``write_manifest`` shows it as null), so every option
    is always present, as the schema says."""

    def to_representation(self, value: dict[str, Any]) -> dict[str, Any]:
        return shown_options(value)


def shown_options(value: dict[str, Any] | None) -> dict[str, Any]:
    return {**route_options.DEFAULTS, **(value or {})}


METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        f"The customer's own strings (docs/transfers.md): at most {business_metadata.MAX_KEYS} keys of "
        f"1-{business_metadata.MAX_KEY_LENGTH} characters of a-z, 0-9, '-' and '_' (not starting with "
        f"'ferry-'), values of at most {business_metadata.MAX_VALUE_LENGTH} printable ASCII characters, "
        f"{business_metadata.MAX_TOTAL_BYTES} characters in all. Written as S3 user metadata on S3 destinations."
    ),
    # OpenAPI 3.0 has no propertyNames: the key rule is in the description, checked by the server.
    "maxProperties": business_metadata.MAX_KEYS,
    "additionalProperties": {
        "type": "string",
        "maxLength": business_metadata.MAX_VALUE_LENGTH,
        "pattern": "^[\\x20-\\x7e]*$",
    },
}


@extend_schema_field(METADATA_SCHEMA)
class MetadataField(serializers.DictField):
    """A free-form object here (``transfers.metadata.normalize`` validates it, with field
    paths such as ``metadata.<key>``); typed, with its limits, in the schema."""


# --- routes: input --------------------------------------------------------------------------


class RouteSourceIn(StrictSerializer):
    endpoint = serializers.UUIDField()
    path = serializers.CharField(max_length=1024, default="/", trim_whitespace=False)
    pattern = serializers.CharField(max_length=255, default="*", trim_whitespace=False)
    recursive = serializers.BooleanField(default=False)


class RouteDestinationIn(StrictSerializer):
    endpoint = serializers.UUIDField()
    path = serializers.CharField(max_length=1024, default="/", trim_whitespace=False)
    name = serializers.CharField(max_length=255, default="{name}", trim_whitespace=False)


class RouteTriggerIn(StrictSerializer):
    type = serializers.ChoiceField(choices=Route.Trigger.choices)
    cron = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    timezone = serializers.CharField(max_length=64, default="UTC")


class RouteIn(StrictSerializer):
    """``POST /routes`` (all required parts) and ``PATCH /routes/{id}`` (``partial``)."""

    name = serializers.CharField(max_length=100)
    source = RouteSourceIn()
    destination = RouteDestinationIn()
    trigger = RouteTriggerIn(required=False)
    options = OptionsField(required=False)
    metadata = MetadataField(required=False, help_text="Replaces the route's whole map when given.")
    enabled = serializers.BooleanField(required=False)

    def to_spec(self) -> dict[str, Any]:
        """The service's flat spec from the validated body (only the parts sent)."""
        data = self.validated_data
        spec: dict[str, Any] = {}
        if "name" in data:
            spec["name"] = data["name"]
        parts = {
            "source": {
                "endpoint": "source_endpoint",
                "path": "source_path",
                "pattern": "pattern",
                "recursive": "recursive",
            },
            "destination": {"endpoint": "destination_endpoint", "path": "destination_path", "name": "name_template"},
            "trigger": {"type": "trigger_type", "cron": "cron", "timezone": "timezone"},
        }
        for part, names in parts.items():
            for key, field in names.items():
                if key in data.get(part, {}):
                    spec[field] = data[part][key]
        if "trigger" in data and "cron" not in data["trigger"]:
            spec["cron"] = ""
        for key in ("options", "metadata", "enabled"):
            if key in data:
                spec[key] = data[key]
        return spec


# --- routes: output ------------------------------------------------------------------------


class RouteSourceOut(serializers.Serializer):
    endpoint = serializers.UUIDField(source="source_endpoint_id")
    path = serializers.CharField(source="source_path")
    pattern = serializers.CharField()
    recursive = serializers.BooleanField()


class RouteDestinationOut(serializers.Serializer):
    endpoint = serializers.UUIDField(source="destination_endpoint_id")
    path = serializers.CharField(source="destination_path")
    name = serializers.CharField(source="name_template")


class RouteTriggerOut(serializers.Serializer):
    type = serializers.CharField(source="trigger_type")
    cron = serializers.CharField()
    timezone = serializers.CharField()
    next_run_at = serializers.DateTimeField(allow_null=True, help_text="Null unless the trigger is a schedule.")


class RouteOut(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    source = RouteSourceOut(source="*")
    destination = RouteDestinationOut(source="*")
    trigger = RouteTriggerOut(source="*")
    options = OptionsShown()
    metadata = MetadataField()
    enabled = serializers.BooleanField()
    partition = serializers.IntegerField()
    version = serializers.IntegerField()
    # Read-only: set by a restore of the database, cleared by an operator
    # (manage.py route_watermark); polls leave files modified before it alone.
    not_before = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ExpectationLastOut(serializers.Serializer):
    window_end = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=["on_time", "late", "arrived_late"])
    seen = serializers.IntegerField()
    arrived_at = serializers.DateTimeField(allow_null=True)


class ExpectationOut(serializers.Serializer):
    """A route's late-files status (``transfers.expectations.status_of``)."""

    state = serializers.ChoiceField(
        choices=["waiting", "on_time", "late"],
        help_text="`late`: the newest window closed without its files (until they come or the next window "
        "closes); otherwise the open window: `on_time` once it has its files, `waiting` before.",
    )
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField(help_text="The time the files are expected by (the cron's time).")
    deadline = serializers.DateTimeField(help_text="`window_end` plus the grace.")
    seen = serializers.IntegerField(help_text="Files counted for the window so far.")
    expected = serializers.IntegerField()
    last = ExpectationLastOut(allow_null=True, help_text="The newest window already judged, if any.")


class RouteDetailOut(RouteOut):
    """``GET /routes/{id}``: the route and its late-files status (one or two queries more)."""

    expectation = serializers.SerializerMethodField()

    @extend_schema_field(ExpectationOut(allow_null=True))
    def get_expectation(self, route: Route) -> dict[str, Any] | None:
        status = expectations.status_of(route)
        return None if status is None else ExpectationOut(status).data


class RunIn(StrictSerializer):
    force = serializers.BooleanField(default=False)


class WaitingOut(serializers.Serializer):
    reason = serializers.CharField(help_text="Why these files were not taken yet (the stability rule).")
    files = serializers.IntegerField()


class EmptyIn(StrictSerializer):
    """Actions that take no body (``redrive``, ``cancel``)."""


# --- transfers ----------------------------------------------------------------------------


def rate_of(transfer: Transfer) -> float | None:
    """Average rate of the current (or last) attempt, bytes per second."""
    if transfer.started_at is None or not transfer.bytes_done:
        return None
    end = transfer.finished_at or transfer.heartbeat_at or timezone.now()
    seconds = (end - transfer.started_at).total_seconds()
    return round(transfer.bytes_done / seconds, 1) if seconds > 0 else None


def _dt(value: datetime | None) -> str | None:
    """What DRF's DateTimeField renders (UTC, ISO 8601, ``Z``), without its per-field cost."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class AdhocEndIn(StrictSerializer):
    endpoint = serializers.UUIDField()
    path = serializers.CharField(max_length=1024, trim_whitespace=False)


class AdhocTransferIn(StrictSerializer):
    """``POST /transfers``: one file, no route (``Idempotency-Key`` header required)."""

    source = AdhocEndIn()
    destination = AdhocEndIn()
    options = OptionsField(required=False)
    metadata = MetadataField(required=False)


class TransferSourceOut(serializers.Serializer):
    endpoint = serializers.UUIDField(source="source_endpoint_id")
    path = serializers.CharField(source="source_path")
    version = serializers.CharField(source="source_version")
    size = serializers.IntegerField(source="source_size", allow_null=True)


class TransferDestinationOut(serializers.Serializer):
    endpoint = serializers.UUIDField(source="destination_endpoint_id")
    path = serializers.CharField(source="destination_path")


class ProgressOut(serializers.Serializer):
    bytes_done = serializers.IntegerField()
    bytes_total = serializers.IntegerField(allow_null=True)
    rate_bytes_per_s = serializers.SerializerMethodField()

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_rate_bytes_per_s(self, transfer: Transfer) -> float | None:
        return rate_of(transfer)


class ErrorOut(serializers.Serializer):
    code = serializers.CharField(source="last_error_code")
    message = serializers.CharField(source="last_error_message")


class SourceActionOut(serializers.Serializer):
    state = serializers.CharField(source="source_action_state")
    error = serializers.CharField(source="source_action_error")
    attempts = serializers.IntegerField(source="source_action_attempts")


class TransferOut(serializers.Serializer):
    """A transfer in the list (no timeline: the list costs one query per page)."""

    id = serializers.UUIDField()
    route = serializers.UUIDField(source="route_id", allow_null=True)
    batch = serializers.UUIDField(
        source="batch_id", allow_null=True, help_text="The route run that created it (null: ad-hoc or S3 event)."
    )
    state = serializers.ChoiceField(choices=State.choices)
    source = TransferSourceOut(source="*")
    destination = TransferDestinationOut(source="*")
    progress = ProgressOut(source="*")
    sha256 = serializers.CharField(help_text="SHA-256 (hex) of the bytes delivered; empty until known.")
    source_sha256 = serializers.CharField(
        help_text="SHA-256 (hex) of the bytes read from the source; differs from sha256 only when an "
        "OpenPGP option changed the bytes. Empty until known."
    )
    attempt = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    error = serializers.SerializerMethodField()
    source_action = SourceActionOut(source="*")
    metadata = MetadataField()
    region = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(ErrorOut(allow_null=True))
    def get_error(self, transfer: Transfer) -> dict[str, str] | None:
        if not transfer.last_error_code:
            return None
        return ErrorOut(transfer).data

    def to_representation(self, transfer: Transfer) -> dict[str, Any]:
        # The status list renders many rows per page; DRF's generic field-by-field path costs
        # most of the request. This builds the same document directly (the declared fields
        # above stay for validation of the shape and for the OpenAPI schema; a test checks
        # both paths give identical output).
        return {
            "id": str(transfer.id),
            "route": str(transfer.route_id) if transfer.route_id else None,
            "batch": str(transfer.batch_id) if transfer.batch_id else None,
            "state": transfer.state,
            "source": {
                "endpoint": str(transfer.source_endpoint_id),
                "path": transfer.source_path,
                "version": transfer.source_version,
                "size": transfer.source_size,
            },
            "destination": {"endpoint": str(transfer.destination_endpoint_id), "path": transfer.destination_path},
            "progress": {
                "bytes_done": transfer.bytes_done,
                "bytes_total": transfer.bytes_total,
                "rate_bytes_per_s": rate_of(transfer),
            },
            "sha256": transfer.sha256,
            "source_sha256": transfer.source_sha256,
            "attempt": transfer.attempt,
            "max_attempts": transfer.max_attempts,
            "next_attempt_at": _dt(transfer.next_attempt_at),
            "error": {"code": transfer.last_error_code, "message": transfer.last_error_message}
            if transfer.last_error_code
            else None,
            "source_action": {
                "state": transfer.source_action_state,
                "error": transfer.source_action_error,
                "attempts": transfer.source_action_attempts,
            },
            "metadata": transfer.metadata,
            "region": transfer.region,
            "created_at": _dt(transfer.created_at),
            "updated_at": _dt(transfer.updated_at),
            "started_at": _dt(transfer.started_at),
            "finished_at": _dt(transfer.finished_at),
        }

    def generic_representation(self, transfer: Transfer) -> dict[str, Any]:
        """DRF's field-by-field rendering of the declared fields (the reference in tests)."""
        return dict(serializers.Serializer.to_representation(self, transfer))


class TransferEventOut(serializers.Serializer):
    at = serializers.DateTimeField()
    from_state = serializers.CharField()
    to_state = serializers.CharField()
    attempt = serializers.IntegerField()
    region = serializers.CharField()
    worker = serializers.CharField()
    detail = serializers.CharField()


class TransferDetailOut(TransferOut):
    options = OptionsShown()
    # The X-Request-ID of the request that created it (or the poll's or event's id): what a
    # customer quotes, and what every log line of every attempt carries.
    request_id = serializers.CharField()
    # The AWS Step Functions execution that runs it ("" under the Celery orchestrator, or
    # before its first start); its steps are the timeline's ``step`` lines.
    execution_arn = serializers.CharField()
    timeline = TransferEventOut(many=True)

    def to_representation(self, transfer: Transfer) -> dict[str, Any]:
        data = super().to_representation(transfer)
        data["options"] = shown_options(transfer.options)
        data["request_id"] = transfer.request_id
        data["execution_arn"] = transfer.execution_arn
        data["timeline"] = TransferEventOut(transfer.timeline, many=True).data
        return data


# --- batches ------------------------------------------------------------------------------


class BatchCountsOut(serializers.Serializer):
    total = serializers.IntegerField(source="size", help_text="Transfers the run created.")
    succeeded = serializers.IntegerField()
    skipped = serializers.IntegerField()
    dead = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class BatchManifestFileOut(serializers.Serializer):
    state = serializers.ChoiceField(
        source="manifest_state",
        choices=Batch.ManifestState.choices,
        help_text="The route's `write_manifest` file: none (not asked), pending, written or failed.",
    )
    path = serializers.CharField(source="manifest_path", help_text="Where it was written; empty until then.")
    error = serializers.CharField(source="manifest_error")


class BatchOut(serializers.Serializer):
    """A route run (docs/batches.md). Counts and bytes are zero while open and frozen when it
    completes."""

    id = serializers.UUIDField()
    route = serializers.UUIDField(source="route_id", allow_null=True)
    trigger = serializers.ChoiceField(choices=Batch.Trigger.choices)
    state = serializers.ChoiceField(choices=Batch.State.choices)
    counts = BatchCountsOut(source="*")
    bytes_total = serializers.IntegerField(help_text="Bytes of the succeeded transfers.")
    manifest_file = BatchManifestFileOut(source="*")
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
