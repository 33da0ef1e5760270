"""Cleanup when a transfer reaches a terminal state: the ONE place, called from every path.

What goes (docs/execution.md, "Cleanup on every terminal path"):

- the staging object (customer data in Ferry's staging bucket), except for a ``dead``
  transfer: a re-drive resumes from it without the source, which may be gone by then
  (the staging bucket's expiry removes it if no re-drive comes);
- this transfer's temporary SFTP files of its last claims (``.ferry-<id>.<claim>.part``,
  and the previous release's ``.NAME.<id>.<claim>.part``);
- the multipart uploads Ferry created or adopted for it (``Transfer.uploads``, recorded at
  CreateMultipartUpload) that are still open. Only recorded upload ids are aborted, so an
  upload of anyone else's (the customer's own tools writing the same key) is never touched.

What stays: the evidence of an unfinished commit. While the ledger entry is this
transfer's and ``committing``, the ``.part`` / open upload of the claim that began the
commit tells a re-drive whether the rename / completion happened, so it is left alone.

Who calls it: the runner right after it recorded succeeded, skipped or dead (including the
re-discovered deliveries: ``DELIVERED_BY_US``, a commit settled from evidence), and the
scheduler tick's :func:`sweep` for every terminal transfer whose cleanup is still owed
(``Transfer.cleanup_pending``, set by ``transfers.states.transition`` on entering any
terminal state): a cancel through the API or the admin, a worker killed after its success
was recorded, a cleanup that failed. Idempotent; a failure is logged for operators, leaves
``cleanup_pending`` set for the next tick, and never changes the transfer's outcome.
"""

from __future__ import annotations

import logging
import posixpath
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane import logs
from endpoints.specs import to_spec
from engine import listing
from engine.locations import S3Location, location_of
from engine.sftpio import legacy_part_path, part_path
from engine.spec import S3Spec, SftpSpec
from transfers.models import Transfer
from transfers.states import TERMINAL, State
from workers import context
from workers.ledger import LedgerState

log = logging.getLogger("ferry.cleanup")

# Temporary files of this many claims before the last are removed: a transfer gets at most
# max_attempts (5 by default) claims plus the ones a crash or a duplicate message cost.
PART_CLAIMS = 10
# How long the sweep keeps trying a cleanup that fails (an endpoint unreachable for good).
SWEEP_MAX_AGE = timedelta(days=7)


def record_upload(transfer_id: uuid.UUID | str, claim_token: int, bucket: str, key: str, upload_id: str) -> None:
    """Remember a multipart upload this transfer's claim created or adopted (called by the
    engine right after CreateMultipartUpload, before any part is sent), so that cleanup can
    abort it and a retry can tell from it whether a begun commit completed."""
    with transaction.atomic():
        uploads = Transfer.objects.select_for_update().filter(id=transfer_id).values_list("uploads", flat=True).first()
        if uploads is None:
            return
        kept = [u for u in uploads if u.get("upload_id") != upload_id]
        kept.append({"bucket": bucket, "key": key, "upload_id": upload_id, "claim": claim_token})
        Transfer.objects.filter(id=transfer_id).update(uploads=kept)


def committing_claim(transfer: Transfer) -> int | None:
    """The claim token whose commit is unfinished (the ledger entry is this transfer's and
    ``committing``), or None. Raises LedgerUnavailable when the ledger does not answer."""
    from workers.runner import delivery_key_of  # the runner calls this module

    entry = context.ledger().get(delivery_key_of(transfer))
    if entry is None or entry.transfer_id != str(transfer.id) or entry.state != LedgerState.COMMITTING:
        return None
    return entry.committing_token if entry.committing_token is not None else entry.claim_token


def clean_up(transfer_id: uuid.UUID | str, *, done_claim: int | None = None, delivered: bool = False) -> bool:
    """Remove what a terminal transfer left behind (see the module docstring); True when
    nothing is left. ``done_claim``: a claim whose temporary file is known gone already (the
    runner's own, renamed a moment ago), to spare a round trip. ``delivered``: the caller
    just saw the ledger say ``delivered`` (no unfinished commit to spare), to spare a ledger
    read. Never raises."""
    try:
        return _clean_up(transfer_id, done_claim=done_claim, delivered=delivered)
    except Exception:
        # A bug or an outage must not turn a recorded outcome into a failed attempt.
        log.exception("cleanup failed; the scheduler tick tries again", extra={"transfer": str(transfer_id)})
        return False


