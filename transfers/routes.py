"""Routes: validation, create / update / delete, and the schedule's due runs.

Field names in errors are the API's (``source.endpoint``, ``trigger.cron``,
``options.max_attempts``), so the API passes them through unchanged. Paths are relative to
the endpoint's root (SFTP) or key prefix (S3), written with a leading ``/``. Every change
writes the config mirror's outbox row in its transaction (``transfers.mirror_docs``).

An event route needs its source bucket to send events: turned on after the commit through
``endpoints.sources``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane import audit
from controlplane.errors import Conflict, NotFound, ValidationFailed
from controlplane.models import Tenant
from endpoints import sources
from endpoints import validation as endpoint_validation
from endpoints.models import Endpoint
from transfers import metadata as business_metadata
from transfers import mirror_docs, naming, pgpkeys, schedule
from transfers import options as route_options
from transfers.models import Route, Transfer
from transfers.partitions import partition_of
from transfers.states import MOVING

log = logging.getLogger(__name__)

MAX_PATTERN = 255

# Model field → the API's field path (errors name what the client sent).
FIELD_PATHS = {
    "name": "name",
    "source_endpoint": "source.endpoint",
    "source_path": "source.path",
    "pattern": "source.pattern",
    "recursive": "source.recursive",
    "destination_endpoint": "destination.endpoint",
    "destination_path": "destination.path",
    "name_template": "destination.name",
    "trigger_type": "trigger.type",
    "cron": "trigger.cron",
    "timezone": "trigger.timezone",
    "options": "options",
    "metadata": "metadata",
    "enabled": "enabled",
}
ROUTE_FIELDS = tuple(FIELD_PATHS)


def invalid(fields: dict[str, list[str]]) -> ValidationFailed:
    """A 400 naming the API's field paths."""
    return ValidationFailed("The request is not valid.", fields=fields)


def endpoint_of(tenant: Tenant, value: Endpoint | uuid.UUID | str | None, field: str, errors: dict) -> Endpoint | None:
    """The tenant's endpoint, or a field error: another tenant's id reads as unknown."""
    if isinstance(value, Endpoint):
        if value.tenant_id == tenant.id:
            return value
        value = None
    found = None
    if value is not None:
        try:
            found = Endpoint.objects.filter(tenant=tenant, pk=uuid.UUID(str(value))).first()
        except ValueError:
            found = None
    if found is None:
        errors[field] = ["Unknown endpoint."]
    return found


def check_path(value: Any, field: str, errors: dict) -> str:
    if not isinstance(value, str):
        errors[field] = ["Must be a path."]
        return ""
    if value in ("", "/"):
        return "/"
    try:
        path = naming.check_remote_path(value)
    except naming.UnsafeName as exc:
        errors[field] = [str(exc)]
        return ""
    if len(path) > 1024:
        errors[field] = ["At most 1024 characters."]
    return path


def inside(path: str, folder: str) -> bool:
    return folder == "/" or path == folder or path.startswith(folder + "/")


