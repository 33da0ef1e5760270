"""Transfers writes: routes, transfer creation (polls, events, ad-hoc), outcomes, re-drive, cancel.

Every state change of a Transfer goes through ``transfers.states`` (compare-and-set, with
a timeline event); this module decides *which* change. Creation is idempotent: the
database's unique keys (route + source path + source version; tenant + Idempotency-Key)
make a repeated poll, a repeated event or a retried request find the existing row.

New transfers are handed to the execution side after the commit
(``workers.dispatch.dispatch_transfers``), never inside the transaction: a worker must
find the row it was told about.

Conventions: paths are relative to the endpoint's root (SFTP) or key prefix (S3), written
with a leading ``/``. Field names in errors are the API's (``source.endpoint``,
``trigger.cron``, ``options.max_attempts``), so the API passes them through unchanged.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import posixpath
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from controlplane import mirror
from controlplane.errors import Conflict, NotFound, ValidationFailed
from controlplane.metrics import bytes_moved, retries, transfer_seconds
from controlplane.models import Tenant
from controlplane.querysets import in_pk_order
from endpoints import validation as endpoint_validation
from endpoints.models import Endpoint
from transfers import backoff, naming, schedule, stability, watermarks
from transfers import options as route_options
from transfers.models import FileObservation, Route, Transfer, TransferEvent
from transfers.partitions import partition_of
from transfers.states import REDRIVABLE, TRANSITIONS, State, transition
from workers.engine.listing import PART_RE

log = logging.getLogger(__name__)

MIRROR_KIND = "route"
MAX_PATTERN = 255
_CLAIMED = (State.STAGING, State.STAGED, State.DELIVERING)
# Transfers still on their way: a route with any of these cannot be deleted.
_MOVING = (State.PENDING, State.STAGING, State.STAGED, State.DELIVERING, State.FAILED)
CANCELLABLE = frozenset(s for s, tos in TRANSITIONS.items() if State.CANCELLED in tos)

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
    "enabled": "enabled",
}
ROUTE_FIELDS = tuple(FIELD_PATHS)


class RemoteFileLike(Protocol):
    path: str
    size: int
    mtime: float
    version: str | None


def _invalid(fields: dict[str, list[str]]) -> ValidationFailed:
    return ValidationFailed("The request is not valid.", fields=fields)


def _dispatch_after_commit(ids: Sequence[uuid.UUID | str]) -> None:
    """Hand new or re-driven transfers to the execution side once the commit is done."""
    if not ids:
        return
    id_list = [str(i) for i in ids]

    def dispatch() -> None:
        # Imported lazily: workers depends on transfers, not the other way round.
        from workers.dispatch import dispatch_transfers

        try:
            dispatch_transfers(id_list)
        except Exception:
            # The rows are committed; the region keeper's dispatch picks them up.
            log.warning("dispatch after commit failed; the keeper will dispatch", exc_info=True)

    transaction.on_commit(dispatch)


# --- the mirror document ----------------------------------------------------------------


def document_of(route: Route) -> dict[str, Any]:
    """The route as the config mirror stores it."""
    return {
        "id": str(route.id),
        "tenant_id": str(route.tenant_id),
        "name": route.name,
        "source_endpoint_id": str(route.source_endpoint_id),
        "source_path": route.source_path,
        "pattern": route.pattern,
        "recursive": route.recursive,
        "destination_endpoint_id": str(route.destination_endpoint_id),
        "destination_path": route.destination_path,
        "name_template": route.name_template,
        "trigger_type": route.trigger_type,
        "cron": route.cron,
        "timezone": route.timezone,
        "options": route.options,
        "enabled": route.enabled,
        "partition": route.partition,
        "version": route.version,
        "created_at": route.created_at.isoformat(),
        "updated_at": route.updated_at.isoformat(),
    }


def _record(route: Route) -> None:
    mirror.record(kind=MIRROR_KIND, object_id=str(route.id), version=route.version, document=document_of(route))


def mirror_documents():
    for route in in_pk_order(Route.objects.all()):
        yield str(route.id), route.version, document_of(route)


def restore_document(document: dict[str, Any]) -> Route:
    """Recreate a route from its mirror document (``mirror restore``; no outbox row)."""
    route = Route.objects.create(
        id=document["id"],
        tenant_id=document["tenant_id"],
        name=document["name"],
        source_endpoint_id=document["source_endpoint_id"],
        source_path=document["source_path"],
        pattern=document["pattern"],
        recursive=document["recursive"],
        destination_endpoint_id=document["destination_endpoint_id"],
        destination_path=document["destination_path"],
        name_template=document["name_template"],
        trigger_type=document["trigger_type"],
        cron=document["cron"],
        timezone=document["timezone"],
        options=document["options"],
        enabled=document["enabled"],
        partition=document["partition"],
        version=document["version"],
    )
    # next_run_at is not mirrored (it changes every run): restored schedules start afresh.
    # The transfers are lost: polls must not take files whose delivery the ledger may
    # have forgotten (transfers.watermarks).
    now = timezone.now()
    Route.objects.filter(pk=route.pk).update(
        created_at=document["created_at"],
        updated_at=document["updated_at"],
        next_run_at=_next_run(document, now),
        not_before=watermarks.watermark_at(now),
    )
    route.refresh_from_db()
    return route


def register_mirror() -> None:
    mirror.register(
        MIRROR_KIND, order=30, documents=mirror_documents, restore=restore_document, exists=Route.objects.exists
    )


# --- routes -----------------------------------------------------------------------------


def _endpoint(tenant: Tenant, value: Endpoint | uuid.UUID | str | None, field: str, errors: dict) -> Endpoint | None:
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


def _path(value: Any, field: str, errors: dict) -> str:
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


def _inside(path: str, folder: str) -> bool:
    return folder == "/" or path == folder or path.startswith(folder + "/")


def _validate_route(tenant: Tenant, values: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise a complete route spec; raise ValidationFailed with API paths."""
    errors: dict[str, list[str]] = {}
    out = dict(values)
    try:
        out["name"] = endpoint_validation.name(str(values.get("name") or ""))
    except endpoint_validation.Invalid as exc:
        errors["name"] = [str(exc)]
    source = _endpoint(tenant, values.get("source_endpoint"), "source.endpoint", errors)
    destination = _endpoint(tenant, values.get("destination_endpoint"), "destination.endpoint", errors)
    out["source_endpoint"], out["destination_endpoint"] = source, destination
    out["source_path"] = _path(values.get("source_path", "/"), "source.path", errors)
    out["destination_path"] = _path(values.get("destination_path", "/"), "destination.path", errors)
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
    if (
        source is not None
        and destination is not None
        and source.pk == destination.pk
        and not errors.get("destination.path")
        and not errors.get("source.path")
        and (
            out["destination_path"] == out["source_path"]
            or (out["recursive"] and _inside(out["destination_path"], out["source_path"]))
        )
    ):
        errors["destination.path"] = [
            "The destination is inside the source folder: delivered files would be taken again."
        ]
    out["enabled"] = bool(values.get("enabled", True))
    if errors:
        raise _invalid(errors)
    return out


