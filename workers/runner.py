"""Running one transfer: guard, claim, ledger, engine, outcome.

The order (DESIGN.md §3, §4):

1. **Guard**: the transfer's partition must be held by this region (lease item read
   now) and the region must be active (region item read now); otherwise the holder's,
   or the next holder's, keeper dispatches it and this message is dropped. A draining
   region so runs only the claims it already had, and its hand-over does not wait for
   its queue.
2. **Claim** by compare-and-set (a duplicate SQS message finds the claim live and
   exits); a heartbeat thread extends the claim and records progress while bytes move.
3. **Ledger claim** (fenced by the lease and the claim token): a delivery already made
   by this transfer counts as done, one made by another transfer makes this one skipped.
4. **Stage** (SFTP → SFTP, or ``always_stage``), then **deliver**; just before the
   rename / upload completion the ``before_commit`` hook checks the claim is still ours
   and marks the ledger key ``committing`` (fenced). A worker that lost either stops
   there and its temporary file is removed by the engine.
5. **Record** the outcome through ``transfers.lifecycle`` (the one door into the state
   machine): success (ledger ``delivered``), skip, or failure (transient →
   retry later, permanent → dead); then the after-delivery action on the source.

A worker that lost its fence records nothing: the transfer belongs to whoever holds the
newer claim or lease, and its keeper dispatches it again when the claim expires.
"""

from __future__ import annotations

import contextvars
import logging
import os
import posixpath
import queue
import random
import socket
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from controlplane import logs
from controlplane.resources import staging_bucket
from endpoints import breaker
from endpoints.models import Endpoint
from endpoints.specs import to_spec
from engine import copy as engine
from engine import listing
from engine.errors import DestinationExists, SourceMissing, TransferError, is_commit_undone, opening_endpoint
from engine.locations import Location, S3Location, SftpLocation, location_of
from engine.pgp import Transform
from engine.pool import SLOT_WAIT_CODE
from engine.sftpio import part_path
from engine.spec import S3Spec, SftpSpec
from transfers import lifecycle
from transfers.models import Transfer
from transfers.naming import own_marker_path, rename_candidate
from transfers.states import TERMINAL, State
from workers import cleanup, context, pgp
from workers.ledger import (
    ClaimOutcome,
    DeliveryInProgress,
    Fence,
    FenceLost,
    LedgerState,
    LedgerUnavailable,
    delivery_key,
)

log = logging.getLogger("ferry.runner")

RENAME_ATTEMPTS = 20
_WITH_ENDPOINTS = Transfer.objects.select_related("source_endpoint", "destination_endpoint")
FAULT_ENV = "FERRY_FAULT_POINT"


def worker_name() -> str:
    return f"{settings.FERRY_REGION}/{socket.gethostname()}/{os.getpid()}"


STAGING_LABEL = "Ferry's staging area"


def staging_spec() -> S3Spec:
    """This region's staging bucket (Ferry's own account), as the engine addresses it."""
    return S3Spec(
        endpoint_id="ferry-staging",
        version=1,
        bucket=staging_bucket(),
        region=settings.FERRY_AWS_REGION,
        sse="aws:kms",
        kms_key_id=settings.FERRY_KMS_KEY_ALIAS,
        # Customers read transfer errors: never name Ferry's bucket there (issue 13 item 6).
        # The failure's log line carries the bucket and key (``staging`` below).
        label=STAGING_LABEL,
    )


def staging_location(transfer: Transfer) -> S3Location:
    """The transfer's staging object in this region's staging bucket."""
    return S3Location(staging_spec(), transfer.staging_key or f"staging/{transfer.tenant_id}/{transfer.id}")


def needs_staging(transfer: Transfer) -> bool:
    both_sftp = transfer.source_endpoint.kind == "sftp" and transfer.destination_endpoint.kind == "sftp"
    return both_sftp or bool((transfer.options or {}).get("always_stage"))


