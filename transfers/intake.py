"""Transfers come in: from polls of a route's source, from S3 events, from ad-hoc requests.

Creation is idempotent: the database's unique keys (route + source path + source version;
tenant + Idempotency-Key) make a repeated poll, a repeated event or a retried request find
the existing row. Each creation writes its timeline event through ``transfers.lifecycle``.

New transfers are handed to the execution side after the commit, never inside the
transaction (a worker must find the row it was told about), through the dispatcher the
workers app registers at start-up (:func:`register_dispatcher`); this app does not import
the workers. Manual runs list the source through the poller it registers the same way
(:func:`register_poller`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import posixpath
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.correlation import current_request_id
from controlplane.errors import Conflict
from controlplane.models import Tenant
from endpoints import proofs
from endpoints.models import Endpoint
from engine.listing import PART_RE, RemoteFile
from engine.locations import s3_relative_path
from transfers import batches, bulk, lifecycle, naming, pgpkeys, stability, watermarks
from transfers import metadata as business_metadata
from transfers import options as route_options
from transfers.models import FileObservation, Route, Transfer
from transfers.partitions import partition_of
from transfers.routes import check_path, endpoint_of, inside, invalid
from transfers.states import State

log = logging.getLogger(__name__)

# Listed files one round of the observation bookkeeping handles (one read of their
# observations, one insert, one update, one insert of transfers): what a poll holds beyond the
# listing itself stays the same however big the folder (bench/analysis.md, "#14 scale").
CHUNK = 2000


@dataclass(frozen=True)
class Created:
    """The transfers one intake call created: their ids in creation order, and the batch
    they form (None when the call created none, and for S3 events, which form no batch).

    Ids rather than rows: a big folder's run creates thousands, and the caller needs their
    count (the scheduler) or the first page of them (a manual run's answer, which reads it
    back through the transfers list's query)."""

    ids: list[uuid.UUID] = field(default_factory=list)
    batch_id: uuid.UUID | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def transfers(self) -> list[Transfer]:
        """The created rows read back, in creation order: one query (meant for a few)."""
        found = Transfer.objects.in_bulk(self.ids)
        return [found[i] for i in self.ids if i in found]


# --- hooks the execution side registers at start-up (WorkersConfig.ready) ----------------

Dispatcher = Callable[[list[str]], None]


class Poller(Protocol):
    """(route, force, waiting, trigger): ``waiting`` collects why listed files were not taken
    yet; ``trigger`` is the kind of the batch the run's transfers form (``manual`` here)."""

    def __call__(
        self, route: Route, force: bool = ..., waiting: Counter[str] | None = ..., *, trigger: str = ...
    ) -> Created: ...


_dispatcher: Dispatcher | None = None
_poller: Poller | None = None


def register_dispatcher(hook: Dispatcher) -> None:
    """Register what enqueues new or re-driven transfers (called after the commit with
    their ids; it must not raise: the region keeper's sweep is the safety net)."""
    global _dispatcher
    _dispatcher = hook


def register_poller(hook: Poller) -> None:
    """Register what lists a route's source now and creates its transfers (manual runs)."""
    global _poller
    _poller = hook


def dispatch_after_commit(ids: Sequence[uuid.UUID | str]) -> None:
    """Hand new or re-driven transfers to the execution side once the commit is done."""
    if not ids:
        return
    hook = _dispatcher
    if hook is None:
        # No execution side in this process: the region keeper's sweep dispatches them.
        return
    id_list = list(ids)
    # A big folder's run is handed over a slice at a time: what the dispatch reads and sends
    # for one call stays the same size however many there are. Whole run_batch messages a
    # slice (workers.dispatch groups a route's small files FERRY_BATCH_SIZE to a message).
    step = max(1, CHUNK // settings.FERRY_BATCH_SIZE) * settings.FERRY_BATCH_SIZE

    def dispatch() -> None:
        for start in range(0, len(id_list), step):
            try:
                hook([str(i) for i in id_list[start : start + step]])
            except Exception:
                # The rows are committed; the region keeper's dispatch picks them up.
                log.warning("dispatch after commit failed; the keeper will dispatch", exc_info=True)

    transaction.on_commit(dispatch)


def poll_now(route: Route, *, force: bool = False, waiting: Counter[str] | None = None) -> Created:
    """A manual run: list ``route``'s source now and create transfers for its stable files
    (all matching ones with ``force``); ``waiting`` counts the others by the reason they wait.
    Raises NotImplementedError when no poller is registered, and the poller's TransferError
    when the source cannot be listed."""
    if _poller is None:
        raise NotImplementedError("no poller registered")
    return _poller(route, force, waiting, trigger="manual")


# --- polls ----------------------------------------------------------------------------------


def _in_route(route: Route, path: str) -> bool:
    """Whether ``path`` is a file the route takes: in its folder (or below, if recursive)
    and matching its pattern."""
    folder, name = posixpath.split(path)
    if route.recursive:
        if not inside(folder, route.source_path):
            return False
    elif folder != route.source_path:
        return False
    # Ferry's own in-flight uploads (".ferry-<transfer id>.<claim>.part", or the previous
    # release's ".NAME.<transfer id>.<claim>.part") are never a source file,
    # even when one route's destination folder is another route's source.
    return not PART_RE.match(name) and fnmatch.fnmatchcase(name, route.pattern)


def _version_of(file: RemoteFile) -> str:
    if file.version:
        return file.version
    return f"{int(file.size)}:{int(file.mtime)}"


class _Intake:
    """The transfers of one intake call, inserted a chunk at a time in the caller's
    transaction (:meth:`add`), then counted into their batch and handed to dispatch after the
    commit (:meth:`finish`). Only ids are kept: what a chunk builds is dropped once inserted.

    Idempotent and race-safe: rows that exist are skipped; a concurrent insert of the same
    key wins (``ON CONFLICT DO NOTHING``, ``transfers.bulk``) and only rows this call inserted
    count as created. With ``batch_trigger`` (a poll or a manual run) the rows it creates form
    one batch (``transfers.batches``), opened before its first row; without (S3 events) they
    have none.
    """

    def __init__(self, route: Route, *, now: datetime, detail: str, batch_trigger: str | None = None) -> None:
        self.route, self.now, self.detail, self.batch_trigger = route, now, detail, batch_trigger
        self.batch_id = uuid.uuid4() if batch_trigger else None
        self.opened = False
        self.ids: list[uuid.UUID] = []
        self.prototype = Transfer(
            tenant_id=route.tenant_id,
            route=route,
            source_endpoint_id=route.source_endpoint_id,
            destination_endpoint_id=route.destination_endpoint_id,
            options=dict(route.options),
            metadata=dict(route.metadata or {}),
            max_attempts=route.options.get("max_attempts", route_options.DEFAULTS["max_attempts"]),
            partition=route.partition,
            state=State.PENDING,
            request_id=current_request_id(),  # the poll's, the event's or the manual run's
            batch_id=self.batch_id,
        )

    def add(self, items: Sequence[tuple[str, str, int | None]]) -> None:
        """Create the transfers of ``(source path, version, size)`` not created before."""
        if not items:
            return
        route = self.route
        existing = set(
            Transfer.objects.filter(route=route, source_path__in={path for path, _, _ in items}).values_list(
                "source_path", "source_version"
            )
        )
        # What differs from row to row; the rest is the prototype's (transfers.bulk).
        rows: dict[str, list[Any]] = {
            "id": [],
            "source_path": [],
            "source_version": [],
            "source_size": [],
            "bytes_total": [],
            "destination_path": [],
        }
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
                    at=self.now,
                )
            except naming.UnsafeName as exc:
                log.warning(
                    "source file name refused", extra={"route": str(route.id), "path": path, "reason": str(exc)}
                )
                continue
            # OpenPGP names: "{name}.pgp" when encrypting, ".pgp"/".gpg"/".asc" off when decrypting.
            destination = route_options.pgp_output_path(destination, route.options)
            for column, value in zip(rows, (transfer_id, path, version, size, size, destination), strict=True):
                rows[column].append(value)
        if not rows["id"]:
            return
        # savepoint=False: observe_files calls this inside its own transaction; a nested
        # atomic would send a SAVEPOINT, which Aurora's write forwarding refuses.
        with transaction.atomic(savepoint=False):
            if self.batch_id is not None and self.batch_trigger is not None and not self.opened:
                batches.open_batch(route, batch_id=self.batch_id, trigger=self.batch_trigger)
                self.opened = True
            # ON CONFLICT DO NOTHING RETURNING id: a concurrent poll's row wins, and only the
            # rows this statement inserted come back (exactly once, whoever races).
            inserted = set(bulk.insert_ignoring_conflicts(self.prototype, rows, returning="id"))
            created = [i for i in rows["id"] if i in inserted]  # in creation order
            lifecycle.record_created(created, at=self.now, detail=self.detail)
            self.ids += created

    def finish(self) -> Created:
        """Record the batch's size (or drop it: nothing was created after all) and dispatch
        the created transfers after the commit. Inside the transaction of :meth:`add`."""
        with transaction.atomic(savepoint=False):
            if self.opened and self.batch_id is not None:
                batches.close_intake(self.batch_id, created=len(self.ids))
            dispatch_after_commit(self.ids)
        return Created(ids=self.ids, batch_id=self.batch_id if self.ids else None)


def _create_transfers(
    route: Route,
    items: list[tuple[str, str, int | None]],
    *,
    now: datetime,
    detail: str,
    batch_trigger: str | None = None,
) -> Created:
    """Create the transfers of ``(source path, version, size)`` not created before, in one
    go (:class:`_Intake`); returns what this call created."""
    with transaction.atomic(savepoint=False):
        run = _Intake(route, now=now, detail=detail, batch_trigger=batch_trigger)
        run.add(items)
        return run.finish()


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
    route: Route,
    files: Sequence[RemoteFile],
    *,
    now: datetime,
    force: bool = False,
    waiting: Counter[str] | None = None,
    trigger: str = "schedule",
) -> Created:
    """Record one poll of ``route``'s source and create transfers for the stable files.

    ``files`` is the complete listing of the route's folder (and sub-folders when
    recursive), paths relative to the endpoint root with a leading ``/``; this function
    applies the folder and pattern rules itself, so pass the unfiltered listing when the
    route has a done marker (markers usually do not match the pattern). Observations of
    files no longer listed are forgotten. Stability (``transfers.stability``):
    ``min_age_seconds`` by mtime, unchanged size and mtime across two polls at least
    ``stability.MIN_INTERVAL_SECONDS`` apart when ``stable_polls``, the done marker when
    set; ``force`` takes every matching file now.
    Files modified before the route's restore watermark are never taken (``watermarks``).

    Returns what this call created (already existing transfers are not repeated): their
    ids and batch; they are dispatched after the commit. ``waiting``, when given, counts the
    matching files not taken by the reason they wait (the stability rule's words), for a
    manual run to say. The transfers one call creates form one batch of kind ``trigger``
    (``schedule`` or ``manual``; ``transfers.batches``).

    The listing is handled :data:`CHUNK` files at a time, all in one transaction: what the
    call holds besides ``files`` does not grow with the folder.
    """
    opts = route.options or {}
    listed: dict[str, RemoteFile] = {}
    for file in files:
        try:
            path = naming.check_remote_path(file.path)
        except naming.UnsafeName as exc:
            log.warning("listed path refused", extra={"route": str(route.id), "path": file.path, "reason": str(exc)})
            continue
        listed[path] = file
    markers_of = _marker_names(route, (posixpath.basename(p) for p in listed))
    marker_names = set(markers_of.values())
    by_folder: dict[str, set[str]] = {}
    if markers_of:  # only a done marker asks what else its folder holds
        for path in listed:
            folder, name = posixpath.split(path)
            by_folder.setdefault(folder, set()).add(name)
    candidates = {
        path: file
        for path, file in listed.items()
        if _in_route(route, path) and not (marker_names and posixpath.basename(path) in marker_names)
    }
    del listed
    # Older than the route's restore watermark: the ledger may have forgotten its delivery,
    # so not even a forced run takes it (the operator decides, docs/execution.md).
    too_old = [path for path, file in candidates.items() if watermarks.skip(route, float(file.mtime))]
    if too_old:
        log.info(
            "files older than the route's restore watermark left alone",
            extra={"route": str(route.id), "count": len(too_old), "not_before": str(route.not_before)},
        )
        for path in too_old:
            del candidates[path]

    rules = {
        "now": now.timestamp(),
        "min_age_seconds": int(opts.get("min_age_seconds") or 0),
        "stable_polls": bool(opts.get("stable_polls", True)),
        "marker_required": bool(opts.get("done_marker")),
        "force": force,
    }
    detail = "created by a manual run (forced)" if force else "created by a poll of the source"
    with transaction.atomic():
        _forget_unlisted(route, candidates)
        run = _Intake(route, now=now, detail=detail, batch_trigger=trigger)
        items = list(candidates.items())
        for start in range(0, len(items), CHUNK):
            chunk = dict(items[start : start + CHUNK])
            run.add(
                _observe_chunk(
                    route, chunk, now=now, rules=rules, markers_of=markers_of, by_folder=by_folder, waiting=waiting
                )
            )
        return run.finish()


