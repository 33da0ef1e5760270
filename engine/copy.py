"""Copying one file between locations: streamed, hashed, delivered atomically.

The synchronous entry points (``copy``, ``stage``, ``deliver``, ``copy_many``) run their
coroutine on the engine loop (``runtime.run``). Every failure leaves as a
``engine.errors.TransientError`` or ``PermanentError``.

Directions:

- SFTP → S3 and S3 → SFTP stream straight from source to destination;
- S3 → S3 is a server-side copy when one client can reach both objects and the source's
  SHA-256 is known (a Ferry tag), else streamed;
- SFTP → SFTP (and any copy with ``always_stage``) goes through an S3 staging object in two
  steps, so a failed delivery is repeated from staging without reading the source again.

Atomic delivery (DESIGN §4): SFTP writes ``.NAME.<transfer id>.part`` beside the target and
renames it with the plain SFTP rename, which refuses to overwrite; S3 writes with
``If-None-Match: *`` and the transfer id in the object metadata. A destination that already
holds this transfer's file counts as ``already_delivered``; someone else's is a conflict
settled by ``on_conflict``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from engine import runtime, s3client, s3io, sftpio
from engine.errors import (
    ChecksumMismatch,
    DestinationExists,
    PermanentError,
    SizeMismatch,
    SourceMissing,
    TransferError,
    TransientError,
    classify,
)
from engine.hashing import StreamHasher
from engine.locations import Location, S3Location, SftpLocation
from engine.pool import SftpSession, get_pool
from engine.spec import S3Spec

log = logging.getLogger("ferry.engine")

CONFLICT_POLICIES = ("fail", "overwrite", "skip")
VERIFY_MODES = ("size", "reread")


@dataclass(frozen=True)
class CopyOptions:
    on_conflict: str = "fail"  # "fail" | "overwrite" | "skip"  ("rename" is decided by the caller)
    verify: str = "size"  # "size" | "reread"
    always_stage: bool = False
    part_size: int | None = None  # None → max(8 MiB, ceil(size / 9000))
    parts_in_flight: int = 4
    sftp_requests_in_flight: int = 16
    part_tag: str = ""  # distinguishes one claim's temporary SFTP file from another's

    def __post_init__(self) -> None:
        if self.on_conflict not in CONFLICT_POLICIES:
            raise ValueError(f"on_conflict must be one of {CONFLICT_POLICIES}")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}")
        if self.parts_in_flight < 1 or self.sftp_requests_in_flight < 1:
            raise ValueError("in-flight limits must be at least 1")


@dataclass(frozen=True)
class CopyResult:
    sha256: str  # hex of the bytes delivered ("" when skipped without reading)
    size: int
    destination: str  # final path or key
    outcome: str  # "delivered" | "already_delivered" | "skipped"
    staged: S3Location | None = None


# --- plumbing -----------------------------------------------------------------------------


class _Progress:
    """Calls ``callback`` with cumulative bytes, at most every 0.5 s or 8 MiB, and at the end."""

    def __init__(self, callback: Callable[[int], None] | None) -> None:
        self.callback = callback
        self.last_time = 0.0
        self.last_bytes = 0

    def __call__(self, done: int) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if done - self.last_bytes >= 8 * 1024 * 1024 or now - self.last_time >= 0.5:
            self.last_time, self.last_bytes = now, done
            self.callback(done)

    def finish(self, done: int) -> None:
        if self.callback is not None and done != self.last_bytes:
            self.last_bytes = done
            self.callback(done)


@dataclass
class _Ctx:
    """What one copy (or one batch) shares: SFTP sessions pinned for a batch."""

    shared: dict[tuple, SftpSession] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def sftp(self, spec: Any) -> AsyncIterator[SftpSession]:
        found = self.shared.get(spec.pool_key)
        if found is not None and not found.closed:
            yield found
            return
        async with get_pool().session(spec) as session:
            yield session


async def _call(hook: Callable[[], Any] | None) -> None:
    if hook is None:
        return
    if asyncio.iscoroutinefunction(hook):
        await hook()
        return
    # A plain function blocks (the transfer service's hook writes to the database and the
    # ledger): run it on the thread pool, never on the loop every transfer shares.
    result = await runtime.in_thread(hook)
    if asyncio.iscoroutine(result):
        await result


class _HookFailed(Exception):
    """Carries an exception raised by the caller's ``before_commit`` through the engine's
    error sorting, so it reaches the caller unchanged."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _guard(hook: Callable[[], Any] | None) -> Callable[[], Any] | None:
    if hook is None:
        return None

    async def guarded() -> None:
        try:
            await _call(hook)
        except Exception as exc:
            raise _HookFailed(exc) from exc

    return guarded