def _name_taken() -> ValidationFailed:
    return _invalid({"name": ["A route with this name exists."]})


def _next_run(route_values: dict[str, Any], now: datetime) -> datetime | None:
    if route_values["trigger_type"] != Route.Trigger.SCHEDULE or not route_values["enabled"]:
        return None
    return schedule.next_run_after(route_values["cron"], route_values["timezone"], now)


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
            route = Route.objects.create(
                id=route_id,
                tenant=tenant,
                partition=partition_of(route_id),
                next_run_at=_next_run(values, now),
                **values,
            )
            route.refresh_from_db()
            _record(route)
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
        from workers.triggers import enable_bucket_events

        try:
            enable_bucket_events(route.source_endpoint)
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
            raise _invalid({f"options.{k}": v for k, v in unknown_options.items()})
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
            schedule_changed = any(
                values[f] != getattr(locked, f) for f in ("trigger_type", "cron", "timezone", "enabled")
            )
            for field, value in values.items():
                setattr(locked, field, value)
            if schedule_changed:
                locked.next_run_at = _next_run(values, now)
            locked.version += 1
            locked.save()
            _record(locked)
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
        if Transfer.objects.filter(route=locked, state__in=_MOVING).exists():
            raise Conflict(
                "Transfers of this route are still on their way; disable the route, wait or cancel them, then delete.",
                code="route_busy",
            )
        version = locked.version + 1
        locked.delete()
        mirror.record(kind=MIRROR_KIND, object_id=str(route.id), version=version, document=None)
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


# --- creating transfers -------------------------------------------------------------------