def _forget_unlisted(route: Route, listed: dict[str, RemoteFile]) -> None:
    """Delete the observations of ``route``'s files not in ``listed``: read by id a
    :data:`CHUNK` at a time and deleted by id, rather than one ``NOT IN`` of the whole listing."""
    after = 0
    while True:
        page = list(
            FileObservation.objects.filter(route=route, id__gt=after).order_by("id").values_list("id", "path")[:CHUNK]
        )
        gone = [pk for pk, path in page if path not in listed]
        if gone:
            FileObservation.objects.filter(id__in=gone).delete()
        if len(page) < CHUNK:
            return
        after = page[-1][0]


def _observe_chunk(
    route: Route,
    chunk: dict[str, RemoteFile],
    *,
    now: datetime,
    rules: dict[str, Any],
    markers_of: dict[str, str],
    by_folder: dict[str, set[str]],
    waiting: Counter[str] | None,
) -> list[tuple[str, str, int | None]]:
    """Record the observations of ``chunk``'s files (inserted or updated) and return the
    ``(path, version, size)`` of those stable now (``stability.decide``)."""
    previous = {o.path: o for o in FileObservation.objects.filter(route=route, path__in=list(chunk))}
    to_create: list[tuple[str, int, float, str, int]] = []
    to_update: list[FileObservation] = []
    stable: list[tuple[str, str, int | None]] = []
    for path, file in chunk.items():
        size, mtime = int(file.size), float(file.mtime)
        old = previous.get(path)
        before = None
        if old is not None:
            # One poll like this: that poll (last_seen_at) started it. Read so, a row
            # written before first_seen_at moved on changes cannot shorten the interval.
            since = old.last_seen_at if old.polls == 1 else old.first_seen_at
            before = stability.Observation(size=old.size, mtime=old.mtime, polls=old.polls, since=since.timestamp())
        current = stability.observe(before, size=size, mtime=mtime, now=rules["now"])
        folder, name = posixpath.split(path)
        marker = markers_of.get(name)
        decision = stability.decide(
            current,
            now=rules["now"],
            min_age_seconds=rules["min_age_seconds"],
            stable_polls=rules["stable_polls"],
            marker_required=rules["marker_required"],
            marker_present=marker is not None and marker in by_folder.get(folder, set()),
            force=rules["force"],
        )
        version = _version_of(file)
        if old is None:
            # Plain values: a chunk of a big folder's first poll is thousands of rows.
            to_create.append((path, size, mtime, version, current.polls))
        else:
            old.size, old.mtime, old.polls, old.last_seen_at = size, mtime, current.polls, now
            if current.polls == 1:  # changed: the unchanged interval starts again now
                old.first_seen_at = now
            old.version = version
            to_update.append(old)
        if decision.stable:
            stable.append((path, version, size))
        elif waiting is not None:
            waiting[decision.reason] += 1
    # ignore_conflicts: a concurrent poll of the same route inserted it; its count stands.
    if to_create:
        bulk.insert_ignoring_conflicts(
            FileObservation(route=route, first_seen_at=now, last_seen_at=now),
            dict(
                zip(
                    ("path", "size", "mtime", "version", "polls"),
                    (list(c) for c in zip(*to_create, strict=True)),
                    strict=True,
                )
            ),
        )
    FileObservation.objects.bulk_update(
        to_update, ["size", "mtime", "polls", "first_seen_at", "last_seen_at", "version"], batch_size=500
    )
    return stable


