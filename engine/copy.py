"""Copying one file between locations: streamed, hashed, delivered atomically. The face
of the engine.

One entry point per operation: :func:`acopy` and :func:`astage` are the coroutines, and
:func:`copy` and :func:`stage` their one synchronous door, which runs them on the engine
loop (``runtime.run``) for callers on plain threads (the Celery runner). Every failure
leaves as an ``engine.errors.TransientError`` or ``PermanentError``, except what the
caller's own ``before_commit`` raises, which comes back unchanged.

Directions:

- SFTP → S3 and S3 → SFTP stream straight from source to destination (``to_s3``,
  ``to_sftp``), through the one chunk pipeline (``plumbing.Pipeline``);
- S3 → S3 is a server-side copy when one client can reach both objects and the source's
  SHA-256 is known (a Ferry tag), else streamed;
- SFTP → SFTP (and any copy with ``always_stage``) goes through an S3 staging object in two
  steps, so a failed delivery is repeated from staging without reading the source again:
  :func:`stage`, then :func:`copy` from the staging location.

Several copies of one batch share SFTP connections through :class:`SharedSessions`.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from engine import confine, runtime, s3client, s3io
from engine.errors import PermanentError, TransferError, TransientError, classify, opening
from engine.locations import Location, S3Location, SftpLocation
from engine.plumbing import (
    CopyOptions,
    CopyResult,
    Hook,
    HookFailed,
    Progress,
    Sessions,
    guard_hook,
    unwrap,
)
from engine.pool import get_pool
from engine.spec import SftpSpec
from engine.to_s3 import to_s3
from engine.to_sftp import to_sftp

__all__ = ["CopyOptions", "CopyResult", "SharedSessions", "acopy", "astage", "copy", "stage"]

log = logging.getLogger("ferry.engine")

T = TypeVar("T")


async def _direct(
    sessions: Sessions,
    source: Location,
    destination: Location,
    *,
    transfer_id: str,
    options: CopyOptions,
    progress: Progress,
    before_commit: Hook | None,
) -> CopyResult:
    if isinstance(destination, S3Location):
        return await to_s3(
            sessions,
            source,
            destination,
            transfer_id=transfer_id,
            options=options,
            progress=progress,
            before_commit=before_commit,
        )
    if isinstance(source, SftpLocation):
        raise PermanentError("SFTP to SFTP needs a staging location.", code="staging_required")
    # Writing through a link out of the root is the same escape as reading through one:
    # the destination's folder must resolve inside the root.
    async with sessions.sftp(destination.spec) as session:
        await confine.inside_root(session.sftp, destination.spec, posixpath.dirname(destination.path) or "/")
    return await to_sftp(
        sessions,
        source,
        destination,
        transfer_id=transfer_id,
        options=options,
        progress=progress,
        before_commit=before_commit,
    )


async def _sorted_errors(coro: Coroutine[Any, Any, T], context: str) -> T:
    """Every failure as a TransferError, except the caller's own hook's, unchanged."""
    try:
        return await coro
    except HookFailed as exc:
        raise unwrap(exc) from None
    except TransferError:
        raise
    except Exception as exc:
        raise classify(exc, context=context) from exc


async def _stage(
    source: Location,
    staging: S3Location,
    *,
    transfer_id: str,
    options: CopyOptions,
    progress: Callable[[int], None] | None,
    sessions: Sessions,
) -> CopyResult:
    staging_options = CopyOptions(
        on_conflict="overwrite",  # the staging key is Ferry's own: anything else there is junk
        verify="size",
        part_size=options.part_size,
        parts_in_flight=options.parts_in_flight,
        sftp_requests_in_flight=options.sftp_requests_in_flight,
        sftp_streams=options.sftp_streams,
        sftp_streams_min_size=options.sftp_streams_min_size,
    )
    client = s3client.client(staging.spec)
    head = await s3io.head(client, staging.spec.bucket, staging.key)
    if head is not None and s3io.transfer_id_of(head) == transfer_id:
        sha = await s3io.sha256_tag(client, staging.spec.bucket, staging.key) if staging.spec.object_tags else None
        if sha:
            size = int(head["ContentLength"])
            log.info("reusing staged copy", extra={"staging": staging.uri, "transfer_id": transfer_id})
            return CopyResult(
                sha256=sha,
                size=size,
                destination=staging.key,
                outcome="already_delivered",
                staged=staging,
                source_sha256=sha,
            )
    result = await to_s3(
        sessions,
        source,
        staging,
        transfer_id=transfer_id,
        options=staging_options,
        progress=Progress(progress),
        before_commit=None,
    )
    # Staging keeps the source's bytes (no transforms): one digest for both sides.
    return CopyResult(
        sha256=result.sha256,
        size=result.size,
        destination=staging.key,
        outcome=result.outcome,
        staged=staging,
        source_sha256=result.sha256,
    )


async def astage(
    source: Location,
    staging: S3Location,
    *,
    transfer_id: str,
    options: CopyOptions = CopyOptions(),
    progress: Callable[[int], None] | None = None,
    sessions: Sessions | None = None,
) -> CopyResult:
    """Copy ``source`` to the staging object, or reuse it if this transfer already staged it
    completely (its metadata names this transfer and its SHA-256 tag is set)."""
    staged = _stage(
        source,
        staging,
        transfer_id=transfer_id,
        options=options,
        progress=progress,
        sessions=sessions or Sessions(),
    )
    return await _sorted_errors(staged, f"staging {source} at {staging}")


async def _copy(
    source: Location,
    destination: Location,
    *,
    transfer_id: str,
    options: CopyOptions,
    staging: S3Location | None,
    progress: Callable[[int], None] | None,
    before_commit: Hook | None,
    sessions: Sessions,
) -> CopyResult:
    needs_staging = isinstance(source, SftpLocation) and isinstance(destination, SftpLocation)
    if needs_staging or (options.always_stage and staging is not None):
        if staging is None:
            raise PermanentError("SFTP to SFTP needs a staging location.", code="staging_required")
        staged = await _stage(
            source, staging, transfer_id=transfer_id, options=options, progress=None, sessions=sessions
        )
        result = await _direct(
            sessions,
            staging,
            destination,
            transfer_id=transfer_id,
            options=options,
            progress=Progress(progress),
            before_commit=guard_hook(before_commit),
        )
        return CopyResult(
            sha256=result.sha256,
            size=result.size,
            destination=result.destination,
            outcome=result.outcome,
            staged=staging,
            source_sha256=staged.sha256,
        )
    return await _direct(
        sessions,
        source,
        destination,
        transfer_id=transfer_id,
        options=options,
        progress=Progress(progress),
        before_commit=guard_hook(before_commit),
    )


async def acopy(
    source: Location,
    destination: Location,
    *,
    transfer_id: str,
    options: CopyOptions = CopyOptions(),
    staging: S3Location | None = None,
    progress: Callable[[int], None] | None = None,
    before_commit: Hook | None = None,
    sessions: Sessions | None = None,
) -> CopyResult:
    """Copy one file (see the module docstring). Raises TransientError / PermanentError only,
    or what ``before_commit`` raised.

    ``before_commit`` runs after the bytes are written to the temporary name / multipart
    upload and before the rename / CompleteMultipartUpload; if it raises, the temporary file
    or upload is removed and its exception propagates unchanged. A staged copy (SFTP → SFTP,
    or ``always_stage`` with ``staging``) stages first, then delivers from staging.
    ``sessions`` shares pinned SFTP connections between the copies of a batch.
    """
    copied = _copy(
        source,
        destination,
        transfer_id=transfer_id,
        options=options,
        staging=staging,
        progress=progress,
        before_commit=before_commit,
        sessions=sessions or Sessions(),
    )
    return await _sorted_errors(copied, f"copying {source} to {destination}")


def _run(coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
    """The synchronous door: run on the engine loop; past ``timeout`` the coroutine is
    cancelled (its cleanup still runs on the loop) and a TransientError ``timeout`` raised."""
    try:
        return runtime.run(coro, timeout=timeout)
    except TimeoutError as exc:
        raise TransientError(f"The copy did not finish within {timeout} s.", code="timeout") from exc


def copy(
    source: Location,
    destination: Location,
    *,
    transfer_id: str,
    options: CopyOptions = CopyOptions(),
    staging: S3Location | None = None,
    progress: Callable[[int], None] | None = None,
    before_commit: Callable[[], None] | None = None,
    timeout: float | None = None,
    shared: SharedSessions | None = None,
) -> CopyResult:
    """:func:`acopy` for synchronous callers. ``timeout`` (seconds) bounds the whole copy;
    ``shared`` pins this batch's SFTP connections."""
    sessions = shared.pinned(source, destination) if shared else None
    return _run(
        acopy(
            source,
            destination,
            transfer_id=transfer_id,
            options=options,
            staging=staging,
            progress=progress,
            before_commit=before_commit,
            sessions=sessions,
        ),
        timeout,
    )