def _in_route(route: Route, path: str) -> bool:
    """Whether ``path`` is a file the route takes: in its folder (or below, if recursive)
    and matching its pattern."""
    folder, name = posixpath.split(path)
    if route.recursive:
        if not _inside(folder, route.source_path):
            return False
    elif folder != route.source_path:
        return False
    # Ferry's own in-flight uploads (".NAME.<transfer id>.part") are never a source file,
    # even when one route's destination folder is another route's source.
    return not PART_RE.match(name) and fnmatch.fnmatchcase(name, route.pattern)


def _version_of(file: RemoteFileLike) -> str:
    version = getattr(file, "version", None)
    if version:
        return str(version)
    return f"{int(file.size)}:{int(file.mtime)}"


def _create_transfers(
    route: Route, items: list[tuple[str, str, int | None]], *, now: datetime, detail: str
) -> list[Transfer]:
    """Create the transfers of ``(source path, version, size)`` not created before.

    Idempotent and race-safe: rows that exist are skipped; a concurrent insert of the same
    key wins (``ignore_conflicts``) and only rows this call inserted are returned.
    """
    if not items:
        return []
    existing = set(
        Transfer.objects.filter(route=route, source_path__in={path for path, _, _ in items}).values_list(
            "source_path", "source_version"
        )
    )
    new: list[Transfer] = []
    seen: set[tuple[str, str]] = set()
    for path, version, size in items:
        if (path, version) in existing or (path, version) in seen:
            continue
        seen.add((path, version))
        transfer_id = uuid.uuid4()
        try:
            destination = naming.destination_path(
                folder=route.destination_path,
                template=route.name_template,
                source_path=path,
                source_root=route.source_path,
                transfer_id=str(transfer_id),
                at=now,
            )
        except naming.UnsafeName as exc:
            log.warning("source file name refused", extra={"route": str(route.id), "path": path, "reason": str(exc)})
            continue
        new.append(
            Transfer(
                id=transfer_id,
                tenant_id=route.tenant_id,
                route=route,
                source_endpoint_id=route.source_endpoint_id,
                source_path=path,
                source_version=version,
                source_size=size,
                bytes_total=size,
                destination_endpoint_id=route.destination_endpoint_id,
                destination_path=destination,
                options=dict(route.options),
                max_attempts=route.options.get("max_attempts", route_options.DEFAULTS["max_attempts"]),
                partition=route.partition,
                state=State.PENDING,
            )
        )
    if not new:
        return []
    # savepoint=False: observe_files calls this inside its own transaction; a nested atomic
    # would send a SAVEPOINT, which Aurora's write forwarding refuses.
    with transaction.atomic(savepoint=False):
        Transfer.objects.bulk_create(new, ignore_conflicts=True, batch_size=500)
        created = list(Transfer.objects.filter(id__in=[t.id for t in new]))
        TransferEvent.objects.bulk_create(
            [
                TransferEvent(
                    transfer=t,
                    at=now,
                    from_state="",
                    to_state=State.PENDING,
                    region=settings.FERRY_REGION,
                    detail=detail,
                    attempt=0,
                )
                for t in created
            ],
            batch_size=500,
        )
        _dispatch_after_commit([t.id for t in created])
    if created:
        from controlplane.metrics import transfer_transitions

        transfer_transitions.labels(to_state=State.PENDING.value).inc(len(created))
    return created


def _marker_names(route: Route, names: Iterable[str]) -> dict[str, str]:
    """File name → its done-marker's name, for a route with a done marker."""
    template = route.options.get("done_marker")
    if not template:
        return {}
    out = {}
    for name in names:
        try:
            out[name] = naming.render(template, source_name=name, transfer_id="", at=timezone.now())
        except naming.UnsafeName:
            continue
    return out