def _unwrap(exc: _HookFailed) -> BaseException:
    original: BaseException = exc
    while isinstance(original, _HookFailed):
        original = original.original
    return original


def _meta_transfer(head: dict) -> str | None:
    return s3io.transfer_id_of(head)


@dataclass
class _Source:
    size: int
    chunks: Callable[[], AsyncIterator[bytes]]  # a fresh stream each call
    sha256: str | None = None  # known beforehand (a Ferry tag on an S3 source)
    etag: str | None = None


@contextlib.asynccontextmanager
async def _open_source(ctx: _Ctx, source: Location, options: CopyOptions) -> AsyncIterator[_Source]:
    if isinstance(source, SftpLocation):
        async with ctx.sftp(source.spec) as session:
            attrs = await sftpio.stat_or_none(session.sftp, source.path)
            if attrs is None:
                raise SourceMissing(f"{source.path} does not exist on the source server.")
            if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                raise PermanentError(f"{source.path} is a folder, not a file.", code="not_a_file")

            def sftp_chunks() -> AsyncIterator[bytes]:
                return sftpio.read_stream(
                    session.sftp, source.path, in_flight=options.sftp_requests_in_flight, size=attrs.size
                )

            yield _Source(size=attrs.size or 0, chunks=sftp_chunks)
        return
    client = s3client.client(source.spec)
    head = await s3io.head(client, source.spec.bucket, source.key)
    if head is None:
        raise SourceMissing(f"s3://{source.spec.bucket}/{source.key} does not exist.")
    etag = head.get("ETag")

    def s3_chunks() -> AsyncIterator[bytes]:
        return s3io.read_stream(client, source.spec.bucket, source.key, etag=etag)

    sha = await s3io.sha256_tag(client, source.spec.bucket, source.key) if source.spec.object_tags else None
    yield _Source(size=int(head["ContentLength"]), chunks=s3_chunks, sha256=sha, etag=etag)


async def _counted(chunks: AsyncIterator[bytes], expect: int, where: str) -> AsyncIterator[bytes]:
    """Pass chunks through; fail when the source yields more or fewer bytes than announced
    (it changed while read: a retry reads the new version whole)."""
    n = 0
    async for chunk in chunks:
        n += len(chunk)
        if n > expect:
            raise SizeMismatch(f"{where} grew while it was read (more than {expect} bytes).")
        yield chunk
    if n != expect:
        raise SizeMismatch(f"{where} yielded {n} bytes, {expect} expected (it changed while read).")


# --- S3 destinations ------------------------------------------------------------------------


async def _existing_s3(client: Any, dest: S3Location, transfer_id: str, options: CopyOptions) -> CopyResult | None:
    """Settle an occupied destination before reading anything: ours → already delivered,
    someone else's → the conflict policy. None: go ahead and write."""
    head = await s3io.head(client, dest.spec.bucket, dest.key)
    if head is None:
        return None
    return await _settle_s3_conflict(client, dest, head, transfer_id, options)


async def _settle_s3_conflict(
    client: Any, dest: S3Location, head: dict, transfer_id: str, options: CopyOptions
) -> CopyResult | None:
    if _meta_transfer(head) == transfer_id:
        sha = await s3io.sha256_tag(client, dest.spec.bucket, dest.key) if dest.spec.object_tags else None
        if sha is None:
            # Crashed between CompleteMultipartUpload and tagging: hash it and finish the job.
            sha, _ = await _hash_s3(client, dest.spec.bucket, dest.key)
            if dest.spec.object_tags:
                await s3io.put_sha256_tag(client, dest.spec.bucket, dest.key, sha)
        size = int(head["ContentLength"])
        return CopyResult(sha256=sha, size=size, destination=dest.key, outcome="already_delivered")
    if options.on_conflict == "overwrite":
        return None
    if options.on_conflict == "skip":
        return CopyResult(sha256="", size=int(head["ContentLength"]), destination=dest.key, outcome="skipped")
    raise DestinationExists(f"s3://{dest.spec.bucket}/{dest.key} already exists (another file).")