def copy_options(
    transfer: Transfer,
    *,
    claim_token: int = 0,
    attempt: _Attempt | None = None,
    transforms: tuple[Transform, ...] = (),
) -> engine.CopyOptions:
    """The engine's options for this transfer. ``transforms`` (OpenPGP) apply to the
    delivery only: staging keeps the source's bytes."""
    options = transfer.options or {}
    policy = options.get("on_conflict", "fail")
    return engine.CopyOptions(
        on_conflict="fail" if policy == "rename" else policy,
        verify=options.get("verify", "size"),
        always_stage=bool(options.get("always_stage")),
        part_tag=str(claim_token) if claim_token else "",
        upload_started=attempt.upload_started if attempt else None,
        about_to_commit=attempt.about_to_commit if attempt else None,
        transforms=transforms,
        metadata=tuple(sorted((transfer.metadata or {}).items())),
        # The listing's size: a small file is written without looking at the destination
        # first (the conditional write settles an occupied one; engine.to_s3).
        source_size=transfer.source_size,
    )


class _Heartbeat:
    """Extends the claim every FERRY_HEARTBEAT_INTERVAL and records progress; notices a
    lost claim (cancelled, or re-claimed by another worker)."""

    def __init__(self, transfer_id: str, claim_token: int) -> None:
        self.transfer_id = transfer_id
        self.claim_token = claim_token
        self.bytes_done: int | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        # A plain thread starts with an empty context: give it the transfer's log context.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._run,), name=f"heartbeat-{transfer_id}", daemon=True
        )

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def progress(self, done: int) -> None:
        self.bytes_done = done

    def beat(self) -> bool:
        alive = lifecycle.heartbeat(self.transfer_id, self.claim_token, bytes_done=self.bytes_done)
        if not alive:
            self.lost.set()
        return alive

    def _run(self) -> None:
        try:
            while not self._stop.wait(settings.FERRY_HEARTBEAT_INTERVAL):
                try:
                    if not self.beat():
                        return
                except Exception:
                    log.warning("heartbeat failed", exc_info=True)
        finally:
            connection.close()


@dataclass(frozen=True)
class _Plan:
    to: State
    frm: list[State]


def _plan(transfer: Transfer) -> _Plan:
    if needs_staging(transfer) and not transfer.staging_key:
        return _Plan(State.STAGING, [State.PENDING, State.FAILED, State.STAGING])
    return _Plan(State.DELIVERING, [State.PENDING, State.FAILED, State.STAGED, State.DELIVERING])


def run_batch(transfer_ids: list[str]) -> dict[str, str]:
    """Run many small transfers of one route together: a few at a time on threads, all
    over one pinned connection per SFTP endpoint. Each keeps its own claim, ledger entry
    and outcome.

    Per batch rather than per file (docs/execution.md, "Small files"): the guard's lease
    and region reads (``context.batch_guard``), and each thread's database connection,
    kept for the members it runs and closed when it has no more (not one new PostgreSQL
    connection per file)."""

    def partitions() -> list[int]:
        return list(Transfer.objects.filter(id__in=transfer_ids).values_list("partition", flat=True).distinct())

    work: queue.SimpleQueue[str] = queue.SimpleQueue()
    for transfer_id in transfer_ids:
        work.put(transfer_id)
    outcomes: dict[str, str] = {}
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            while True:
                try:
                    transfer_id = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    outcomes[transfer_id] = run_transfer(transfer_id, shared=shared)
                except Exception as exc:  # a bug: the others still run, the task fails after
                    log.exception("unexpected error in a batch member", extra={"transfer": transfer_id})
                    errors.append(exc)
        finally:
            connection.close()

    with context.batch_guard(partitions), engine.SharedSessions() as shared:
        threads = min(settings.FERRY_BATCH_CONCURRENCY, len(transfer_ids))
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            # Pool threads do not inherit the task's log context (nor the batch's guard
            # reads); one copy per thread (a context cannot be entered by two at once).
            futures = [pool.submit(contextvars.copy_context().run, drain) for _ in range(max(1, threads))]
            for future in futures:
                future.result()
    if errors:
        raise errors[0]
    return {transfer_id: outcomes[transfer_id] for transfer_id in transfer_ids}


# Under Step Functions a run is one step of the transfer's execution (workers/steps.py):
# ``stage`` stops once the source is staged, and the after-delivery action is a step of its
# own. The Celery task runs everything in one go (``all``), exactly as before the steps.
STEP_MODES = ("all", "stage", "deliver")
_mode: contextvars.ContextVar[str] = contextvars.ContextVar("ferry_runner_mode", default="all")


