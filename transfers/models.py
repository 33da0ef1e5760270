"""Routes, transfers, their timeline, and what the polls saw.

Fields, choices, constraints and cheap properties only: writes go through
``transfers.routes`` (routes), ``transfers.intake`` (new transfers), ``transfers.lifecycle``
(a worker's changes), ``transfers.services`` (re-drive, cancel), all on top of
``transfers.states``.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from controlplane.choices import TextChoices
from controlplane.models import Tenant
from endpoints.models import Endpoint
from transfers.options import DEFAULTS as OPTION_DEFAULTS
from transfers.states import DISPATCHABLE, HELD, MOVING, State


def _default_options() -> dict:
    return dict(OPTION_DEFAULTS)


class Route(models.Model):
    """Move files matching ``pattern`` from a source folder to a destination folder.

    Paths are relative to the endpoint's root (SFTP) or key prefix (S3) and written with a
    leading ``/``. ``options`` is validated by ``transfers.options.normalize``.
    """

    class Trigger(TextChoices):
        SCHEDULE = "schedule"
        EVENT = "event"
        MANUAL = "manual"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="routes")
    name = models.CharField(max_length=100)
    source_endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="routes_as_source")
    source_path = models.CharField(max_length=1024, default="/")
    pattern = models.CharField(max_length=255, default="*")
    recursive = models.BooleanField(default=False)
    destination_endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="routes_as_destination")
    destination_path = models.CharField(max_length=1024, default="/")
    name_template = models.CharField(max_length=255, default="{name}")
    trigger_type = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    cron = models.CharField(max_length=120, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    options = models.JSONField(default=_default_options)
    # The customer's own strings (transfers.metadata), copied onto each transfer it creates.
    # db_default (here and on Transfer): the previous release inserts rows without it.
    metadata = models.JSONField(default=dict, db_default={}, blank=True)
    enabled = models.BooleanField(default=True)
    partition = models.PositiveIntegerField()
    # Grows at every change: the mirror's version condition.
    version = models.PositiveIntegerField(default=1)
    next_run_at = models.DateTimeField(null=True, blank=True)
    # Set by a restore of the database: polls leave files modified before it alone, since
    # the ledger may no longer remember their delivery (transfers.watermarks). Not mirrored.
    not_before = models.DateTimeField(null=True, blank=True)
    # When the route's files were first expected (options.expect set or changed, the route
    # enabled, or restored): the first expectation window opens here, so no window before
    # it is judged late (transfers.expectations). Not mirrored.
    expect_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="route_name_unique_per_tenant"),
            models.CheckConstraint(
                condition=Q(trigger_type__in=["schedule", "event", "manual"]), name="route_trigger_valid"
            ),
            models.CheckConstraint(
                condition=Q(trigger_type="schedule") & ~Q(cron="") | ~Q(trigger_type="schedule") & Q(cron=""),
                name="route_cron_iff_schedule",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="route_tenant_created"),
            # The scheduler tick: enabled schedule routes of a partition whose run is due.
            models.Index(
                fields=["partition", "next_run_at"],
                condition=Q(trigger_type="schedule", enabled=True),
                name="route_schedule_due",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Batch(models.Model):
    """One run of a route (a schedule tick's poll or a manual run) and the transfers it
    created. docs/batches.md has the decisions (no batch for an empty run or an S3 event).

    ``open`` until its last transfer is terminal, then ``completed`` exactly once: a
    compare-and-set in the transaction of that terminal transition (``transfers.batches``).
    The counts, bytes and ``manifest`` are frozen at completion; a later re-drive of a dead
    transfer does not reopen the batch. ``manifest_state`` tracks the route's
    ``write_manifest`` file: ``none`` (not asked), ``pending``, ``written`` or ``failed``.
    """

    class State(TextChoices):
        OPEN = "open"
        COMPLETED = "completed"

    class Trigger(TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual"

    class ManifestState(TextChoices):
        NONE = "none"
        PENDING = "pending"
        WRITTEN = "written"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="batches")
    # Null once the route is deleted (its finished batches keep their history).
    route = models.ForeignKey(Route, on_delete=models.SET_NULL, null=True, blank=True, related_name="batches")
    partition = models.PositiveIntegerField()
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    # Transfers the run created; the rest is counted at completion.
    size = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    dead = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    # Bytes of the succeeded transfers.
    bytes_total = models.BigIntegerField(default=0)
    # The delivered files at completion: [{"path", "source_path", "size", "sha256"}], in path
    # order. Frozen, so the manifest file, the event and the API always agree.
    manifest = models.JSONField(default=list, blank=True)
    # The route's write_manifest option, copied at creation (as transfers copy theirs).
    manifest_options = models.JSONField(null=True, blank=True)
    manifest_state = models.CharField(max_length=16, choices=ManifestState.choices, default=ManifestState.NONE)
    manifest_path = models.CharField(max_length=1024, blank=True)
    manifest_error = models.CharField(max_length=2000, blank=True)
    manifest_attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "batches"
        constraints = [
            models.CheckConstraint(condition=Q(state__in=["open", "completed"]), name="batch_state_valid"),
            models.CheckConstraint(
                condition=Q(manifest_state__in=["none", "pending", "written", "failed"]),
                name="batch_manifest_state_valid",
            ),
        ]
        indexes = [
            # GET /routes/{id}/batches: a route's newest first, the cursor's order.
            models.Index(fields=["route", "-created_at", "-id"], name="batch_route_created"),
            # The scheduler tick's sweep for batches still open (transfers.batches.sweep_open).
            models.Index(fields=["partition"], condition=Q(state="open"), name="batch_open"),
            # The scheduler tick's sweep for manifest files still owed (workers.manifests).
            models.Index(fields=["partition"], condition=Q(manifest_state="pending"), name="batch_manifest_owed"),
        ]

    def __str__(self) -> str:
        return f"batch {self.id} ({self.state}, {self.size} files)"


class Transfer(models.Model):
    """One file moving along one route (or an ad-hoc request).

    Its states, their diagram and the allowed transitions are in ``transfers.states``
    (the one place that holds them, with the compare-and-set).

    Direct copies go pending → delivering; SFTP → SFTP (and ``always_stage``) go through
    staging. ``claim_token`` grows at every claim and fences the worker's writes.
    """

    class SourceAction(TextChoices):
        NONE = "none"  # keep: nothing to do
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="transfers")
    # Null for ad-hoc transfers, and for the history of a deleted route (a route is only
    # deleted once none of its transfers is still moving, see routes.delete_route).
    route = models.ForeignKey(Route, on_delete=models.SET_NULL, null=True, blank=True, related_name="transfers")
    # The route run that created it (docs/batches.md); null for ad-hoc and S3-event transfers
    # and for rows older than batches. Indexed by the partial indexes below (most rows have none).
    batch = models.ForeignKey(
        Batch, on_delete=models.SET_NULL, null=True, blank=True, related_name="transfers", db_index=False
    )
    source_endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+")
    source_path = models.CharField(max_length=1024)
    # S3 VersionId or ETag; SFTP "size:mtime".
    source_version = models.CharField(max_length=1024)
    source_size = models.BigIntegerField(null=True, blank=True)
    destination_endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+")
    destination_path = models.CharField(max_length=1024)
    options = models.JSONField(default=_default_options)
    # The customer's strings (transfers.metadata): the route's when it was created, or the
    # ad-hoc request's; written as S3 user metadata on an S3 destination.
    metadata = models.JSONField(default=dict, db_default={}, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    # SHA-256 of the bytes delivered; ``source_sha256`` of the bytes read from the source.
    # They differ only when a content transform (OpenPGP) ran on delivery.
    sha256 = models.CharField(max_length=64, blank=True)
    source_sha256 = models.CharField(max_length=64, blank=True, default="", db_default="")
    staging_key = models.CharField(max_length=1024, blank=True)
    claim_token = models.PositiveBigIntegerField(default=0)
    claimed_by = models.CharField(max_length=200, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    region = models.CharField(max_length=32, blank=True)
    partition = models.PositiveIntegerField()
    # The region whose process created or re-drove this transfer without holding its
    # partition, so could not send it (a region enqueues only to its own queues); the
    # holder's keeper sends it within FERRY_HANDOFF_INTERVAL and clears this. "" otherwise.
    handoff_from = models.CharField(max_length=32, blank=True, default="", db_default="")
    # Step Functions (FERRY_ORCHESTRATOR=stepfunctions, docs/execution.md): the ARN of the
    # execution last started for this transfer, and the counter its name ends with
    # (``<id>-<generation>``). The counter only grows: a re-drive, or a start that finds the
    # name taken by a closed execution, raises it, since a Standard name is never reused.
    execution_arn = models.CharField(max_length=256, blank=True, default="", db_default="")
    execution_generation = models.PositiveIntegerField(default=0, db_default=0)
    last_error_code = models.CharField(max_length=64, blank=True)
    last_error_message = models.CharField(max_length=2000, blank=True)
    source_action_state = models.CharField(max_length=16, choices=SourceAction.choices, default=SourceAction.NONE)
    source_action_error = models.CharField(max_length=2000, blank=True)
    source_action_attempts = models.PositiveIntegerField(default=0)
    # The multipart uploads Ferry created or adopted for this transfer, each
    # {"bucket", "key", "upload_id", "claim": claim token}: ListMultipartUploads shows no
    # metadata, so this is how Ferry knows which open uploads are its own to abort.
    # db_default (here and below): the previous release inserts rows without these columns.
    uploads = models.JSONField(default=list, db_default=[], blank=True)
    # Set on entering a terminal state, cleared once staging, temporary files and abandoned
    # uploads are gone (workers/cleanup.py); the scheduler tick retries it.
    cleanup_pending = models.BooleanField(default=False, db_default=False)
    # NULL, not "", for "no key": the partial unique constraint below ignores NULLs.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    idempotency_expires_at = models.DateTimeField(null=True, blank=True)
    # SHA-256 of the ad-hoc request body: the same key with another body is a conflict.
    idempotency_fingerprint = models.CharField(max_length=64, blank=True)
    # The correlation id of the work that created it (the API request's X-Request-ID, the
    # poll's or the S3 event's id), so every attempt's log lines carry it and a customer can
    # quote it (controlplane/correlation.py). "" for rows older than the field.
    request_id = models.CharField(max_length=64, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [
            ("redrive_transfer", "Can re-drive failed and dead transfers"),
            ("cancel_transfer", "Can cancel unfinished transfers"),
        ]
        constraints = [
            # A re-poll or a repeated event never makes a second row.
            models.UniqueConstraint(
                fields=["route", "source_path", "source_version"],
                condition=Q(route__isnull=False),
                name="transfer_unique_source_version",
            ),
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="transfer_unique_idempotency_key",
            ),
            models.CheckConstraint(condition=Q(state__in=State.values), name="transfer_state_valid"),
            models.CheckConstraint(
                condition=Q(source_action_state__in=["none", "pending", "done", "failed"]),
                name="transfer_source_action_valid",
            ),
        ]
        indexes = [
            # Status API: a tenant's newest first, the cursor's (created_at, id) order.
            models.Index(fields=["tenant", "-created_at", "-id"], name="transfer_tenant_created"),
            models.Index(fields=["tenant", "state", "-created_at"], name="transfer_tenant_state"),
            models.Index(fields=["tenant", "route", "-created_at"], name="transfer_tenant_route"),
            # ?path_prefix=: a LIKE 'prefix%' range scan. varchar_pattern_ops makes it usable
            # whatever the database collation (PostgreSQL; other backends ignore opclasses).
            models.Index(
                fields=["tenant", "source_path"],
                name="transfer_tenant_path",
                opclasses=["uuid_ops", "varchar_pattern_ops"],
            ),
            # The region keeper's dispatch (workers): pending and due failed transfers of the
            # partitions it holds. Partial, so it stays as small as the backlog.
            models.Index(
                fields=["partition", "next_attempt_at"],
                condition=Q(state__in=sorted(DISPATCHABLE)),
                name="transfer_dispatch_due",
            ),
            # The holder's quick sweep (workers.dispatch.Dispatcher.sweep_handoffs), several
            # times a second: only marked rows still pending, so tiny whatever the backlog.
            models.Index(
                fields=["partition"],
                condition=Q(state=State.PENDING) & ~Q(handoff_from=""),
                name="transfer_handoff_due",
            ),
            # The region keeper's sweep for claims whose worker died (expired claim expiry).
            models.Index(
                fields=["claim_expires_at"],
                condition=Q(state__in=sorted(HELD)),
                name="transfer_claim_expiry",
            ),
            # Source actions still to run or retry after a success.
            models.Index(
                fields=["partition"],
                condition=Q(source_action_state__in=["pending", "failed"]),
                name="transfer_source_action_due",
            ),
            # A batch's transfers (?batch=, the completion's manifest); only rows with a batch.
            models.Index(fields=["batch"], condition=Q(batch__isnull=False), name="transfer_batch"),
            # "Is any transfer of this batch still moving?", asked at every terminal transition
            # of a batch's transfer (transfers.batches): one probe of an index that holds only
            # the moving ones, whatever the batch's size.
            models.Index(
                fields=["batch"],
                condition=Q(batch__isnull=False, state__in=sorted(MOVING)),
                name="transfer_batch_moving",
            ),
            # Cleanups still owed (workers.cleanup.sweep): partial, as small as what is owed.
            models.Index(
                fields=["partition", "finished_at"],
                condition=Q(cleanup_pending=True),
                name="transfer_cleanup_owed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_path} → {self.destination_path} ({self.state})"

    @property
    def is_adhoc(self) -> bool:
        return self.route_id is None


class TransferEvent(models.Model):
    """Append-only timeline of a transfer: one row per state change."""

    id = models.BigAutoField(primary_key=True)
    transfer = models.ForeignKey(Transfer, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    region = models.CharField(max_length=32, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    detail = models.CharField(max_length=1000, blank=True)
    attempt = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["transfer", "at", "id"], name="transfer_event_timeline")]

    def __str__(self) -> str:
        return f"{self.from_state or '∅'} → {self.to_state}"


class FileObservation(models.Model):
    """What the polls of a route saw of one source file, kept between polls for the
    stability rule (unchanged size and mtime across two polls, a minimum interval apart).
    ``first_seen_at`` is when the polls first saw the current size and mtime: a change
    moves it to that poll, so the interval counts from the last change."""

    id = models.BigAutoField(primary_key=True)
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="observations")
    path = models.CharField(max_length=1024)
    size = models.BigIntegerField()
    mtime = models.FloatField()
    version = models.CharField(max_length=1024, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    polls = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["route", "path"], name="observation_unique_path")]

    def __str__(self) -> str:
        return f"{self.path} ({self.size} B, {self.polls} polls)"


class PgpKey(models.Model):
    """An OpenPGP key a tenant's routes use (``encrypt``, ``sign``, ``decrypt``, ``verify``).

    A public key is data: stored here, armored. A private key's secret parts (and its
    passphrase) live only in Secrets Manager (``secret_arn``); the row keeps the public
    part and what GnuPG said of the key. Writes go through ``transfers.pgpkeys``.
    """

    class Kind(TextChoices):
        PUBLIC = "public"
        PRIVATE = "private"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="pgp_keys")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    fingerprint = models.CharField(max_length=64)
    algorithm = models.CharField(max_length=32)
    user_ids = models.JSONField(default=list)
    key_created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    can_encrypt = models.BooleanField(default=False)
    can_sign = models.BooleanField(default=False)
    public_key = models.TextField()  # armored public part (never secret material)
    secret_arn = models.CharField(max_length=2048, blank=True)  # private keys only
    secret_version = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="pgp_key_name_unique_per_tenant"),
            models.CheckConstraint(condition=Q(kind__in=["public", "private"]), name="pgp_key_kind_valid"),
            models.CheckConstraint(
                condition=Q(kind="public", secret_arn="") | Q(kind="private") & ~Q(secret_arn=""),
                name="pgp_key_secret_iff_private",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "-created_at", "-id"], name="pgp_key_tenant_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint[-16:]})"


class ExpectationWindow(models.Model):
    """The outcome of one of a route's expectation windows (``options.expect``, late files).

    One row per (route, ``window_end``): inserted once, by whichever evaluation gets there
    first (the partition owner's scheduler tick; a re-evaluation after a crash or a failover
    finds the row), so ``file_late`` is sent once. ``window_end`` is the time the cron named
    (files expected by 06:00), ``deadline`` that time plus the grace; the window counts the
    route's transfers created in ``[window_start, deadline)``. A late window that gets its
    files before the next deadline becomes ``arrived_late`` by a compare-and-set, once.
    """

    class State(TextChoices):
        ON_TIME = "on_time"
        LATE = "late"
        ARRIVED_LATE = "arrived_late"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="expectation_windows")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    deadline = models.DateTimeField()
    expected = models.PositiveIntegerField()
    # Files counted for the window at its deadline.
    seen = models.PositiveIntegerField()
    # Files after the deadline counted for this late window (so the next window does not
    # count them too); 0 unless arrived_late.
    late_files = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=State.choices)
    arrived_at = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField()
    region = models.CharField(max_length=32, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["route", "window_end"], name="expectation_window_unique"),
            models.CheckConstraint(
                condition=Q(state__in=["on_time", "late", "arrived_late"]), name="expectation_window_state_valid"
            ),
        ]
        indexes = [models.Index(fields=["route", "-window_end"], name="expectation_window_latest")]

    def __str__(self) -> str:
        return f"{self.route_id} by {self.window_end:%Y-%m-%d %H:%M}Z: {self.state}"