async def _hash_s3(client: Any, bucket: str, key: str) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    async for chunk in s3io.read_stream(client, bucket, key):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


async def _check_s3_delivery(client: Any, dest: S3Location, transfer_id: str, sha: str, size: int, verify: str) -> None:
    head = await s3io.head(client, dest.spec.bucket, dest.key)
    if head is None:
        raise SizeMismatch(f"s3://{dest.spec.bucket}/{dest.key} is missing right after it was written.", code="lost")
    owner = _meta_transfer(head)
    if owner is None:
        # Some S3-compatible servers drop user metadata (rclone serve s3 on multipart
        # uploads): ownership cannot be proven here, the size check below still runs.
        log.warning("destination object carries no transfer id metadata", extra={"key": dest.key})
    elif owner != transfer_id:
        # A server that ignores If-None-Match let someone else's write win the race.
        raise DestinationExists(f"s3://{dest.spec.bucket}/{dest.key} was replaced by another writer.")
    if int(head["ContentLength"]) != size:
        raise SizeMismatch(f"s3://{dest.spec.bucket}/{dest.key} holds {head['ContentLength']} bytes, {size} written.")
    if verify == "reread":
        got, n = await _hash_s3(client, dest.spec.bucket, dest.key)
        if got != sha or n != size:
            # Ours (checked above) and wrong: remove it so a retry can deliver.
            await runtime.in_thread(client.delete_object, Bucket=dest.spec.bucket, Key=dest.key)
            raise ChecksumMismatch(f"s3://{dest.spec.bucket}/{dest.key} reads back with another SHA-256.")


async def _to_s3(
    ctx: _Ctx,
    source: Location,
    dest: S3Location,
    *,
    transfer_id: str,
    options: CopyOptions,
    progress: _Progress,
    before_commit: Callable[[], Any] | None,
    reuse_only_if_ours: bool = False,
) -> CopyResult:
    client = s3client.client(dest.spec)
    settled = await _existing_s3(client, dest, transfer_id, options)
    if settled is not None:
        return settled
    async with _open_source(ctx, source, options) as src:
        server_side = (
            isinstance(source, S3Location)
            and src.sha256
            and dest.spec.object_tags
            and _same_account(source.spec, dest.spec)
        )
        if server_side and src.size <= s3io.SINGLE_COPY_LIMIT:
            assert isinstance(source, S3Location)
            return await _server_side_copy(
                client, source, dest, src, transfer_id=transfer_id, options=options, before_commit=before_commit
            )
        upload = s3io.S3Upload(
            client=client,
            spec=dest.spec,
            key=dest.key,
            transfer_id=transfer_id,
            size_hint=src.size,
            part_size=s3io.part_size_for(src.size, options.part_size),
            parts_in_flight=options.parts_in_flight,
            if_none_match=options.on_conflict != "overwrite",
            resume=True,
            before_commit=before_commit,
            progress=progress,
        )
        result = await upload.run(_counted(src.chunks(), src.size, str(source)))
    if result.outcome == "precondition_failed":
        head = await s3io.head(client, dest.spec.bucket, dest.key)
        settled = await _settle_s3_conflict(client, dest, head or {}, transfer_id, options) if head else None
        if settled is None:  # gone again, or overwrite: the caller's retry writes it
            raise classify(TimeoutError(), context=f"s3://{dest.spec.bucket}/{dest.key} changed under us")
        return settled
    progress.finish(result.size)
    await _check_s3_delivery(client, dest, transfer_id, result.sha256, result.size, options.verify)
    return CopyResult(sha256=result.sha256, size=result.size, destination=dest.key, outcome="delivered")


def _same_account(a: S3Spec, b: S3Spec) -> bool:
    """One client can read the source and write the destination (server-side copy)."""
    return (a.access_key_id, a.role_arn, a.region) == (b.access_key_id, b.role_arn, b.region)


