"""Reading one big SFTP file over several connections at once (ranged streams).

Like rclone's multi-thread streams: the file is cut into segments of ``SEGMENT`` bytes,
and each of up to ``streams`` connections (the copy's own, plus spare ones the pool hands
out without waiting: they count against the endpoint's ``max_connections`` and fleet-wide
slots like any other, docs/execution.md) takes the next segment nobody has taken and reads
it with pipelined requests. One OpenSSH ``sshd`` process serves each connection, so the
server's reading and encrypting spreads over its cores instead of one.

The segments are yielded **in file order** from a reorder buffer of at most ``ahead``
segments: everything downstream (the size count, the one in-order SHA-256 of the whole
file, the S3 parts, the ``.part`` file) sees the very stream one connection would give,
and memory stays ``ahead * SEGMENT`` plus the requests in flight, whatever the file size.
A failure on any connection fails the stream (the copy's retry resumes as usual).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from typing import cast

from engine import sftpio
from engine.pool import SftpSession, get_pool
from engine.spec import SftpSpec

log = logging.getLogger("ferry.engine")

# What one connection reads at a time: its 16 requests in flight cover it in one go, and the
# reorder buffer (streams + 1 segments) stays small.
SEGMENT = 4 * 1024 * 1024


def segments(size: int, segment: int = SEGMENT) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``size`` bytes in order, each at most ``segment``."""
    return [(start, min(size, start + segment)) for start in range(0, size, segment)]


class _Reorder:
    """Which segment each stream reads next, and the finished ones waiting their turn."""

    def __init__(self, count: int, ahead: int) -> None:
        self.count = count
        self.ahead = max(1, ahead)
        self.next = 0  # the first segment nobody has taken
        self.consumed = 0  # segments already yielded
        self.done: dict[int, asyncio.Future[tuple[list[bytes], bool]]] = {}
        self.cond = asyncio.Condition()
        self.error: BaseException | None = None

    def future(self, index: int) -> asyncio.Future[tuple[list[bytes], bool]]:
        found = self.done.get(index)
        if found is None:
            found = self.done[index] = asyncio.get_running_loop().create_future()
            if self.error is not None:
                found.set_exception(self.error)
        return found

    async def take(self) -> int | None:
        """The next segment to read, once it is within ``ahead`` of the consumer; None at the end."""
        async with self.cond:
            while self.next < self.count and self.next >= self.consumed + self.ahead and self.error is None:
                await self.cond.wait()
            if self.next >= self.count or self.error is not None:
                return None
            index, self.next = self.next, self.next + 1
            return index

    async def yielded(self) -> None:
        async with self.cond:
            self.consumed += 1
            self.cond.notify_all()

    async def fail(self, exc: BaseException) -> None:
        """Every segment not yet read fails with ``exc`` (the consumer raises it in order)."""
        async with self.cond:
            if self.error is None:
                self.error = exc
            for future in self.done.values():
                if not future.done():
                    future.set_exception(exc)
            self.cond.notify_all()


async def _stream(
    session: SftpSession, path: str, order: _Reorder, spans: list[tuple[int, int]], in_flight: int
) -> None:
    """One connection's worker: read the segments it takes, pipelined, into the reorder buffer."""
    sftp = session.sftp
    block = sftpio.read_size(sftp)
    in_flight = sftpio.requests_in_flight(block, in_flight)
    try:
        async with sftp.open(path, "rb", block_size=block, max_requests=1) as f:
            while (index := await order.take()) is not None:
                start, end = spans[index]
                chunks: list[bytes] = []
                pending: deque[tuple[asyncio.Future[bytes], int]] = deque()
                offset, short = start, False
                try:
                    while (offset < end and not short) or pending:
                        while offset < end and not short and len(pending) < in_flight:
                            length = min(block, end - offset)
                            read = cast("Awaitable[bytes]", f.read(length, offset))
                            pending.append((asyncio.ensure_future(read), length))
                            offset += length
                        future, asked = pending.popleft()
                        data = await future
                        if short:
                            continue  # past a short read: the bytes after it do not follow on
                        if session.throttle is not None:
                            await session.throttle.take(len(data))
                        if data:
                            chunks.append(data)
                        # Shorter than asked: the file ended early (it shrank while read).
                        short = len(data) < asked
                finally:
                    for future, _ in pending:
                        future.cancel()
                    for future, _ in pending:
                        with contextlib.suppress(BaseException):
                            await future
                finished = order.future(index)
                if not finished.done():  # else another stream failed first
                    finished.set_result((chunks, short))
    except BaseException as exc:
        await order.fail(exc)
        raise


async def read_ranged(
    session: SftpSession,
    spec: SftpSpec,
    path: str,
    size: int,
    *,
    streams: int,
    in_flight: int = 16,
    segment: int = SEGMENT,
) -> AsyncIterator[bytes]:
    """Yield the file's bytes in order, read over ``session`` and up to ``streams - 1`` spare
    connections of ``spec``'s pool, each one bandwidth-capped by its own share.

    A big file takes at most half of the endpoint's ``max_connections`` (:func:`stream_count`),
    so the other transfers of the endpoint still find connections. Ends where ``size``
    ends, after a confirming read past it (bytes found there are still yielded, so the
    caller's count notices a file that grew); a file that shrank ends early at the short
    read. Throttling is done here, per connection: do not wrap the result in the session's
    throttle again.
    """
    spans = segments(size, segment)
    async with contextlib.AsyncExitStack() as stack:
        sessions = [session]
        for _ in range(stream_count(streams, spec.max_connections) - 1):
            spare = await stack.enter_async_context(get_pool().spare_session(spec))
            if spare is None:
                break
            sessions.append(spare)
        # One segment per stream being read, and one more read ahead of the consumer.
        order = _Reorder(len(spans), ahead=len(sessions) + 1)
        log.debug("ranged read", extra={"path": path, "streams": len(sessions), "segments": len(spans)})
        workers = [asyncio.ensure_future(_stream(s, path, order, spans, in_flight)) for s in sessions]
        try:
            for index in range(len(spans)):
                chunks, short = await order.future(index)
                del order.done[index]
                for chunk in chunks:
                    yield chunk
                del chunks
                if short:
                    return
                await order.yielded()
            # Confirm the end as one connection would (a file that grew is noticed).
            async with session.sftp.open(path, "rb") as f:
                offset = size
                while data := cast(bytes, await f.read(sftpio.read_size(session.sftp), offset)):
                    offset += len(data)
                    yield data
        finally:
            for worker in workers:
                worker.cancel()
            for worker in workers:
                with contextlib.suppress(BaseException):
                    await worker


def stream_count(streams: int, max_connections: int) -> int:
    """How many connections one file may read over: ``streams``, but at most half of the
    endpoint's ``max_connections`` (at least one), so one big file never takes them all."""
    return max(1, min(streams, max_connections // 2))


def usable(size: int, streams: int, min_size: int) -> bool:
    """Whether a file of ``size`` bytes is read over ranged streams (big enough, more than one)."""
    return streams > 1 and size >= max(min_size, 2 * SEGMENT)


__all__ = ["SEGMENT", "read_ranged", "segments", "stream_count", "usable"]