# --- S3 events ------------------------------------------------------------------------------


class ProofUnavailable(RuntimeError):
    """An endpoint's read access could not be proven for now (throttling, S3 or Secrets
    Manager unreachable): the event's message is left for SQS to deliver again."""


def create_from_s3_event(
    *, bucket: str, key: str, version: str | None, size: int | None, region: str | None
) -> list[Transfer]:
    """Create a transfer on every enabled event route watching this object whose source
    endpoint proves it can read it.

    A route watches ``key`` when its source is an S3 endpoint on ``bucket`` whose prefix
    starts the key, and the rest of the key lies in the route's folder and matches its
    pattern. ``key`` is already decoded (``unquote_plus``). ``version`` is the VersionId,
    or the ETag for unversioned buckets; a repeated event for the same version finds the
    existing transfer. No stability wait: S3 objects appear whole. Endpoints that name a
    region other than the event's are skipped.

    Bucket names are not tenants: before any row exists, each watching endpoint proves
    with its own credentials that it can read the object (``endpoints.proofs``). A refusal
    creates nothing for that endpoint and is logged for operators only, so a tenant that
    registers another's bucket never sees its keys. Routes of other endpoints go on; if a
    proof could not be asked (transient), the others are still created and
    :class:`ProofUnavailable` is raised afterwards so the event comes back.
    """
    routes = Route.objects.filter(
        enabled=True,
        trigger_type=Route.Trigger.EVENT,
        source_endpoint__kind=Endpoint.Kind.S3,
        source_endpoint__config__bucket=bucket,
    ).select_related("source_endpoint")
    created: list[Transfer] = []
    now = timezone.now()
    proven: dict[Any, proofs.ReadProof] = {}
    for route in routes:
        endpoint = route.source_endpoint
        endpoint_region = (endpoint.config or {}).get("region")
        if region and endpoint_region and endpoint_region != region:
            continue
        path = s3_relative_path((endpoint.config or {}).get("prefix") or "", key)
        if path is None:
            continue
        try:
            path = naming.check_remote_path(path)
        except naming.UnsafeName:
            log.warning("event key refused", extra={"route": str(route.id), "key": key})
            continue
        if not _in_route(route, path):
            continue
        if endpoint.pk not in proven:
            proven[endpoint.pk] = proofs.prove_read(endpoint, bucket=bucket, key=key)
            if not proven[endpoint.pk].ok:
                log.warning(
                    "s3 event not proven: the endpoint cannot read the object",
                    extra={
                        "tenant": str(endpoint.tenant_id),
                        "endpoint": str(endpoint.pk),
                        "bucket": bucket,
                        "key": key,
                        "reason": proven[endpoint.pk].reason,
                        "transient": proven[endpoint.pk].transient,
                    },
                )
        if not proven[endpoint.pk].ok:
            continue
        created += _create_transfers(
            route, [(path, version or f"size:{size}", size)], now=now, detail="created by an S3 event"
        ).transfers()
    unavailable = [pk for pk, proof in proven.items() if proof.transient]
    if unavailable:
        raise ProofUnavailable(f"read access of {len(unavailable)} endpoint(s) could not be proven; retry later")
    return created