async def _server_side_copy(
    client: Any,
    source: S3Location,
    dest: S3Location,
    src: _Source,
    *,
    transfer_id: str,
    options: CopyOptions,
    before_commit: Callable[[], Any] | None,
) -> CopyResult:
    assert src.sha256 is not None
    args: dict[str, Any] = {
        "Bucket": dest.spec.bucket,
        "Key": dest.key,
        "CopySource": {"Bucket": source.spec.bucket, "Key": source.key},
        "MetadataDirective": "REPLACE",
        "Metadata": {s3io.META_TRANSFER: transfer_id},
        "TaggingDirective": "REPLACE",
        "Tagging": f"{s3io.TAG_SHA256}={src.sha256}",
        **s3io.sse_args(dest.spec),
    }
    if src.etag:
        args["CopySourceIfMatch"] = src.etag
    if options.on_conflict != "overwrite":
        args["IfNoneMatch"] = "*"
    await _call(before_commit)
    log.info("server-side copy", extra={"source": str(source), "destination": str(dest)})
    try:
        await runtime.in_thread(client.copy_object, **args)
    except Exception as exc:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError) and s3io.status_of(exc) == 412 and options.on_conflict != "overwrite":
            head = await s3io.head(client, dest.spec.bucket, dest.key)
            if head is not None:
                settled = await _settle_s3_conflict(client, dest, head, transfer_id, options)
                if settled is not None:
                    return settled
        raise
    await _check_s3_delivery(client, dest, transfer_id, src.sha256, src.size, options.verify)
    return CopyResult(sha256=src.sha256, size=src.size, destination=dest.key, outcome="delivered")


# --- SFTP destinations ----------------------------------------------------------------------


async def _to_sftp(
    ctx: _Ctx,
    source: Location,
    dest: SftpLocation,
    *,
    transfer_id: str,
    options: CopyOptions,
    progress: _Progress,
    before_commit: Callable[[], Any] | None,
) -> CopyResult:
    part = sftpio.part_path(dest.path, transfer_id, options.part_tag)
    leftover = False  # a .part that still has to be removed
    try:
        async with ctx.sftp(dest.spec) as session:
            sftp = session.sftp
            try:
                return await _write_and_rename(
                    sftp, source, dest, part, ctx=ctx, options=options, progress=progress, before_commit=before_commit
                )
            except BaseException:
                leftover = True
                if not session.closed:
                    with contextlib.suppress(Exception):
                        leftover = not await asyncio.wait_for(sftpio.remove_quietly(sftp, part), 10)
                raise
    finally:
        if leftover:
            # The connection died mid-write: remove the .part over a fresh one (after the
            # dead lease is released, so a max_connections of 1 cannot deadlock).
            await _remove_part_fresh(dest, part)


async def _write_and_rename(
    sftp: asyncssh.SFTPClient,
    source: Location,
    dest: SftpLocation,
    part: str,
    *,
    ctx: _Ctx,
    options: CopyOptions,
    progress: _Progress,
    before_commit: Callable[[], Any] | None,
) -> CopyResult:
    async with _open_source(ctx, source, options) as src:
        existing = await sftpio.stat_or_none(sftp, dest.path)
        if existing is not None:
            settled = await _settle_sftp_precheck(sftp, dest, existing, src, options)
            if settled is not None:
                await sftpio.remove_quietly(sftp, part)  # a stale one from a crashed attempt
                return settled
        h = StreamHasher()
        written = 0
        async with sftp.open(part, "wb", block_size=sftpio.write_size(sftp), max_requests=1) as f:
            writer = sftpio.SftpWriter(f, block=sftpio.write_size(sftp), in_flight=options.sftp_requests_in_flight)
            try:
                async for chunk in _counted(src.chunks(), src.size, str(source)):
                    await h.update(chunk)
                    await writer.write(chunk)
                    written += len(chunk)
                    progress(written)
                await writer.flush()
            except BaseException:
                await writer.abort()
                await h.aclose()
                raise
    sha = await h.hexdigest()
    if src.sha256 and src.sha256 != sha:
        raise ChecksumMismatch(f"{source} does not match the SHA-256 recorded when it was staged.")
    attrs = await sftp.stat(part)
    if attrs.size != written:
        raise SizeMismatch(f"{part} holds {attrs.size} bytes, {written} written.")
    await _call(before_commit)
    outcome = await _rename_into_place(sftp, part, dest, sha, written, options)
    progress.finish(written)
    if outcome == "delivered" and options.verify == "reread":
        got, n = await sftpio.hash_remote(sftp, dest.path, in_flight=options.sftp_requests_in_flight)
        if got != sha or n != written:
            # We renamed it there a moment ago: take the bad copy away so a retry can deliver.
            await sftpio.remove_quietly(sftp, dest.path)
            raise ChecksumMismatch(f"{dest.path} reads back with another SHA-256.")
    return CopyResult(sha256=sha, size=written, destination=dest.path, outcome=outcome)


