"""Writing a completed batch's manifest file to the destination (route option
``write_manifest``, docs/batches.md).

The file is itself a small delivery and goes the way every delivery goes, through the
engine: its bytes are put in this region's staging bucket, then ``engine.copy`` moves them
to the destination atomically (SFTP: a ``.part`` then the plain rename that refuses to
overwrite; S3: one PUT with ``If-None-Match: *`` and the batch id in the object metadata).

Exactly one file, however often this runs: the bytes are a pure function of the batch's
frozen row (``transfers.manifests.render``) and the name is fixed at completion, so a
second writer (a repeated message, the scheduler tick's sweep, a retry after a crash
between the write and the record) finds the destination already holding the same file
(same SHA-256, or its own batch id on S3), which the engine reports as
``already_delivered``; the compare-and-set ``pending → written`` records it once. A
different file under that name is never overwritten: the manifest is ``failed``
(``destination_exists``).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import time

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from kombu import Queue

from controlplane.resources import queues
from endpoints.models import Endpoint
from endpoints.specs import to_spec
from engine import copy as engine
from engine import s3client
from engine.errors import TransferError
from engine.locations import S3Location, location_of
from engine.s3io import TAG_SHA256
from transfers import manifests
from transfers.models import Batch
from workers import context
from workers.runner import staging_spec

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


def dispatch(batch_id: str) -> None:
    """Enqueue the writing on this region's control queue (the hook ``transfers.batches``
    calls after the completion's commit)."""
    from workers.tasks import write_batch_manifest  # the tasks module imports this one

    write_batch_manifest.apply_async(
        args=[batch_id], kwargs={"enqueued_at": time.time()}, queue=Queue(queues(settings.FERRY_REGION).control)
    )


def _staging(batch: Batch) -> S3Location:
    # Under staging/: the bucket's expiry rule (deploy/aws/region.yaml) removes one a crash left.
    return S3Location(staging_spec(), f"staging/manifests/{batch.tenant_id}/{batch.id}")


def target_path(batch: Batch) -> str:
    """Where the manifest goes: the destination folder the batch was created with."""
    options = batch.manifest_options or {}
    assert batch.completed_at is not None
    name = manifests.render_name(options["name"], batch_id=str(batch.id), at=batch.completed_at)
    return posixpath.join(options.get("folder") or "/", name)


def body_of(batch: Batch) -> bytes:
    """The manifest file's bytes (deterministic for the batch)."""
    assert batch.completed_at is not None
    return manifests.render(
        (batch.manifest_options or {}).get("format", "json"),
        batch_id=str(batch.id),
        route_id=str(batch.route_id) if batch.route_id else None,
        completed_at=batch.completed_at,
        files=batch.manifest,
    )


def _record(batch_id, *, state: str, path: str = "", error: str = "") -> bool:
    """Compare-and-set out of ``pending``: only one writer records the outcome."""
    updated = Batch.objects.filter(id=batch_id, manifest_state=Batch.ManifestState.PENDING).update(
        manifest_state=state,
        manifest_path=path,
        manifest_error=error[:2000],
        manifest_attempts=F("manifest_attempts") + 1,
        updated_at=timezone.now(),
    )
    return updated == 1


def write(batch_id: str) -> str:
    """Write the manifest file of a completed batch whose file is owed; returns a short word
    for logs and tests. Never raises for the destination's failures: a transient one counts
    an attempt (the scheduler tick's sweep tries again, up to MAX_ATTEMPTS), a permanent one
    marks the manifest ``failed`` with its code and message."""
    batch = Batch.objects.filter(id=batch_id).first()
    if batch is None or batch.manifest_state != Batch.ManifestState.PENDING or batch.completed_at is None:
        return "nothing_owed"
    if context.region_lease(batch.partition) is None:
        return "not_our_partition"  # the holder's tick writes it
    options = batch.manifest_options or {}
    endpoint = Endpoint.objects.filter(id=options.get("endpoint"), tenant_id=batch.tenant_id).first()
    if endpoint is None or endpoint.deleted_at is not None:
        _record(batch.id, state=Batch.ManifestState.FAILED, error="endpoint_deleted: the destination was deleted.")
        return "failed"
    path = target_path(batch)
    body = body_of(batch)
    staging = _staging(batch)
    try:
        sha = hashlib.sha256(body).hexdigest()
        client = s3client.client(staging.spec)
        client.put_object(
            Bucket=staging.spec.bucket,
            Key=staging.key,
            Body=body,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=settings.FERRY_KMS_KEY_ALIAS,
            Tagging=f"{TAG_SHA256}={sha}",
        )
        result = engine.copy(
            staging,
            location_of(to_spec(endpoint), path),
            transfer_id=str(batch.id),
            options=engine.CopyOptions(on_conflict="fail", verify="size"),
            timeout=300,
        )
    except TransferError as exc:
        return _failed(batch, f"{exc.code}: {exc}", permanent=not exc.transient)
    except Exception as exc:
        log.warning("writing the manifest failed unexpectedly", extra={"batch": str(batch.id)}, exc_info=True)
        return _failed(batch, f"unexpected_error: {type(exc).__name__}", permanent=False)
    finally:
        _remove_quietly(staging)
    _record(batch.id, state=Batch.ManifestState.WRITTEN, path=path)
    log.info("batch manifest written", extra={"batch": str(batch.id), "outcome": result.outcome, "bytes": result.size})
    return "written"


def _failed(batch: Batch, error: str, *, permanent: bool) -> str:
    if permanent or batch.manifest_attempts + 1 >= MAX_ATTEMPTS:
        _record(batch.id, state=Batch.ManifestState.FAILED, error=error)
        log.warning("batch manifest failed", extra={"batch": str(batch.id), "error": error})
        return "failed"
    Batch.objects.filter(id=batch.id, manifest_state=Batch.ManifestState.PENDING).update(
        manifest_attempts=F("manifest_attempts") + 1, manifest_error=error[:2000], updated_at=timezone.now()
    )
    log.info("batch manifest attempt failed; the scheduler tick retries", extra={"batch": str(batch.id)})
    return "retry"


def _remove_quietly(staging: S3Location) -> None:
    try:
        s3client.client(staging.spec).delete_object(Bucket=staging.spec.bucket, Key=staging.key)
    except Exception:
        log.info("manifest staging object not removed; the bucket's expiry will", exc_info=True)


def sweep(limit: int = 50) -> int:
    """Write the manifests still owed in the partitions this region holds (a lost message,
    a transient failure); returns how many were written."""
    partitions = context.held_partitions()
    if not partitions:
        return 0
    owed = Batch.objects.filter(manifest_state=Batch.ManifestState.PENDING, partition__in=partitions).values_list(
        "id", flat=True
    )[:limit]
    return sum(write(str(batch_id)) == "written" for batch_id in list(owed))