def run_transfer(transfer_id: str, *, shared: engine.SharedSessions | None = None, mode: str = "all") -> str:
    """Run one transfer to an outcome; returns a short word for logs and tests.

    ``mode`` (:data:`STEP_MODES`): ``all`` stages when needed, delivers and runs the source
    action; ``stage`` only stages (``"staged"``; ``"nothing_to_stage"`` when the transfer
    needs no staging or has it already); ``deliver`` is ``all`` without the source action.
    Never raises for a transfer's own failure: failures are recorded on the transfer."""
    if mode not in STEP_MODES:
        raise ValueError(f"unknown run mode {mode!r}")
    reset = _mode.set(mode)
    try:
        return _run_transfer(transfer_id, shared=shared)
    finally:
        _mode.reset(reset)


def _run_transfer(transfer_id: str, *, shared: engine.SharedSessions | None = None) -> str:
    close_old_connections()
    transfer = _WITH_ENDPOINTS.filter(id=transfer_id).first()
    if transfer is None:
        return "missing"
    if transfer.state in TERMINAL:
        if transfer.cleanup_pending:  # a worker died after recording it, or a cancel: finish the job
            cleanup.clean_up(transfer.id)
        return "finished"
    with logs.bound(
        # The id of the work that created the transfer, whoever dispatched this attempt
        # (None, for rows older than the field, keeps the message's own).
        request_id=transfer.request_id or None,
        region=settings.FERRY_REGION,
        tenant=str(transfer.tenant_id),
        route=str(transfer.route_id) if transfer.route_id else None,
        transfer=str(transfer.id),
        partition=transfer.partition,
    ):
        lease = context.region_lease(transfer.partition)
        if lease is None:
            log.info("partition not held by this region; leaving the transfer to its holder")
            return "not_our_partition"
        if not context.region_takes_work():
            # Unclaimed, so the keeper's hand-over need not wait for it; the next holder's
            # keeper dispatches it (pending, or a retry) as soon as it takes the partition.
            log.info("region draining; leaving the transfer to the partition's next holder")
            return "region_draining"
        plan = _plan(transfer)
        if _mode.get() == "stage" and plan.to != State.STAGING:
            return "nothing_to_stage"
        token = lifecycle.claim(transfer.id, worker=worker_name(), to=plan.to, frm=plan.frm)
        if token is None:
            return "not_claimed"
        # One read after the claim, the endpoints with it: the breakers below and the copy use them.
        transfer.refresh_from_db(from_queryset=_WITH_ENDPOINTS)
        circuit = breaker.gate(map(breaker.Breaker.of, dialled_endpoints(transfer)), now=timezone.now())
        if circuit.blocked_by is not None and circuit.until is not None:
            # Nothing dialled: back to failed until the breaker's cool-down (or probe) ends.
            lifecycle.record_circuit_wait(
                transfer.id, token, until=circuit.until, endpoint_name=circuit.blocked_by.name, code=breaker.WAIT_CODE
            )
            log.info("endpoint circuit open; waiting", extra={"endpoint": str(circuit.blocked_by.endpoint_id)})
            return "circuit_open"
        fence = Fence(settings.FERRY_REGION, transfer.partition, lease.fence, token)
        with logs.bound(attempt=transfer.attempt), _Heartbeat(str(transfer.id), token) as heartbeat:
            outcome = _execute(transfer, fence, heartbeat, shared)
        if outcome == "succeeded":
            _circuits_answered(circuit.unsettled)
        return outcome


def dialled_endpoints(transfer: Transfer) -> list[Endpoint]:
    """The endpoints an attempt may dial: the destination, and the source unless the copy
    reads from its staging object."""
    if needs_staging(transfer) and transfer.staging_key:
        return [transfer.destination_endpoint]
    return [transfer.source_endpoint, transfer.destination_endpoint]


def _circuits_answered(endpoint_ids: Iterable[uuid.UUID]) -> None:
    """A delivery reached its endpoints: close their breakers (the transfers waiting for
    one this closed go at once, through the hook ``transfers`` registered)."""
    for endpoint_id in endpoint_ids:
        breaker.record_success(endpoint_id)