def observe_files(
    route: Route, files: Sequence[RemoteFileLike], *, now: datetime, force: bool = False
) -> list[Transfer]:
    """Record one poll of ``route``'s source and create transfers for the stable files.

    ``files`` is the complete listing of the route's folder (and sub-folders when
    recursive), paths relative to the endpoint root with a leading ``/``; this function
    applies the folder and pattern rules itself, so pass the unfiltered listing when the
    route has a done marker (markers usually do not match the pattern). Observations of
    files no longer listed are forgotten. Stability (``transfers.stability``):
    ``min_age_seconds`` by mtime, unchanged size and mtime across two polls when
    ``stable_polls``, the done marker when set; ``force`` takes every matching file now.
    Files modified before the route's restore watermark are never taken (``watermarks``).

    Returns the transfers created by this call (already existing ones are not repeated);
    they are dispatched after the commit.
    """
    opts = route.options or {}
    listed: dict[str, RemoteFileLike] = {}
    for file in files:
        try:
            path = naming.check_remote_path(file.path)
        except naming.UnsafeName as exc:
            log.warning("listed path refused", extra={"route": str(route.id), "path": file.path, "reason": str(exc)})
            continue
        listed[path] = file
    by_folder: dict[str, set[str]] = {}
    for path in listed:
        folder, name = posixpath.split(path)
        by_folder.setdefault(folder, set()).add(name)
    markers_of = _marker_names(route, (posixpath.basename(p) for p in listed))
    marker_names = set(markers_of.values())
    candidates = {
        path: file
        for path, file in listed.items()
        if _in_route(route, path) and not (marker_names and posixpath.basename(path) in marker_names)
    }
    # Older than the route's restore watermark: the ledger may have forgotten its delivery,
    # so not even a forced run takes it (the operator decides, docs/execution.md).
    old = [path for path, file in candidates.items() if watermarks.skip(route, float(file.mtime))]
    if old:
        log.info(
            "files older than the route's restore watermark left alone",
            extra={"route": str(route.id), "count": len(old), "not_before": str(route.not_before)},
        )
        for path in old:
            del candidates[path]

    with transaction.atomic():
        previous = {o.path: o for o in FileObservation.objects.filter(route=route, path__in=list(candidates))}
        to_create: list[FileObservation] = []
        to_update: list[FileObservation] = []
        stable: list[tuple[str, str, int | None]] = []
        for path, file in candidates.items():
            size, mtime = int(file.size), float(file.mtime)
            old = previous.get(path)
            before = stability.Observation(size=old.size, mtime=old.mtime, polls=old.polls) if old else None
            current = stability.observe(before, size=size, mtime=mtime)
            folder, name = posixpath.split(path)
            marker = markers_of.get(name)
            decision = stability.decide(
                current,
                now=now.timestamp(),
                min_age_seconds=int(opts.get("min_age_seconds") or 0),
                stable_polls=bool(opts.get("stable_polls", True)),
                marker_required=bool(opts.get("done_marker")),
                marker_present=marker is not None and marker in by_folder.get(folder, set()),
                force=force,
            )
            if old is None:
                to_create.append(
                    FileObservation(
                        route=route,
                        path=path,
                        size=size,
                        mtime=mtime,
                        version=_version_of(file),
                        first_seen_at=now,
                        last_seen_at=now,
                        polls=current.polls,
                    )
                )
            else:
                old.size, old.mtime, old.polls, old.last_seen_at = size, mtime, current.polls, now
                old.version = _version_of(file)
                to_update.append(old)
            if decision.stable:
                stable.append((path, _version_of(file), size))
        FileObservation.objects.filter(route=route).exclude(path__in=list(candidates)).delete()
        # ignore_conflicts: a concurrent poll of the same route inserted it; its count stands.
        FileObservation.objects.bulk_create(to_create, ignore_conflicts=True, batch_size=500)
        FileObservation.objects.bulk_update(
            to_update, ["size", "mtime", "polls", "last_seen_at", "version"], batch_size=500
        )
        detail = "created by a manual run (forced)" if force else "created by a poll of the source"
        return _create_transfers(route, stable, now=now, detail=detail)


def _s3_relative(endpoint: Endpoint, key: str) -> str | None:
    from workers.engine.locations import s3_relative_path

    return s3_relative_path((endpoint.config or {}).get("prefix") or "", key)