async def _remove_part_fresh(dest: SftpLocation, part: str) -> None:
    async def remove() -> None:
        async with get_pool().session(dest.spec) as fresh:
            await sftpio.remove_quietly(fresh.sftp, part)

    # Bounded: inside a batch the pool may be full; a .part left then is removed by the
    # retry, which writes the same name.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(remove(), 20)


async def _settle_sftp_precheck(
    sftp: asyncssh.SFTPClient, dest: SftpLocation, existing: asyncssh.SFTPAttrs, src: _Source, options: CopyOptions
) -> CopyResult | None:
    """Before writing: a target that cannot be ours (other size) meets the policy now; one of
    the same size whose SHA-256 we know already is compared; otherwise decide at rename."""
    if options.on_conflict == "overwrite":
        return None
    if existing.size == src.size and src.sha256:
        got, n = await sftpio.hash_remote(sftp, dest.path)
        if got == src.sha256 and n == src.size:
            return CopyResult(sha256=got, size=n, destination=dest.path, outcome="already_delivered")
    elif existing.size == src.size:
        return None  # maybe ours: compare after the copy
    if options.on_conflict == "skip":
        return CopyResult(sha256="", size=existing.size or 0, destination=dest.path, outcome="skipped")
    raise DestinationExists(f"{dest.path} already exists on the destination server (another file).")


async def _rename_into_place(
    sftp: asyncssh.SFTPClient, part: str, dest: SftpLocation, sha: str, size: int, options: CopyOptions
) -> str:
    """Plain SFTP rename (refuses to overwrite). Returns the outcome; removes ``part`` unless
    it became the target."""
    try:
        await sftp.rename(part, dest.path)
        return "delivered"
    except asyncssh.SFTPError as exc:
        existing = await sftpio.stat_or_none(sftp, dest.path)
        if existing is None:
            raise classify(exc, context=f"renaming into {dest.path}") from exc
    # The name is taken: by this transfer's own earlier attempt (same bytes), or another file.
    if options.on_conflict == "overwrite":
        # Explicitly asked for: replace in one step where the server can (OpenSSH's extension).
        try:
            await sftp.posix_rename(part, dest.path)
        except asyncssh.SFTPOpUnsupported:
            await sftpio.remove_quietly(sftp, dest.path)
            await sftp.rename(part, dest.path)
        return "delivered"
    if existing.size == size:
        got, n = await sftpio.hash_remote(sftp, dest.path)
        if got == sha and n == size:
            await sftpio.remove_quietly(sftp, part)
            return "already_delivered"
    await sftpio.remove_quietly(sftp, part)
    if options.on_conflict == "skip":
        return "skipped"
    raise DestinationExists(f"{dest.path} already exists on the destination server (another file).")


# --- the operations -------------------------------------------------------------------------


async def _direct(
    ctx: _Ctx,
    source: Location,
    destination: Location,
    *,
    transfer_id: str,
    options: CopyOptions,
    progress: _Progress,
    before_commit: Callable[[], Any] | None,
) -> CopyResult:
    if isinstance(destination, S3Location):
        return await _to_s3(
            ctx,
            source,
            destination,
            transfer_id=transfer_id,
            options=options,
            progress=progress,
            before_commit=before_commit,
        )
    if isinstance(source, SftpLocation):
        raise PermanentError("SFTP to SFTP needs a staging location.", code="staging_required")
    return await _to_sftp(
        ctx,
        source,
        destination,
        transfer_id=transfer_id,
        options=options,
        progress=progress,
        before_commit=before_commit,
    )