def _circuit_failed(error: BaseException) -> None:
    """Count a failure to open a session to an endpoint against its breaker."""
    endpoint_id = opening_endpoint(error)
    code = getattr(error, "code", "")
    if endpoint_id and breaker.counts(code):
        breaker.record_failure(uuid.UUID(endpoint_id), now=timezone.now())


def delivery_key_of(transfer: Transfer) -> str:
    """The ledger key of a transfer's delivery. Its destination path is the one it was
    created with; only a success records another (``on_conflict: rename``), after which
    nothing retries it."""
    return delivery_key(
        tenant_id=str(transfer.tenant_id),
        destination_endpoint_id=str(transfer.destination_endpoint_id),
        destination_path=transfer.destination_path,
        source_identity=f"{transfer.source_endpoint_id}:{transfer.source_path}@{transfer.source_version}",
    )


class SimulatedCrash(BaseException):
    """Raised at an armed fault point with action ``raise``: a BaseException, so nothing in
    the runner records anything on its way out, as after a kill -9."""


def fault_point(name: str) -> None:
    """A fault-injection point for tests: ``FERRY_FAULT_POINT=<name>[:raise]`` kills the
    process here (``os._exit``, as a kill -9 would end it: no cleanup, no outcome recorded),
    or with ``:raise`` raises :class:`SimulatedCrash` for an in-process test. Unset in
    production: one environment lookup."""
    armed = os.environ.get(FAULT_ENV)
    if not armed:
        return
    point, _, action = armed.partition(":")
    if point != name:
        return
    log.warning("fault point reached: stopping here", extra={"fault_point": name})
    if action == "raise":
        raise SimulatedCrash(name)
    os._exit(137)


class _Attempt:
    """What one claim tells the engine and learns from it: its multipart uploads (recorded
    on the transfer), the SHA-256 and size it is about to commit, and whether it began the
    commit (the ledger says ``committing`` from then on)."""

    def __init__(self, transfer_id: str, token: int) -> None:
        self.transfer_id = transfer_id
        self.token = token
        self.sha256 = ""
        self.size: int | None = None
        self.commit_begun = False

    def upload_started(self, bucket: str, key: str, upload_id: str) -> None:
        cleanup.record_upload(self.transfer_id, self.token, bucket, key, upload_id)
        fault_point("upload_started")

    def about_to_commit(self, sha256: str, size: int) -> None:
        self.sha256, self.size = sha256, size


