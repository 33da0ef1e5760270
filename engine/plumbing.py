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

from engine import confine, ranged, runtime, s3client, s3io, sftpio
from engine.errors import ChecksumMismatch, PermanentError, SizeMismatch, SourceMissing
from engine.hashing import StreamHasher
from engine.locations import Location, S3Location, SftpLocation
from engine.pool import SftpSession, get_pool
from engine.spec import SftpSpec
from engine.throttle import throttled

CONFLICT_POLICIES = ("fail", "overwrite", "skip")
# A source at most this large is a small file: one PutObject, read whole before it is sent.
SMALL_SOURCE = 1024 * 1024

# A content transform: a function from a chunk stream to a chunk stream.
Transform = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]
VERIFY_MODES = ("size", "reread")


@dataclass(frozen=True)
class CopyOptions:
    on_conflict: str = "fail"  # "fail" | "overwrite" | "skip"  ("rename" is decided by the caller)
    verify: str = "size"  # "size" | "reread"
    always_stage: bool = False
    part_size: int | None = None  # None → max(8 MiB, ceil(size / 9000))
    parts_in_flight: int = 4
    sftp_requests_in_flight: int = 16
    # A big SFTP source is read over up to this many connections at once (``engine.ranged``;
    # the extra ones only when the pool has them free, within the endpoint's
    # max_connections): files of at least ``sftp_streams_min_size`` bytes. 1 (the default):
    # one stream. On the 2-core loopback benchmark machine 4 streams lost to 1 (the extra
    # sshd processes compete with the client for the cores, bench/analysis.md); they are
    # for servers across a network, where one stream is bound by the round trip.
    sftp_streams: int = 1
    sftp_streams_min_size: int = 64 * 1024 * 1024
    part_tag: str = ""  # distinguishes one claim's temporary SFTP file from another's
    # The caller's user metadata for an S3 destination object, as (key, value) pairs (a tuple:
    # the options are frozen). Keys lowercase, sized by the caller to fit S3's 2 KB beside
    # Ferry's own ``ferry-transfer-id``, which always wins. SFTP destinations ignore it.
    metadata: tuple[tuple[str, str], ...] = ()
    # Told (bucket, key, upload id) when a multipart upload is created or adopted, so the
    # caller knows its own uploads (ListMultipartUploads shows no metadata) and can abort
    # the ones it abandons. Runs on the engine's threads; may block.
    upload_started: Callable[[str, str, str], Any] | None = field(default=None, compare=False)
    # Told (SHA-256 hex, size) of the bytes about to be committed, just before
    # ``before_commit``: a retry that finds the commit begun can record them. Must not block.
    about_to_commit: Callable[[str, int], Any] | None = field(default=None, compare=False)
    # Content transforms applied on delivery (``engine.pgp.transforms``), after the source's
    # bytes are counted and hashed. Never applied when staging: a staged copy keeps the
    # source's bytes, so a re-drive transforms again from staging without the source.
    transforms: tuple[Transform, ...] = field(default=(), compare=False)
    # The source's size as the caller last saw it (a route's listing: the transfer's
    # ``bytes_total``). A hint, never the size copied: at most SMALL_SOURCE, to an S3
    # destination that honours If-None-Match, the destination is not looked at before the
    # write (the conditional PutObject settles an occupied one: docs/execution.md).
    source_size: int | None = None

    def __post_init__(self) -> None:
        if self.on_conflict not in CONFLICT_POLICIES:
            raise ValueError(f"on_conflict must be one of {CONFLICT_POLICIES}")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}")
        if self.parts_in_flight < 1 or self.sftp_requests_in_flight < 1 or self.sftp_streams < 1:
            raise ValueError("in-flight limits must be at least 1")


@dataclass(frozen=True)
class CopyResult:
    sha256: str  # hex of the bytes delivered ("" when skipped without reading)
    size: int
    destination: str  # final path or key
    outcome: str  # "delivered" | "already_delivered" | "skipped"
    staged: S3Location | None = None
    # Hex SHA-256 of the bytes read from the source ("" when nothing was read); equal to
    # ``sha256`` unless a transform changed the bytes.
    source_sha256: str = ""


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

            size = attrs.size or 0

            def sftp_chunks() -> AsyncIterator[bytes]:
                if ranged.usable(size, options.sftp_streams, options.sftp_streams_min_size):
                    # Throttled per connection inside, each by its own share.
                    return ranged.read_ranged(
                        session,
                        source.spec,
                        path,
                        size,
                        streams=options.sftp_streams,
                        in_flight=options.sftp_requests_in_flight,
                    )
                stream = sftpio.read_stream(session.sftp, path, in_flight=options.sftp_requests_in_flight, size=size)
                return throttled(stream, session.throttle)  # the connection's bandwidth share

            yield Source(size=size, chunks=sftp_chunks)
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


# The transforms every copy applies, in order, before a copy's own (``CopyOptions.transforms``).
# Empty: a content transform (PGP, compression) is a function from a chunk stream to a chunk
# stream. The SHA-256 and the delivered size are those of the transformed bytes.
TRANSFORMS: tuple[Transform, ...] = ()


class Pipeline:
    """One pass of a source's bytes towards a destination: counted → (hashed as read →
    transforms) → hashed as delivered.

    Iterate :meth:`chunks` once; afterwards :meth:`sha256` is the digest of what was
    yielded and :meth:`source_sha256` that of what was read. Without transforms both are
    one digest (one SHA-256 pass per byte); with them, each side is hashed once. On a
    failure path call :meth:`aclose` before dropping it.
    """

    def __init__(self, source: Source, where: str, transforms: Sequence[Transform] = ()) -> None:
        self.source = source
        self.where = where
        self.transforms = (*TRANSFORMS, *transforms)
        self.hasher = StreamHasher()
        self.source_hasher = StreamHasher() if self.transforms else self.hasher

    @property
    def transformed(self) -> bool:
        """The delivered bytes differ from the source's (their size is not known before)."""
        return bool(self.transforms)

    async def _read(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in stream:
            await self.source_hasher.update(chunk)
            yield chunk
        # A source whose digest is known (a staging object's tag) is checked here, before the
        # transformed stream ends and so before the destination commits.
        if self.source.sha256 and await self.source_hasher.hexdigest() != self.source.sha256:
            raise ChecksumMismatch(f"{self.where} does not match the SHA-256 recorded when it was staged.")

    async def chunks(self) -> AsyncIterator[bytes]:
        stream = counted(self.source.chunks(), self.source.size, self.where)
        if self.transforms:
            stream = self._read(stream)
        for transform in self.transforms:
            stream = transform(stream)
        async for chunk in stream:
            await self.hasher.update(chunk)
            yield chunk

    async def sha256(self) -> str:
        return await self.hasher.hexdigest()

    async def source_sha256(self) -> str:
        return await self.source_hasher.hexdigest()

    async def aclose(self) -> None:
        await self.hasher.aclose()
        if self.source_hasher is not self.hasher:
            await self.source_hasher.aclose()