async def astage(
    source: Location,
    staging: S3Location,
    *,
    transfer_id: str,
    options: CopyOptions = CopyOptions(),
    progress: Callable[[int], None] | None = None,
    ctx: _Ctx | None = None,
) -> CopyResult:
    """Copy ``source`` to the staging object, or reuse it if this transfer already staged it
    completely (its metadata names this transfer and its SHA-256 tag is set)."""
    ctx = ctx or _Ctx()
    staging_options = CopyOptions(
        on_conflict="overwrite",  # the staging key is Ferry's own: anything else there is junk
        verify="size",
        part_size=options.part_size,
        parts_in_flight=options.parts_in_flight,
        sftp_requests_in_flight=options.sftp_requests_in_flight,
    )
    client = s3client.client(staging.spec)
    head = await s3io.head(client, staging.spec.bucket, staging.key)
    if head is not None and _meta_transfer(head) == transfer_id:
        sha = await s3io.sha256_tag(client, staging.spec.bucket, staging.key) if staging.spec.object_tags else None
        if sha:
            size = int(head["ContentLength"])
            log.info("reusing staged copy", extra={"staging": str(staging), "transfer_id": transfer_id})
            return CopyResult(
                sha256=sha, size=size, destination=staging.key, outcome="already_delivered", staged=staging
            )
    result = await _to_s3(
        ctx,
        source,
        staging,
        transfer_id=transfer_id,
        options=staging_options,
        progress=_Progress(progress),
        before_commit=None,
    )
    return CopyResult(
        sha256=result.sha256, size=result.size, destination=staging.key, outcome=result.outcome, staged=staging
    )


async def adeliver(
    staging: S3Location,
    destination: Location,
    *,
    transfer_id: str,
    options: CopyOptions = CopyOptions(),
    progress: Callable[[int], None] | None = None,
    before_commit: Callable[[], Any] | None = None,
    ctx: _Ctx | None = None,
) -> CopyResult:
    """Deliver a staged object to its destination (reads staging only, never the source)."""
    try:
        return await _deliver(
            staging,
            destination,
            transfer_id=transfer_id,
            options=options,
            progress=progress,
            before_commit=_guard(before_commit),
            ctx=ctx or _Ctx(),
        )
    except _HookFailed as exc:
        raise _unwrap(exc) from None


async def _deliver(
    staging: S3Location,
    destination: Location,
    *,
    transfer_id: str,
    options: CopyOptions,
    progress: Callable[[int], None] | None,
    before_commit: Callable[[], Any] | None,
    ctx: _Ctx,
) -> CopyResult:
    result = await _direct(
        ctx,
        staging,
        destination,
        transfer_id=transfer_id,
        options=options,
        progress=_Progress(progress),
        before_commit=before_commit,
    )
    return CopyResult(
        sha256=result.sha256, size=result.size, destination=result.destination, outcome=result.outcome, staged=staging
    )


async def acopy(
    source: Location,
    destination: Location,
    *,
    transfer_id: str,
    options: CopyOptions = CopyOptions(),
    staging: S3Location | None = None,
    progress: Callable[[int], None] | None = None,
    before_commit: Callable[[], Any] | None = None,
    ctx: _Ctx | None = None,
) -> CopyResult:
    """The coroutine behind ``copy`` (for callers already on the engine loop)."""
    ctx = ctx or _Ctx()
    try:
        needs_staging = isinstance(source, SftpLocation) and isinstance(destination, SftpLocation)
        if needs_staging or (options.always_stage and staging is not None):
            if staging is None:
                raise PermanentError("SFTP to SFTP needs a staging location.", code="staging_required")
            await astage(source, staging, transfer_id=transfer_id, options=options, ctx=ctx)
            return await _deliver(
                staging,
                destination,
                transfer_id=transfer_id,
                options=options,
                progress=progress,
                before_commit=_guard(before_commit),
                ctx=ctx,
            )
        return await _direct(
            ctx,
            source,
            destination,
            transfer_id=transfer_id,
            options=options,
            progress=_Progress(progress),
            before_commit=_guard(before_commit),
        )
    except _HookFailed as exc:
        raise _unwrap(exc) from None
    except TransferError:
        raise
    except Exception as exc:
        raise classify(exc, context=f"copying {source} to {destination}") from exc


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
    """Copy one file (see the module docstring). Raises TransientError / PermanentError only.

    ``before_commit`` runs after the bytes are written to the temporary name / multipart
    upload and before the rename / CompleteMultipartUpload; if it raises, the temporary file
    or upload is removed and its exception propagates unchanged.

    ``timeout`` (seconds) bounds the whole copy: past it the copy is cancelled (its cleanup
    still runs on the engine loop) and a TransientError with code ``timeout`` is raised.
    """
    try:
        return runtime.run(
            acopy(
                source,
                destination,
                transfer_id=transfer_id,
                options=options,
                staging=staging,
                progress=progress,
                before_commit=before_commit,
                ctx=shared.pinned(source, destination) if shared else None,
            ),
            timeout=timeout,
        )
    except TimeoutError as exc:
        raise TransientError(f"The copy did not finish within {timeout} s.", code="timeout") from exc