def _execute(transfer: Transfer, fence: Fence, heartbeat: _Heartbeat, shared: engine.SharedSessions | None) -> str:
    token = fence.claim_token
    key = delivery_key_of(transfer)
    ledger = context.ledger()
    staging: S3Location | None = None
    attempt = _Attempt(str(transfer.id), token)
    try:
        outcome = ledger.claim(key, transfer_id=str(transfer.id), fence=fence)
        if outcome == ClaimOutcome.DELIVERED_BY_OTHER:
            _to_delivering(transfer, token)
            lifecycle.record_skipped(transfer.id, token, reason="already delivered by another transfer")
            cleanup.clean_up(transfer.id)
            return "skipped"
        if outcome == ClaimOutcome.DELIVERED_BY_US:
            entry = ledger.get(key)
            _to_delivering(transfer, token)
            lifecycle.record_success(
                transfer.id,
                token,
                sha256=entry.sha256 if entry else transfer.sha256,
                bytes_total=(entry.size if entry and entry.size is not None else transfer.bytes_total or 0),
                now=timezone.now(),
                detail="already delivered by an earlier attempt (ledger)",
            )
            cleanup.clean_up(transfer.id, delivered=True)
            _after_delivery(transfer)
            return "succeeded"
        destination_spec = to_spec(transfer.destination_endpoint)
        if outcome == ClaimOutcome.COMMITTING_BY_US and _settle_commit(transfer, fence, key, destination_spec):
            return "succeeded"
        # Keys are read (and checked: missing, expired) before any byte moves.
        transforms = pgp.transforms_for(transfer)
        source = location_of(to_spec(transfer.source_endpoint), transfer.source_path)
        staging = staging_location(transfer) if needs_staging(transfer) else None
        if staging is not None:
            staged = engine.stage(
                source,
                staging,
                transfer_id=str(transfer.id),
                options=copy_options(transfer, claim_token=token, attempt=attempt),
                progress=heartbeat.progress,
                shared=shared,
            )
            if transfer.state == State.STAGING:
                lifecycle.record_staged(
                    transfer.id, token, staging_key=staging.key, sha256=staged.sha256, bytes_total=staged.size
                )
                if _mode.get() == "stage":
                    fault_point("after_staged")
                    lifecycle.release_staged(transfer.id, token)
                    return "staged"
                _to_delivering_from_staged(transfer, token)
            source = staging

        def before_commit() -> None:
            if heartbeat.lost.is_set() or not heartbeat.beat():
                raise FenceLost("The claim on this transfer was lost (cancelled or taken by another worker).")
            try:
                ledger.begin_commit(
                    key, transfer_id=str(transfer.id), fence=fence, sha256=attempt.sha256, size=attempt.size
                )
            except LedgerUnavailable:
                # The write may have landed although no answer came: the mark without its
                # evidence (the engine removes the .part when this hook raises) would later
                # read as "delivered". So look: marked by this claim → go on and commit.
                entry = ledger.get(key)
                if not (entry and entry.state == LedgerState.COMMITTING and entry.committing_token == token):
                    raise
            attempt.commit_begun = True

        result, final_path = _deliver(
            transfer, source, destination_spec, heartbeat, before_commit, attempt, shared, transforms
        )
        if result.outcome == "delivered":
            fault_point("after_commit")  # renamed / completed, not yet recorded
        if result.outcome == "skipped":
            if attempt.commit_begun:
                ledger.abort_commit(key, transfer_id=str(transfer.id), fence=fence)
            ledger.forget(key, transfer_id=str(transfer.id))
            lifecycle.record_skipped(transfer.id, token, reason="destination exists (on_conflict: skip)")
            cleanup.clean_up(transfer.id)
            return "skipped"
        ledger.mark_delivered(key, transfer_id=str(transfer.id), sha256=result.sha256, size=result.size)
        fault_point("after_delivered")  # the ledger knows, the transfer row does not yet
        detail = ""
        if result.outcome == "already_delivered":
            detail = "the destination already held this transfer's file (an earlier attempt delivered it)"
        lifecycle.record_success(
            transfer.id,
            token,
            sha256=result.sha256,
            bytes_total=result.size,
            now=timezone.now(),
            destination_path=final_path if final_path != transfer.destination_path else None,
            detail=detail,
            source_sha256=result.source_sha256,
        )
        fault_point("after_success")  # recorded; the cleanup is owed (cleanup_pending)
        cleanup.clean_up(transfer.id, done_claim=token, delivered=True)
        _after_delivery(transfer)
        return "succeeded"
    except FenceLost as exc:
        log.warning("fence lost; leaving the transfer to the newer claim or lease", extra={"reason": str(exc)})
        return "fence_lost"
    except (TransferError, DeliveryInProgress) as exc:
        if getattr(exc, "code", "") == SLOT_WAIT_CODE:
            return _wait_for_slot(transfer, token, exc)
        if attempt.commit_begun and is_commit_undone(exc):
            # The engine knows nothing was delivered: take the mark back, so the key can be
            # forgotten when the transfer is dead and its cleanup removes the evidence. If the
            # ledger does not answer, the evidence stays and a later attempt settles from it.
            try:
                ledger.abort_commit(key, transfer_id=str(transfer.id), fence=fence)
            except TransferError:
                log.warning("the commit mark could not be taken back; the evidence stays", exc_info=True)
        state = lifecycle.record_failure(transfer.id, token, exc, now=timezone.now())
        _circuit_failed(exc)
        # The operator's line names what the customer's message does not (the staging bucket).
        where = {"staging": staging.uri} if staging is not None else {}
        log.warning(
            "transfer attempt failed", extra={"code": exc.code, "error": str(exc), "state": str(state), **where}
        )
        if state == State.DEAD:
            ledger.forget(key, transfer_id=str(transfer.id))
            cleanup.clean_up(transfer.id)
        return str(state)
    except Exception as exc:
        where = {"staging": staging.uri} if staging is not None else {}
        log.exception("unexpected error while running a transfer", extra=where)
        state = lifecycle.record_failure(transfer.id, token, exc, now=timezone.now())
        if state == State.DEAD:
            cleanup.clean_up(transfer.id)
        return str(state)