def stage(
    source: Location,
    staging: S3Location,
    *,
    transfer_id: str,
    options: CopyOptions = CopyOptions(),
    progress: Callable[[int], None] | None = None,
    timeout: float | None = None,
    shared: SharedSessions | None = None,
) -> CopyResult:
    """:func:`astage` for synchronous callers: step one of a staged copy, source → staging
    object (reused when already complete). Step two is :func:`copy` from ``staging``."""
    sessions = shared.pinned(source) if shared else None
    return _run(
        astage(source, staging, transfer_id=transfer_id, options=options, progress=progress, sessions=sessions),
        timeout,
    )


class SharedSessions:
    """Pins one pooled SFTP connection per endpoint for a batch of copies run from several
    threads: many small files of one route then travel over one connection, several in
    flight (SFTP multiplexes requests on one channel). Use as a context manager; the
    connections go back to the pool at the end."""

    def __init__(self) -> None:
        self._sessions = Sessions()
        self._stack = contextlib.AsyncExitStack()
        self._lock = threading.Lock()

    def __enter__(self) -> SharedSessions:
        return self

    def __exit__(self, *exc: object) -> None:
        runtime.run(self._stack.aclose())

    def pinned(self, *locations: Location) -> Sessions:
        """The batch's sessions, with a connection pinned for each SFTP location's endpoint."""
        with self._lock:
            for location in locations:
                if isinstance(location, SftpLocation) and location.spec.pool_key not in self._sessions.shared:
                    runtime.run(self._pin(location.spec))
        return self._sessions

    async def _pin(self, spec: SftpSpec) -> None:
        try:
            self._sessions.shared[spec.pool_key] = await self._stack.enter_async_context(get_pool().session(spec))
        except TransferError:
            raise
        except Exception as exc:
            raise opening(classify(exc, context=f"opening SFTP to {spec.host}:{spec.port}"), spec.endpoint_id) from exc