def stage(
    source: Location,
    staging: S3Location,
    *,
    transfer_id: str,
    options: CopyOptions = CopyOptions(),
    progress: Callable[[int], None] | None = None,
    shared: SharedSessions | None = None,
) -> CopyResult:
    """Step one of a staged copy: source → staging object (reused when already complete)."""
    ctx = shared.pinned(source) if shared else None
    return runtime.run(
        _wrap(astage(source, staging, transfer_id=transfer_id, options=options, progress=progress, ctx=ctx))
    )


class SharedSessions:
    """Pins one pooled SFTP connection per endpoint for a batch of copies run from several
    threads: many small files of one route then travel over one connection, several in
    flight (SFTP multiplexes requests on one channel). Use as a context manager; the
    connections go back to the pool at the end."""

    def __init__(self) -> None:
        self._ctx = _Ctx()
        self._stack = contextlib.AsyncExitStack()
        self._lock = threading.Lock()

    def __enter__(self) -> SharedSessions:
        return self

    def __exit__(self, *exc: object) -> None:
        runtime.run(self._stack.aclose())

    def pinned(self, *locations: Location) -> _Ctx:
        """The batch's context, with a connection pinned for each SFTP location's endpoint."""
        with self._lock:
            for location in locations:
                if isinstance(location, SftpLocation) and location.spec.pool_key not in self._ctx.shared:
                    runtime.run(self._pin(location.spec))
        return self._ctx

    async def _pin(self, spec: Any) -> None:
        try:
            self._ctx.shared[spec.pool_key] = await self._stack.enter_async_context(get_pool().session(spec))
        except TransferError:
            raise
        except Exception as exc:
            raise classify(exc, context=f"opening SFTP to {spec.host}:{spec.port}") from exc


def deliver(
    staging: S3Location,
    destination: Location,
    *,
    transfer_id: str,
    options: CopyOptions = CopyOptions(),
    progress: Callable[[int], None] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> CopyResult:
    """Step two of a staged copy: staging object → destination."""
    return runtime.run(
        _wrap(
            adeliver(
                staging,
                destination,
                transfer_id=transfer_id,
                options=options,
                progress=progress,
                before_commit=before_commit,
            )
        )
    )


async def _wrap(coro: Any) -> Any:
    try:
        return await coro
    except TransferError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


async def acopy_many(
    items: list[tuple[Location, Location, str]],
    *,
    options: CopyOptions = CopyOptions(),
    concurrency: int = 8,
    staging: Callable[[str], S3Location] | None = None,
) -> list[CopyResult | TransferError]:
    """Copy many (small) files of one route: one pooled connection per SFTP endpoint shared by
    ``concurrency`` copies in flight (SFTP multiplexes requests on one channel)."""
    ctx = _Ctx()
    sem = asyncio.Semaphore(max(1, concurrency))
    specs = {}
    for src, dst, _ in items:
        for loc in (src, dst):
            if isinstance(loc, SftpLocation):
                specs[loc.spec.pool_key] = loc.spec
    async with contextlib.AsyncExitStack() as stack:
        for key, spec in specs.items():
            try:
                ctx.shared[key] = await stack.enter_async_context(get_pool().session(spec))
            except TransferError as exc:
                return [exc for _ in items]

        async def one(src: Location, dst: Location, transfer_id: str) -> CopyResult | TransferError:
            async with sem:
                try:
                    return await acopy(
                        src,
                        dst,
                        transfer_id=transfer_id,
                        options=options,
                        staging=staging(transfer_id) if staging else None,
                        ctx=ctx,
                    )
                except TransferError as exc:
                    return exc

        return list(await asyncio.gather(*(one(*item) for item in items)))


def copy_many(
    items: list[tuple[Location, Location, str]],
    *,
    options: CopyOptions = CopyOptions(),
    concurrency: int = 8,
    staging: Callable[[str], S3Location] | None = None,
) -> list[CopyResult | TransferError]:
    """Synchronous ``acopy_many``: ``items`` are (source, destination, transfer id); one result
    (or the TransferError it failed with) per item, in order. ``staging`` maps a transfer id
    to its staging location, for SFTP → SFTP batches."""
    return runtime.run(acopy_many(items, options=options, concurrency=concurrency, staging=staging))