def _wait_for_slot(transfer: Transfer, token: int, error: BaseException) -> str:
    """Every fleet-wide connection slot of an endpoint this copy needs is held: nothing was
    dialled there. The transfer waits (``failed``, its attempt given back) and is tried again
    in about FERRY_SLOT_RETRY seconds, jittered so the waiters do not all come back at once
    (docs/execution.md, "Connection slots"). Whatever the ledger and staging hold stays: the
    next attempt resumes from it."""
    endpoint_id = opening_endpoint(error)
    endpoints = (transfer.source_endpoint, transfer.destination_endpoint)
    name = next((e.name for e in endpoints if str(e.id) == endpoint_id), "the endpoint")
    until = timezone.now() + timedelta(seconds=settings.FERRY_SLOT_RETRY * random.uniform(1.0, 1.5))
    lifecycle.record_slot_wait(transfer.id, token, until=until, endpoint_name=name, code=SLOT_WAIT_CODE)
    log.info("waiting for a connection slot", extra={"endpoint": endpoint_id})
    return "slot_wait"


def _settle_commit(transfer: Transfer, fence: Fence, key: str, destination_spec: SftpSpec | S3Spec) -> bool:
    """An earlier claim of this transfer began the commit and stopped (killed between the
    commit mark and ``mark_delivered``): decide from evidence whether its rename / upload
    completion happened, never from the target's absence (a partner may have taken the
    file away already). True: it did, and the success is recorded here. False: it did not,
    its evidence is removed (so that attempt can never complete late) and the commit mark
    taken back: deliver as usual. Raises TransferError when the evidence cannot be read
    (nothing decided; the retry after this one reads it again). The argument is in
    docs/execution.md ("Settling a commit from evidence")."""
    ledger = context.ledger()
    entry = ledger.get(key)
    if entry is None or entry.state != LedgerState.COMMITTING or entry.committing_token is None:
        return False  # begun by a release that did not record its claim: the destination decides
    claim = entry.committing_token
    tid = str(transfer.id)
    delivered: bool
    evidence: str
    if isinstance(destination_spec, SftpSpec):
        target = location_of(destination_spec, transfer.destination_path)
        part = SftpLocation(destination_spec, part_path(target.path, tid, str(claim)))
        if listing.exists(part):
            # Take the mark back first: a crash before the removal then leaves a claimed key
            # and a stray .part (removed by cleanup), never "committing" without its evidence.
            ledger.abort_commit(key, transfer_id=tid, fence=fence)
            delivered = not listing.remove_if_present(part)  # gone meanwhile: a late rename won
            evidence = "its temporary file was gone"
        else:
            delivered, evidence = True, "its temporary file was gone after the commit began"
    else:
        owner = listing.owner_of(location_of(destination_spec, transfer.destination_path))
        upload = _committing_upload(transfer, claim, destination_spec.bucket)
        if owner == tid:
            delivered, evidence = True, "the object carries this transfer's id"
        elif upload is None:
            # A single PutObject (or a server-side copy) leaves no evidence of its own: the
            # object gone could be consumed or never written. Deliver again (docs/execution.md).
            delivered, evidence = False, ""
        elif listing.upload_open(S3Location(destination_spec, upload["key"]), upload["upload_id"]):
            ledger.abort_commit(key, transfer_id=tid, fence=fence)
            delivered = not listing.abort_upload(S3Location(destination_spec, upload["key"]), upload["upload_id"])
            evidence = "its multipart upload was completed"
        else:
            delivered, evidence = True, "its multipart upload was completed (no longer open)"
    if not delivered:
        log.info("an earlier attempt's commit did not happen; delivering", extra={"claim_token": claim})
        return False
    sha256 = entry.commit_sha256 or transfer.sha256
    size = entry.commit_size if entry.commit_size is not None else transfer.bytes_total or 0
    ledger.mark_delivered(key, transfer_id=tid, sha256=sha256, size=size)
    _to_delivering(transfer, fence.claim_token)
    lifecycle.record_success(
        transfer.id,
        fence.claim_token,
        sha256=sha256,
        bytes_total=size,
        now=timezone.now(),
        detail=f"delivered by an earlier attempt (claim {claim}): {evidence}",
    )
    log.info("an earlier attempt's commit happened; recorded as delivered", extra={"claim_token": claim})
    cleanup.clean_up(transfer.id, delivered=True)
    _after_delivery(transfer)
    return True