def create_from_s3_event(
    *, bucket: str, key: str, version: str | None, size: int | None, region: str | None
) -> list[Transfer]:
    """Create a transfer on every enabled event route watching this object.

    A route watches ``key`` when its source is an S3 endpoint on ``bucket`` whose prefix
    starts the key, and the rest of the key lies in the route's folder and matches its
    pattern. ``key`` is already decoded (``unquote_plus``). ``version`` is the VersionId,
    or the ETag for unversioned buckets; a repeated event for the same version finds the
    existing transfer. No stability wait: S3 objects appear whole. Endpoints that name a
    region other than the event's are skipped.
    """
    routes = Route.objects.filter(
        enabled=True,
        trigger_type=Route.Trigger.EVENT,
        source_endpoint__kind=Endpoint.Kind.S3,
        source_endpoint__config__bucket=bucket,
    ).select_related("source_endpoint")
    created: list[Transfer] = []
    now = timezone.now()
    for route in routes:
        endpoint_region = (route.source_endpoint.config or {}).get("region")
        if region and endpoint_region and endpoint_region != region:
            continue
        path = _s3_relative(route.source_endpoint, key)
        if path is None:
            continue
        try:
            path = naming.check_remote_path(path)
        except naming.UnsafeName:
            log.warning("event key refused", extra={"route": str(route.id), "key": key})
            continue
        if not _in_route(route, path):
            continue
        created += _create_transfers(
            route, [(path, version or f"size:{size}", size)], now=now, detail="created by an S3 event"
        )
    return created


