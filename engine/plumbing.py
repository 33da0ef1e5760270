"""What every copy shares, whatever its destination: options, results, progress, the
SFTP sessions of a batch, opening a source, the caller's ``before_commit`` hook, and the
one chunk pipeline.

The chunk pipeline (:class:`Pipeline`) is the only way bytes travel from a source to a
destination: **counted** (the source must yield exactly the size it announced) →
**transforms** (none today: the place where decryption, encryption or compression go) →
**hashed** (SHA-256 of the bytes delivered, off the loop). ``to_s3`` and ``to_sftp`` both
read from it; neither assembles a stream of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from engine import confine, runtime, s3client, s3io, sftpio
from engine.errors import PermanentError, SizeMismatch, SourceMissing
from engine.hashing import StreamHasher
from engine.locations import Location, S3Location, SftpLocation
from engine.pool import SftpSession, get_pool
from engine.spec import SftpSpec
from engine.throttle import throttled

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
    # Told (bucket, key, upload id) when a multipart upload is created or adopted, so the
    # caller knows its own uploads (ListMultipartUploads shows no metadata) and can abort
    # the ones it abandons. Runs on the engine's threads; may block.
    upload_started: Callable[[str, str, str], Any] | None = field(default=None, compare=False)
    # Told (SHA-256 hex, size) of the bytes about to be committed, just before
    # ``before_commit``: a retry that finds the commit begun can record them. Must not block.
    about_to_commit: Callable[[str, int], Any] | None = field(default=None, compare=False)

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


class Progress:
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
class Sessions:
    """What one copy (or one batch) shares: SFTP sessions pinned for a batch, by pool key.
    An endpoint without a pinned session borrows one from the pool for the copy."""

    shared: dict[tuple[str, int], SftpSession] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def sftp(self, spec: SftpSpec) -> AsyncIterator[SftpSession]:
        found = self.shared.get(spec.pool_key)
        if found is not None and not found.closed:
            yield found
            return
        async with get_pool().session(spec) as session:
            yield session


Hook = Callable[[], Any]


async def call_hook(hook: Hook | None) -> None:
    """Run the caller's hook, plain or async."""
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


class HookFailed(Exception):
    """Carries an exception raised by the caller's ``before_commit`` through the engine's
    error sorting, so it reaches the caller unchanged (:func:`unwrap`)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def guard_hook(hook: Hook | None) -> Hook | None:
    """``hook`` with whatever it raises wrapped in :class:`HookFailed`."""
    if hook is None:
        return None

    async def guarded() -> None:
        try:
            await call_hook(hook)
        except Exception as exc:
            raise HookFailed(exc) from exc

    return guarded


def unwrap(exc: HookFailed) -> BaseException:
    """The caller's own exception inside (possibly nested) HookFailed wrappers."""
    original: BaseException = exc
    while isinstance(original, HookFailed):
        original = original.original
    return original


@dataclass
class Source:
    size: int
    chunks: Callable[[], AsyncIterator[bytes]]  # a fresh stream each call
    sha256: str | None = None  # known beforehand (a Ferry tag on an S3 source)
    etag: str | None = None


@contextlib.asynccontextmanager
async def open_source(sessions: Sessions, source: Location, options: CopyOptions) -> AsyncIterator[Source]:
    """The source's size and a way to stream it; SourceMissing when it is not there."""
    if isinstance(source, SftpLocation):
        async with sessions.sftp(source.spec) as session:
            # A link out of the endpoint's root is refused before anything is read; what
            # is read is the resolved path, so a link swapped after the check changes nothing.
            path = await confine.inside_root(session.sftp, source.spec, source.path)
            attrs = await sftpio.stat_or_none(session.sftp, path)
            if attrs is None:
                raise SourceMissing(f"{source.path} does not exist on the source server.")
            if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                raise PermanentError(f"{source.path} is a folder, not a file.", code="not_a_file")

            def sftp_chunks() -> AsyncIterator[bytes]:
                stream = sftpio.read_stream(
                    session.sftp, path, in_flight=options.sftp_requests_in_flight, size=attrs.size
                )
                return throttled(stream, session.throttle)  # the connection's bandwidth share

            yield Source(size=attrs.size or 0, chunks=sftp_chunks)
        return
    client = s3client.client(source.spec)
    head = await s3io.head(client, source.spec.bucket, source.key)
    if head is None:
        raise SourceMissing(f"{source} does not exist.")
    etag = head.get("ETag")

    def s3_chunks() -> AsyncIterator[bytes]:
        return s3io.read_stream(client, source.spec.bucket, source.key, etag=etag)

    sha = await s3io.sha256_tag(client, source.spec.bucket, source.key) if source.spec.object_tags else None
    yield Source(size=int(head["ContentLength"]), chunks=s3_chunks, sha256=sha, etag=etag)


async def counted(chunks: AsyncIterator[bytes], expect: int, where: str) -> AsyncIterator[bytes]:
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


Transform = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]

# The transforms every copy applies, in order. Empty today; a content transform (PGP,
# compression) is a function from a chunk stream to a chunk stream, added here or passed
# to Pipeline. The SHA-256 and the delivered size are those of the transformed bytes.
TRANSFORMS: tuple[Transform, ...] = ()


class Pipeline:
    """One pass of a source's bytes towards a destination: counted → transforms → hashed.

    Iterate :meth:`chunks` once; afterwards :meth:`sha256` is the digest of what was
    yielded. On a failure path call :meth:`aclose` before dropping it.
    """

    def __init__(self, source: Source, where: str, transforms: Sequence[Transform] = TRANSFORMS) -> None:
        self.source = source
        self.where = where
        self.transforms = tuple(transforms)
        self.hasher = StreamHasher()

    async def chunks(self) -> AsyncIterator[bytes]:
        stream = counted(self.source.chunks(), self.source.size, self.where)
        for transform in self.transforms:
            stream = transform(stream)
        async for chunk in stream:
            await self.hasher.update(chunk)
            yield chunk

    async def sha256(self) -> str:
        return await self.hasher.hexdigest()

    async def aclose(self) -> None:
        await self.hasher.aclose()
