"""Streaming reads and writes over an asyncssh SFTP session.

Reads: requests of the server's maximum read length (OpenSSH: 255 KiB, from the
``limits@openssh.com`` extension), ``in_flight`` of them outstanding at once, yielded in
order. Writes: the same, with the maximum write length. Memory per stream is therefore
at most ``in_flight * request size`` (16 * 255 KiB = about 4 MiB), whatever the file size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import posixpath
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import asyncssh

DEFAULT_REQUEST = 255 * 1024  # what OpenSSH allows when the server tells us nothing
MAX_REQUEST = 4 * 1024 * 1024


WINDOW = 4 * 1024 * 1024


def requests_in_flight(block: int, asked: int) -> int:
    """Servers without the limits extension get 16 KiB requests: keep about the same bytes in
    flight with more of them (as asyncssh does), at most 128, never fewer than asked."""
    return max(1, asked, min(128, WINDOW // block))


def read_size(sftp: asyncssh.SFTPClient) -> int:
    limit = sftp.limits.max_read_len or DEFAULT_REQUEST
    return max(16 * 1024, min(limit, MAX_REQUEST))


def write_size(sftp: asyncssh.SFTPClient) -> int:
    limit = sftp.limits.max_write_len or DEFAULT_REQUEST
    return max(16 * 1024, min(limit, MAX_REQUEST))


async def read_stream(
    sftp: asyncssh.SFTPClient, path: str, *, start: int = 0, in_flight: int = 16, size: int | None = None
) -> AsyncIterator[bytes]:
    """Yield the file's bytes from ``start`` to its end, in order, several reads in flight.

    The end is where the server says EOF, so the caller checks the count against the size it
    expected. With ``size`` (from a stat), no read is sent past it except one that confirms
    the end (a read past EOF that is later cancelled leaves asyncssh logging an unretrieved
    EOF error); bytes found beyond ``size`` are still yielded, so a grown file is noticed.
    """
    block = read_size(sftp)
    in_flight = requests_in_flight(block, in_flight)
    if size is None:
        size = (await sftp.stat(path)).size or 0
    # block_size=0: each read() below is one SFTP read request, without asyncssh's parallel
    # reader around it (a task and a wait per call: most of a small file's loop time).
    async with sftp.open(path, "rb", block_size=0) as f:
        offset = start
        pending: deque[asyncio.Future[bytes]] = deque()
        try:
            while offset < size or pending:
                while offset < size and len(pending) < max(1, in_flight):
                    length = min(block, size - offset)
                    pending.append(asyncio.ensure_future(_read_block(f, length, offset)))
                    offset += length
                data = await pending.popleft()
                if data:
                    yield data
            while True:  # confirm EOF; follow a file that grew (the caller's count notices)
                data = await _read_block(f, block, offset)
                if not data:
                    return
                offset += len(data)
                yield data
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task


async def _read_block(f: asyncssh.SFTPClientFile, length: int, offset: int) -> bytes:
    """``length`` bytes at ``offset``, fewer only at the end of the file. A server may answer
    a read with fewer bytes than asked before the end (the protocol allows it): the rest is
    asked for at once, so blocks stay contiguous."""
    # asyncssh types read() as str; a file opened "rb" returns bytes.
    data = cast(bytes, await f.read(length, offset))
    if not data or len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = cast(bytes, await f.read(length - got, offset + got))
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class SftpWriter:
    """Writes a stream to one open remote file, ``in_flight`` write requests outstanding."""

    def __init__(self, f: asyncssh.SFTPClientFile, *, block: int, in_flight: int) -> None:
        self._f = f
        self._block = block
        self._sem = asyncio.Semaphore(requests_in_flight(block, in_flight))
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None
        self.offset = 0

    async def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for i in range(0, len(view), self._block):
            if self._error is not None:
                raise self._error
            piece = bytes(view[i : i + self._block])
            await self._sem.acquire()
            task = asyncio.ensure_future(self._write_one(piece, self.offset))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self.offset += len(piece)

    async def _write_one(self, piece: bytes, offset: int) -> None:
        try:
            await self._f.write(piece, offset)
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            raise
        finally:
            self._sem.release()

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._error is not None:
            raise self._error

    async def abort(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def stat_or_none(sftp: asyncssh.SFTPClient, path: str) -> asyncssh.SFTPAttrs | None:
    try:
        return await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        return None
    except asyncssh.SFTPError as exc:
        if exc.code in (asyncssh.FX_NO_SUCH_FILE, asyncssh.FX_NO_SUCH_PATH):
            return None
        raise


async def remove_quietly(sftp: asyncssh.SFTPClient, path: str) -> bool:
    """Remove ``path`` if it exists; True if it is gone now."""
    try:
        await sftp.remove(path)
        return True
    except asyncssh.SFTPError as exc:
        return exc.code in (asyncssh.FX_NO_SUCH_FILE, asyncssh.FX_NO_SUCH_PATH)


def part_path(path: str, transfer_id: str, tag: str = "") -> str:
    """``/dir/NAME`` → ``/dir/.ferry-<transfer id>[.<tag>].part`` (same folder, so the rename
    is atomic). The name does not contain NAME, so it stays short whatever NAME is: a
    255-byte destination name (the usual file-system limit) is legal and must be
    deliverable. The transfer id ties the file to its transfer (and so to NAME, which the
    transfer row holds). The tag (the transfer service passes its claim token) gives each
    claim its own temporary file: a paused worker that wakes up writes only to its own
    file, never into another claim's upload or the delivered file."""
    folder = posixpath.dirname(path)
    suffix = f".{tag}" if tag else ""
    return posixpath.join(folder, f".ferry-{transfer_id}{suffix}.part")


def legacy_part_path(path: str, transfer_id: str, tag: str = "") -> str:
    """The previous release's temporary name, ``/dir/.NAME.<transfer id>[.<tag>].part``:
    still removed by cleanup, for the files a worker of that release left behind."""
    folder, name = posixpath.split(path)
    suffix = f".{tag}" if tag else ""
    return posixpath.join(folder, f".{name}.{transfer_id}{suffix}.part")


async def hash_remote(sftp: asyncssh.SFTPClient, path: str, *, in_flight: int = 16) -> tuple[str, int]:
    """SHA-256 (hex) and size of a remote file, read back in a stream."""
    h = hashlib.sha256()
    n = 0
    async for chunk in read_stream(sftp, path, in_flight=in_flight):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n