def _fingerprint(**values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def create_adhoc_transfer(
    tenant: Tenant,
    *,
    source_endpoint: Endpoint | uuid.UUID | str,
    source_path: str,
    destination_endpoint: Endpoint | uuid.UUID | str,
    destination_path: str,
    options: dict[str, Any] | None,
    idempotency_key: str,
) -> tuple[Transfer, bool]:
    """One file, no route. Returns ``(transfer, created)``.

    The same ``idempotency_key`` (per tenant) within ``FERRY_IDEMPOTENCY_TTL`` (24 h)
    returns the transfer it created the first time; with a different body it is refused
    (409 ``idempotency_conflict``). A ``destination_path`` ending in ``/`` is a folder: the
    source file name is appended.
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > 255 or naming.CONTROL_CHARS.search(key):
        raise _invalid({"Idempotency-Key": ["Send an Idempotency-Key header of 1-255 printable characters."]})
    errors: dict[str, list[str]] = {}
    source = _endpoint(tenant, source_endpoint, "source.endpoint", errors)
    destination = _endpoint(tenant, destination_endpoint, "destination.endpoint", errors)
    src = _path(source_path, "source.path", errors) if isinstance(source_path, str) else ""
    if src == "/" and "source.path" not in errors:
        errors["source.path"] = ["Name a file, not the root."]
    dst = ""
    if not isinstance(destination_path, str) or not destination_path:
        errors["destination.path"] = ["Must be a path."]
    elif "source.path" not in errors:
        raw = destination_path + posixpath.basename(src) if destination_path.endswith("/") else destination_path
        dst = _path(raw, "destination.path", errors)
        if dst == "/" and "destination.path" not in errors:
            errors["destination.path"] = ["Name a file, not the root."]
    try:
        opts = route_options.normalize(options)
    except route_options.InvalidOptions as exc:
        errors.update({f"options.{k}": v for k, v in exc.fields.items()})
        opts = {}
    if errors:
        raise _invalid(errors)
    assert source is not None and destination is not None
    fingerprint = _fingerprint(
        source_endpoint=str(source.pk),
        source_path=src,
        destination_endpoint=str(destination.pk),
        destination_path=dst,
        options=opts,
    )
    now = timezone.now()

    def existing() -> tuple[Transfer, bool] | None:
        found = Transfer.objects.filter(tenant=tenant, idempotency_key=key).first()
        if found is None:
            return None
        if found.idempotency_fingerprint != fingerprint:
            raise Conflict("This Idempotency-Key was used with a different request.", code="idempotency_conflict")
        return found, False

    # A key older than the TTL is free again; the old transfer keeps its history.
    Transfer.objects.filter(tenant=tenant, idempotency_key=key, idempotency_expires_at__lte=now).update(
        idempotency_key=None
    )
    found = existing()
    if found:
        return found
    transfer_id = uuid.uuid4()
    try:
        with transaction.atomic():
            transfer = Transfer.objects.create(
                id=transfer_id,
                tenant=tenant,
                route=None,
                source_endpoint=source,
                source_path=src,
                # Each ad-hoc request is its own delivery (its key guards against repeats);
                # a later request for the same file, with a new key, delivers again.
                source_version=f"adhoc:{transfer_id}",
                destination_endpoint=destination,
                destination_path=dst,
                options=opts,
                max_attempts=opts["max_attempts"],
                partition=partition_of(transfer_id),
                idempotency_key=key,
                idempotency_expires_at=now + timedelta(seconds=settings.FERRY_IDEMPOTENCY_TTL),
                idempotency_fingerprint=fingerprint,
            )
            TransferEvent.objects.create(
                transfer=transfer,
                at=now,
                from_state="",
                to_state=State.PENDING,
                region=settings.FERRY_REGION,
                detail="created by an API request",
            )
            _dispatch_after_commit([transfer.id])
    except IntegrityError:
        # A concurrent request with the same key won.
        found = existing()
        if found:
            return found
        raise
    log.info("ad-hoc transfer created", extra={"transfer": str(transfer.id)})
    return transfer, True


# --- operator and customer actions ------------------------------------------------------


def redrive(transfer: Transfer, *, by: str = "api") -> Transfer:
    """Send a ``failed`` or ``dead`` transfer round again (409 ``invalid_state`` otherwise).

    Attempt policy: a re-drive grants a fresh attempt budget (``attempt`` back to 0, the
    route's ``max_attempts`` again); the timeline keeps every earlier attempt. The staging
    object is kept, so the execution resumes from staging without reading the source again.
    """
    if transfer.source_endpoint.deleted_at or transfer.destination_endpoint.deleted_at:
        raise Conflict("An endpoint of this transfer was deleted, so it cannot run again.", code="endpoint_deleted")
    detail = f"re-driven by {by} after {transfer.attempt} attempt(s)"
    if transfer.staging_key:
        detail += "; resumes from staging"
    moved = transition(
        transfer.id,
        to=State.PENDING,
        frm=REDRIVABLE,
        detail=detail,
        attempt=0,
        next_attempt_at=None,
        last_error_code="",
        last_error_message="",
        finished_at=None,
    )
    if not moved:
        transfer.refresh_from_db(fields=["state"])
        raise Conflict(
            f"Only failed or dead transfers can be re-driven; this one is {transfer.state}.", code="invalid_state"
        )
    _dispatch_after_commit([transfer.id])
    transfer.refresh_from_db()
    log.info("transfer re-driven", extra={"transfer": str(transfer.id), "by": by})
    return transfer


def cancel(transfer: Transfer, *, by: str = "api") -> Transfer:
    """Cancel a transfer that has not finished (409 ``invalid_state`` otherwise).

    Raises the claim token, so a worker still holding the claim loses its next fenced
    write or heartbeat and stops. A kept staging object is left to the staging expiry.
    """
    with transaction.atomic():
        moved = transition(transfer.id, to=State.CANCELLED, frm=CANCELLABLE, detail=f"cancelled by {by}")
        if moved:
            Transfer.objects.filter(id=transfer.id).update(claim_token=F("claim_token") + 1)
    if not moved:
        transfer.refresh_from_db(fields=["state"])
        raise Conflict(f"This transfer is {transfer.state} and can no longer be cancelled.", code="invalid_state")
    transfer.refresh_from_db()
    log.info("transfer cancelled", extra={"transfer": str(transfer.id), "by": by})
    return transfer


# --- outcomes recorded by workers -----------------------------------------------------------


def _error_parts(error: BaseException) -> tuple[bool, str, str]:
    """(transient, code, customer-safe message). Unexpected exceptions count as transient;
    their text may hold internals, so only the type name is stored (the traceback is logged
    by the caller)."""
    from workers.errors import TransferError

    if isinstance(error, TransferError):
        return error.transient, error.code, str(error)[:2000]
    return True, "unexpected_error", f"Unexpected error ({type(error).__name__}); the logs have the details."


def record_failure(transfer_id: uuid.UUID | str, claim_token: int, error: BaseException, *, now: datetime) -> State:
    """Record a failed attempt of the worker holding ``claim_token``; returns the new state.

    Transient errors (and unexpected exceptions) → ``failed`` with ``next_attempt_at`` =
    now + backoff (``transfers.backoff``) while attempts remain, else ``dead``; permanent
    errors → ``dead`` at once. Code and message are kept on the transfer and in the
    timeline. When the claim was lost (cancelled, re-claimed) nothing is written and the
    transfer's current state is returned.
    """
    transient, code, message = _error_parts(error)
    row = Transfer.objects.filter(id=transfer_id).values("attempt", "max_attempts").first()
    if row is None:
        raise NotFound("Not found.")
    retry = transient and row["attempt"] < row["max_attempts"]
    to = State.FAILED if retry else State.DEAD
    fields: dict[str, Any] = {"last_error_code": code[:64], "last_error_message": message}
    if retry:
        wait = backoff.delay(row["attempt"])
        fields["next_attempt_at"] = now + timedelta(seconds=wait)
        detail = f"{code}: {message} (attempt {row['attempt']} of {row['max_attempts']}; retry in {wait:.1f}s)"
    else:
        fields["next_attempt_at"] = None
        why = "permanent error" if not transient else f"attempts used up ({row['attempt']})"
        detail = f"{code}: {message} ({why})"
    if transition(transfer_id, to=to, frm=_CLAIMED, claim_token=claim_token, detail=detail[:1000], **fields):
        if retry:
            retries.labels(code=code[:64]).inc()
        return to
    current = Transfer.objects.filter(id=transfer_id).values_list("state", flat=True).first()
    return State(current)


def record_staged(
    transfer_id: uuid.UUID | str, claim_token: int, *, staging_key: str, sha256: str, bytes_total: int
) -> bool:
    """The source is copied to staging: staging → staged. False when the claim was lost."""
    return transition(
        transfer_id,
        to=State.STAGED,
        frm=[State.STAGING],
        claim_token=claim_token,
        detail=f"staged {bytes_total} bytes",
        staging_key=staging_key,
        sha256=sha256,
        bytes_total=bytes_total,
        bytes_done=bytes_total,
    )


def record_success(
    transfer_id: uuid.UUID | str,
    claim_token: int,
    *,
    sha256: str,
    bytes_total: int,
    now: datetime,
    destination_path: str | None = None,
    detail: str = "",
) -> bool:
    """Delivered and verified: delivering → succeeded, with the checksum and size.

    ``destination_path`` records the final name when ``on_conflict: rename`` chose
    another. Schedules the source action (``after_delivery`` other than ``keep``) as
    ``pending``. False when the claim was lost (nothing written).
    """
    row = (
        Transfer.objects.filter(id=transfer_id)
        .values("options", "started_at", "source_endpoint__kind", "destination_endpoint__kind")
        .first()
    )
    if row is None:
        return False
    action = (row["options"] or {}).get("after_delivery", "keep")
    fields: dict[str, Any] = {
        "sha256": sha256,
        "bytes_total": bytes_total,
        "bytes_done": bytes_total,
        "finished_at": now,
        "next_attempt_at": None,
        "last_error_code": "",
        "last_error_message": "",
        "source_action_state": Transfer.SourceAction.NONE if action == "keep" else Transfer.SourceAction.PENDING,
    }
    if destination_path:
        fields["destination_path"] = destination_path
    ok = transition(
        transfer_id,
        to=State.SUCCEEDED,
        frm=[State.DELIVERING],
        claim_token=claim_token,
        detail=detail or f"delivered {bytes_total} bytes, sha256 {sha256[:12]}…",
        **fields,
    )
    if ok:
        bytes_moved.labels(direction=f"{row['source_endpoint__kind']}-{row['destination_endpoint__kind']}").inc(
            bytes_total
        )
        if row["started_at"]:
            transfer_seconds.observe(max(0.0, (now - row["started_at"]).total_seconds()))
    return ok


def record_skipped(transfer_id: uuid.UUID | str, claim_token: int, *, reason: str) -> bool:
    """Nothing to deliver (already delivered per the ledger, or ``on_conflict: skip``)."""
    return transition(
        transfer_id,
        to=State.SKIPPED,
        frm=[State.STAGING, State.DELIVERING],
        claim_token=claim_token,
        detail=reason[:1000],
        next_attempt_at=None,
    )


def record_source_action(transfer_id: uuid.UUID | str, *, ok: bool, error: str = "") -> bool:
    """The after-delivery action on the source ran: ``done``, or ``failed`` with its error
    (retried on its own; the delivery stands either way). Compare-and-set on the action's
    own state, so two runs cannot both count."""
    updated = Transfer.objects.filter(
        id=transfer_id,
        state=State.SUCCEEDED,
        source_action_state__in=[Transfer.SourceAction.PENDING, Transfer.SourceAction.FAILED],
    ).update(
        source_action_state=Transfer.SourceAction.DONE if ok else Transfer.SourceAction.FAILED,
        source_action_error="" if ok else error[:2000],
        source_action_attempts=F("source_action_attempts") + 1,
        updated_at=timezone.now(),
    )
    return updated == 1