def _clean_up(transfer_id: uuid.UUID | str, *, done_claim: int | None, delivered: bool) -> bool:
    transfer = Transfer.objects.select_related("source_endpoint", "destination_endpoint").filter(id=transfer_id).first()
    if transfer is None or transfer.state not in TERMINAL:
        return False
    with logs.bound(transfer=str(transfer.id)):
        try:
            keep = None if delivered else committing_claim(transfer)
        except Exception:
            log.warning("cleanup postponed: the ledger did not answer", exc_info=True)
            return False
        ok = _remove_staging(transfer)
        ok = _remove_parts(transfer, keep=keep, done=done_claim) and ok
        remaining, aborted = _abort_uploads(transfer, keep=keep)
        ok = ok and len(remaining) == len([u for u in transfer.uploads if u.get("claim") == keep])
        fields: dict[str, Any] = {"uploads": remaining}
        if ok:
            fields["cleanup_pending"] = False
        Transfer.objects.filter(id=transfer.id, state__in=TERMINAL).update(**fields)
        if keep is not None:
            log.info("cleanup left the evidence of an unfinished commit", extra={"claim_token": keep})
        if not ok:
            log.warning("cleanup incomplete; the scheduler tick tries again")
        elif aborted:
            log.info("abandoned multipart uploads aborted", extra={"count": aborted})
        return ok


def _remove_staging(transfer: Transfer) -> bool:
    from workers.runner import needs_staging, staging_location

    if transfer.state == State.DEAD or not (transfer.staging_key or needs_staging(transfer)):
        return True
    staging = staging_location(transfer)
    try:
        listing.delete(staging)
        return True
    except Exception as exc:
        # The staging bucket's lifecycle rule is the last resort; the operator log names it.
        log.warning("staging object not removed", extra={"staging": staging.uri, "error": str(exc)})
        return False


def _remove_parts(transfer: Transfer, *, keep: int | None, done: int | None) -> bool:
    if transfer.destination_endpoint.kind != "sftp":
        return True
    try:
        spec = to_spec(transfer.destination_endpoint)
        assert isinstance(spec, SftpSpec)
        target = location_of(spec, transfer.destination_path).path
        last = transfer.claim_token
        paths = []
        for claim in range(max(1, last - PART_CLAIMS), last + 1):
            if claim in (keep, done):
                continue
            for name in (part_path, legacy_part_path):
                path = name(target, str(transfer.id), str(claim))
                if len(posixpath.basename(path).encode()) <= 255:  # a longer name never existed
                    paths.append(path)
        listing.remove_many(spec, paths)
        return True
    except Exception as exc:
        log.warning("temporary files not removed", extra={"error": str(exc)})
        return False


def _abort_uploads(transfer: Transfer, *, keep: int | None) -> tuple[list[dict], int]:
    """Abort the recorded uploads still open; returns (the entries to keep, how many aborted)."""
    from workers.runner import staging_location

    remaining: list[dict] = []
    aborted = 0
    staging_spec = staging_location(transfer).spec
    destination_spec = to_spec(transfer.destination_endpoint) if transfer.uploads else None
    for upload in transfer.uploads:
        if keep is not None and upload.get("claim") == keep:
            remaining.append(upload)  # the evidence of the unfinished commit
            continue
        spec: S3Spec | None = None
        if upload.get("bucket") == staging_spec.bucket:
            spec = staging_spec
        elif isinstance(destination_spec, S3Spec) and upload.get("bucket") == destination_spec.bucket:
            spec = destination_spec
        if spec is None:
            # The endpoint's bucket changed since: Ferry's client for it is gone; the bucket's
            # own lifecycle rule is all that is left. Said once, then forgotten.
            log.warning("an abandoned upload's bucket is no longer the endpoint's", extra={"key": upload.get("key")})
            continue
        try:
            aborted += listing.abort_upload(S3Location(spec, upload["key"]), upload["upload_id"])
        except Exception as exc:
            log.warning("an abandoned upload was not aborted", extra={"key": upload.get("key"), "error": str(exc)})
            remaining.append(upload)
    return remaining, aborted


def sweep(limit: int = 50) -> int:
    """Clean up terminal transfers of the partitions this region holds whose cleanup is
    still owed (cancelled, a worker killed after recording success, a cleanup that failed);
    returns how many finished their cleanup."""
    partitions = context.held_partitions()
    if not partitions:
        return 0
    owed = Transfer.objects.filter(
        partition__in=partitions,
        cleanup_pending=True,
        state__in=list(TERMINAL),
        finished_at__gte=timezone.now() - SWEEP_MAX_AGE,
    ).order_by("finished_at")
    done = 0
    for transfer_id in owed.values_list("id", flat=True)[:limit]:
        done += clean_up(transfer_id)
    return done