def _committing_upload(transfer: Transfer, claim: int, bucket: str) -> dict | None:
    transfer.refresh_from_db(fields=["uploads"])
    mine = [u for u in transfer.uploads if u.get("claim") == claim and u.get("bucket") == bucket]
    return mine[-1] if mine else None


def _deliver(
    transfer,
    source: Location,
    destination_spec,
    heartbeat: _Heartbeat,
    before_commit,
    attempt: _Attempt,
    shared,
    transforms: tuple[Transform, ...] = (),
):
    """Copy to the destination; with ``on_conflict: rename`` try ``name-1``, ``name-2`` …"""
    policy = (transfer.options or {}).get("on_conflict", "fail")
    path = transfer.destination_path
    for n in range(RENAME_ATTEMPTS + 1):
        candidate = path if n == 0 else rename_candidate(path, n)
        destination = location_of(destination_spec, candidate)
        try:
            result = engine.copy(
                source,
                destination,
                transfer_id=str(transfer.id),
                options=copy_options(transfer, claim_token=attempt.token, attempt=attempt, transforms=transforms),
                progress=heartbeat.progress,
                before_commit=before_commit,
                shared=shared,
            )
            return result, candidate
        except DestinationExists:
            if policy != "rename" or n == RENAME_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _to_delivering(transfer: Transfer, token: int) -> None:
    """From a staging claim, walk to delivering (a ledger answer ended the work early)."""
    if transfer.state == State.STAGING:
        lifecycle.record_staged(
            transfer.id,
            token,
            staging_key=transfer.staging_key,
            sha256=transfer.sha256,
            bytes_total=transfer.bytes_total or 0,
        )
        _to_delivering_from_staged(transfer, token)


def _to_delivering_from_staged(transfer: Transfer, token: int) -> None:
    if not lifecycle.record_delivering(transfer.id, token, worker=worker_name()):
        raise FenceLost("The claim on this transfer was lost.")
    transfer.state = State.DELIVERING


def _after_delivery(transfer: Transfer) -> None:
    """Run the source action (delete / move) once delivered; retried on its own. Under Step
    Functions it is the execution's next step instead."""
    if _mode.get() != "all":
        return
    transfer.refresh_from_db(fields=["source_action_state", "options", "state"])
    if transfer.state != State.SUCCEEDED or transfer.source_action_state not in (
        Transfer.SourceAction.PENDING,
        Transfer.SourceAction.FAILED,
    ):
        return
    run_source_action(transfer)


def run_source_action(transfer: Transfer) -> bool:
    """Delete or move the source file of a delivered transfer, and its own done marker with
    it (a routed transfer whose route waits for a per-file marker: ``naming.own_marker_path``;
    a marker shared by the folder stays); record the outcome. The data file goes first: a
    marker without its file is harmless, a file without its marker is never taken again."""
    options = transfer.options or {}
    action = options.get("after_delivery", "keep")
    marker = None
    if transfer.route_id is not None:
        marker = own_marker_path(options.get("done_marker"), transfer.source_path, at=transfer.created_at)
    try:
        spec = to_spec(transfer.source_endpoint)
        paths = [transfer.source_path, *([marker] if marker else [])]
        for path in paths:
            source = location_of(spec, path)
            if action == "delete":
                listing.delete(source)
            elif isinstance(action, dict) and action.get("move_to"):
                target = location_of(spec, posixpath.join(action["move_to"], posixpath.basename(path)))
                try:
                    listing.move(source, target.path if isinstance(target, SftpLocation) else target.key)
                except SourceMissing:
                    if path != marker:
                        raise
                    # The marker is gone already (removed by the customer): nothing to move.
    except TransferError as exc:
        lifecycle.record_source_action(transfer.id, ok=False, error=f"{exc.code}: {exc}")
        log.warning("after-delivery action failed", extra={"code": exc.code, "error": str(exc)})
        return False
    lifecycle.record_source_action(transfer.id, ok=True)
    return True