def _validate_route(tenant: Tenant, values: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise a complete route spec; raise ValidationFailed with API paths."""
    errors: dict[str, list[str]] = {}
    out = dict(values)
    try:
        out["name"] = endpoint_validation.name(str(values.get("name") or ""))
    except endpoint_validation.Invalid as exc:
        errors["name"] = [str(exc)]
    source = endpoint_of(tenant, values.get("source_endpoint"), "source.endpoint", errors)
    destination = endpoint_of(tenant, values.get("destination_endpoint"), "destination.endpoint", errors)
    out["source_endpoint"], out["destination_endpoint"] = source, destination
    out["source_path"] = check_path(values.get("source_path", "/"), "source.path", errors)
    out["destination_path"] = check_path(values.get("destination_path", "/"), "destination.path", errors)
    pattern = values.get("pattern") or "*"
    if (
        not isinstance(pattern, str)
        or len(pattern) > MAX_PATTERN
        or "/" in pattern
        or naming.CONTROL_CHARS.search(pattern)
    ):
        errors["source.pattern"] = ["A glob over file names (such as '*.csv'): no '/', at most 255 characters."]
    out["pattern"] = pattern
    out["recursive"] = bool(values.get("recursive", False))
    template = values.get("name_template") or "{name}"
    try:
        out["name_template"] = naming.check_template(template)
    except naming.UnsafeName as exc:
        errors["destination.name"] = [str(exc)]
    trigger = values.get("trigger_type") or Route.Trigger.MANUAL
    if trigger not in Route.Trigger.values:
        errors["trigger.type"] = [f"One of: {', '.join(Route.Trigger.values)}."]
    out["trigger_type"] = trigger
    cron = values.get("cron") or ""
    if trigger == Route.Trigger.SCHEDULE:
        if not cron:
            errors["trigger.cron"] = ["A schedule needs a 5-field cron expression."]
        else:
            try:
                cron = schedule.check_cron(cron)
            except schedule.InvalidSchedule as exc:
                errors["trigger.cron"] = [str(exc)]
    elif cron:
        errors["trigger.cron"] = ["Only schedule triggers take a cron expression."]
    out["cron"] = cron
    try:
        out["timezone"] = schedule.check_timezone(values.get("timezone") or "UTC")
    except schedule.InvalidSchedule as exc:
        errors["trigger.timezone"] = [str(exc)]
    if trigger == Route.Trigger.EVENT and source is not None and source.kind != Endpoint.Kind.S3:
        errors["trigger.type"] = ["Event triggers need an S3 source (S3 → EventBridge → Ferry)."]
    try:
        out["options"] = route_options.normalize(values.get("options"))
    except route_options.InvalidOptions as exc:
        errors.update({f"options.{key}": msgs for key, msgs in exc.fields.items()})
    else:
        key_errors = pgpkeys.check_option_keys(tenant=tenant, options=out["options"])
        errors.update({f"options.{key}": msgs for key, msgs in key_errors.items()})
    try:
        out["metadata"] = business_metadata.normalize(values.get("metadata"))
    except business_metadata.InvalidMetadata as exc:
        errors.update(exc.fields)
    if (
        source is not None
        and destination is not None
        and source.pk == destination.pk
        and not errors.get("destination.path")
        and not errors.get("source.path")
        and (
            out["destination_path"] == out["source_path"]
            or (out["recursive"] and inside(out["destination_path"], out["source_path"]))
        )
    ):
        errors["destination.path"] = [
            "The destination is inside the source folder: delivered files would be taken again."
        ]
    out["enabled"] = bool(values.get("enabled", True))
    if errors:
        raise invalid(errors)
    return out


def _name_taken() -> ValidationFailed:
    return invalid({"name": ["A route with this name exists."]})


def _audit(action: str, route: Route, *, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    audit.record(
        action=f"route.{action}",
        object_kind="route",
        object_id=route.id,
        tenant_id=route.tenant_id,
        before=before,
        after=after,
    )


def create_route(*, tenant: Tenant, **spec: Any) -> Route:
    """Create a route from ``spec`` (keys: :data:`ROUTE_FIELDS`; endpoints as ids or rows).

    Validated here: names the tenant's own endpoints only (another tenant's id is an
    unknown endpoint), event triggers need an S3 source, cron (croniter) and time zone
    (zoneinfo) must parse, options are complete and valid. Writes the mirror outbox row
    in the same transaction.
    """
    unknown = set(spec) - set(ROUTE_FIELDS)
    if unknown:
        raise TypeError(f"unknown route fields: {sorted(unknown)}")
    values = _validate_route(tenant, spec)
    route_id = uuid.uuid4()
    now = timezone.now()
    try:
        with transaction.atomic():
            pgpkeys.lock_option_keys(tenant=tenant, options=values["options"])
            route = Route.objects.create(
                id=route_id,
                tenant=tenant,
                partition=partition_of(route_id),
                next_run_at=schedule.next_run_of(values, now),
                expect_since=now if values["options"].get("expect") else None,
                **values,
            )
            route.refresh_from_db()
            mirror_docs.record(route)
            _audit("create", route, before=None, after=mirror_docs.document_of(route))
    except IntegrityError:
        raise _name_taken() from None
    log.info("route created", extra={"route": str(route.id), "trigger": route.trigger_type})
    _wire_bucket_events(route)
    return route


def _wire_bucket_events(route: Route) -> None:
    """An event route needs its source bucket to send S3 events to EventBridge: turned on
    (merged into the bucket's notification configuration) after the route is committed.
    Best effort: a bucket Ferry may not configure is set up by its owner (docs)."""
    if route.trigger_type != Route.Trigger.EVENT:
        return

    def wire() -> None:
        try:
            sources.enable_bucket_events(route.source_endpoint)
        except Exception:
            log.warning(
                "could not turn on EventBridge notifications for the source bucket",
                extra={"route": str(route.id)},
                exc_info=True,
            )

    transaction.on_commit(wire)


def update_route(*, route: Route, expected_version: int | None = None, **changes: Any) -> Route:
    """Change some fields of a route; the whole result is validated again.

    Transfers already created keep the options they were created with. A changed schedule
    gets a new ``next_run_at``. 409 when the route changed since ``expected_version``.
    """
    unknown = set(changes) - set(ROUTE_FIELDS)
    if unknown:
        raise TypeError(f"unknown route fields: {sorted(unknown)}")
    current = {field: getattr(route, field) for field in ROUTE_FIELDS}
    current["source_endpoint"] = route.source_endpoint_id
    current["destination_endpoint"] = route.destination_endpoint_id
    if "options" in changes and changes["options"] is not None:
        # Options merge over the route's current ones: PATCH {"options": {"max_attempts": 3}}.
        unknown_options = {k: ["Unknown option."] for k in changes["options"] if k not in route_options.DEFAULTS}
        if unknown_options:
            raise invalid({f"options.{k}": v for k, v in unknown_options.items()})
        changes = {**changes, "options": {**route.options, **changes["options"]}}
    values = _validate_route(route.tenant, {**current, **changes})
    now = timezone.now()
    try:
        with transaction.atomic():
            locked = Route.objects.select_for_update().filter(pk=route.pk, tenant_id=route.tenant_id).first()
            if locked is None:
                raise NotFound("Not found.")
            if expected_version is not None and locked.version != expected_version:
                raise Conflict("The route changed while this request was made; read it again and retry.")
            pgpkeys.lock_option_keys(tenant=route.tenant, options=values["options"])
            before = mirror_docs.document_of(locked)
            schedule_changed = any(
                values[f] != getattr(locked, f) for f in ("trigger_type", "cron", "timezone", "enabled")
            )
            expect = values["options"].get("expect")
            # A new or changed expectation (its time zone included), or a route enabled again:
            # the first window opens now, so none before it is judged late (expectations).
            expect_restarts = bool(expect) and (
                expect != (locked.options or {}).get("expect")
                or values["timezone"] != locked.timezone
                or (values["enabled"] and not locked.enabled)
            )
            for field, value in values.items():
                setattr(locked, field, value)
            if expect_restarts:
                locked.expect_since = now
            if schedule_changed:
                locked.next_run_at = schedule.next_run_of(values, now)
            locked.version += 1
            locked.save()
            mirror_docs.record(locked)
            _audit("update", locked, before=before, after=mirror_docs.document_of(locked))
    except IntegrityError:
        raise _name_taken() from None
    log.info("route changed", extra={"route": str(locked.id), "version": locked.version})
    _wire_bucket_events(locked)
    return locked


def delete_route(*, route: Route) -> None:
    """Delete a route (409 ``route_busy`` while any of its transfers is still on its way).

    Finished and dead transfers stay, with ``route`` set to null, so their history and
    re-drive remain (each carries its own options).
    """
    with transaction.atomic():
        locked = Route.objects.select_for_update().filter(pk=route.pk).first()
        if locked is None:
            raise NotFound("Not found.")
        if Transfer.objects.filter(route=locked, state__in=MOVING).exists():
            raise Conflict(
                "Transfers of this route are still on their way; disable the route, wait or cancel them, then delete.",
                code="route_busy",
            )
        version = locked.version + 1
        _audit("delete", locked, before=mirror_docs.document_of(locked), after=None)
        locked.delete()
        mirror_docs.record_deleted(str(route.id), version)
    log.info("route deleted", extra={"route": str(route.id)})


def take_due_run(route: Route, *, now: datetime) -> bool:
    """Claim this schedule run of ``route`` (compare-and-set on ``next_run_at``).

    The scheduler tick calls this before listing a due route; only one caller wins a run,
    and the winner has already moved ``next_run_at`` to the next cron time.
    """
    if route.trigger_type != Route.Trigger.SCHEDULE or not route.enabled:
        return False
    if not schedule.is_due(route.next_run_at, now):
        return False
    following = schedule.next_run_after(route.cron, route.timezone, now)
    updated = Route.objects.filter(pk=route.pk, next_run_at=route.next_run_at, enabled=True).update(
        next_run_at=following
    )
    if updated == 1:
        route.next_run_at = following
    return updated == 1