# --- ad-hoc requests ------------------------------------------------------------------------


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
    metadata: dict[str, str] | None = None,
) -> tuple[Transfer, bool]:
    """One file, no route. Returns ``(transfer, created)``.

    The same ``idempotency_key`` (per tenant) within ``FERRY_IDEMPOTENCY_TTL`` (24 h)
    returns the transfer it created the first time; with a different body it is refused
    (409 ``idempotency_conflict``). A ``destination_path`` ending in ``/`` is a folder: the
    source file name is appended. ``metadata`` is the customer's map (``transfers.metadata``).
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > 255 or naming.CONTROL_CHARS.search(key):
        raise invalid({"Idempotency-Key": ["Send an Idempotency-Key header of 1-255 printable characters."]})
    errors: dict[str, list[str]] = {}
    source = endpoint_of(tenant, source_endpoint, "source.endpoint", errors)
    destination = endpoint_of(tenant, destination_endpoint, "destination.endpoint", errors)
    src = check_path(source_path, "source.path", errors) if isinstance(source_path, str) else ""
    if src == "/" and "source.path" not in errors:
        errors["source.path"] = ["Name a file, not the root."]
    dst = ""
    if not isinstance(destination_path, str) or not destination_path:
        errors["destination.path"] = ["Must be a path."]
    elif "source.path" not in errors:
        raw = destination_path + posixpath.basename(src) if destination_path.endswith("/") else destination_path
        dst = check_path(raw, "destination.path", errors)
        if dst == "/" and "destination.path" not in errors:
            errors["destination.path"] = ["Name a file, not the root."]
    try:
        opts = route_options.normalize(options)
    except route_options.InvalidOptions as exc:
        errors.update({f"options.{k}": v for k, v in exc.fields.items()})
        opts = {}
    else:
        key_errors = pgpkeys.check_option_keys(tenant=tenant, options=opts)
        errors.update({f"options.{k}": v for k, v in key_errors.items()})
    if opts.get("write_manifest"):
        errors["options.write_manifest"] = ["Only routes write manifests (one per run); leave it out here."]
    try:
        meta = business_metadata.normalize(metadata)
    except business_metadata.InvalidMetadata as exc:
        errors.update(exc.fields)
        meta = {}
    if errors:
        raise invalid(errors)
    assert source is not None and destination is not None
    fingerprint = _fingerprint(
        source_endpoint=str(source.pk),
        source_path=src,
        destination_endpoint=str(destination.pk),
        destination_path=dst,
        options=opts,
        # Only when given: keys created before metadata existed keep their fingerprint.
        **({"metadata": meta} if meta else {}),
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
                metadata=meta,
                max_attempts=opts["max_attempts"],
                partition=partition_of(transfer_id),
                idempotency_key=key,
                idempotency_expires_at=now + timedelta(seconds=settings.FERRY_IDEMPOTENCY_TTL),
                idempotency_fingerprint=fingerprint,
                request_id=current_request_id(),
            )
            lifecycle.record_created([transfer.id], at=now, detail="created by an API request")
            dispatch_after_commit([transfer.id])
    except IntegrityError:
        # A concurrent request with the same key won.
        found = existing()
        if found:
            return found
        raise
    log.info("ad-hoc transfer created", extra={"transfer": str(transfer.id)})
    return transfer, True
