"""SHA-256 of a stream, computed off the event loop.

The loop thread also decrypts SSH packets and drives the SFTP pipeline; hashing there
(about 0.5 s of CPU per GiB) would stall it. hashlib releases the GIL on large buffers,
so a worker thread hashes in parallel. Chunks are batched to about 1 MiB per hand-off (so
the thread hop costs little) and at most one batch is outstanding, which keeps the order
and bounds the memory held for hashing to about 2 MiB.

A last batch smaller than ``INLINE`` (a small file's whole content, typically) is hashed
on the loop instead: a thread hop costs more than hashing a few KiB (about 10 µs for
4 KiB), and small files are where that per-file overhead shows.
"""

from __future__ import annotations

import asyncio
import hashlib

from engine import runtime

BATCH = 1024 * 1024
INLINE = 64 * 1024


class StreamHasher:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._batch: list[bytes] = []
        self._batch_len = 0
        self._pending: asyncio.Future[None] | None = None

    def _update_all(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._hash.update(chunk)

    async def update(self, chunk: bytes) -> None:
        self._batch.append(chunk)
        self._batch_len += len(chunk)
        if self._batch_len >= BATCH:
            await self._hand_off()

    async def _hand_off(self) -> None:
        if self._pending is not None:
            await self._pending
            self._pending = None
        if self._batch:
            batch, self._batch, self._batch_len = self._batch, [], 0
            self._pending = asyncio.get_running_loop().run_in_executor(runtime.executor(), self._update_all, batch)

    async def hexdigest(self) -> str:
        return (await self._final()).hexdigest()

    async def digest(self) -> bytes:
        """The raw 32-byte digest (what S3's ``ChecksumSHA256`` carries, base64-encoded)."""
        return (await self._final()).digest()

    async def _final(self) -> hashlib._Hash:
        if self._pending is None and self._batch_len < INLINE:
            self._update_all(self._batch)
            self._batch, self._batch_len = [], 0
            return self._hash
        await self._hand_off()
        if self._pending is not None:
            await self._pending
            self._pending = None
        return self._hash

    async def aclose(self) -> None:
        """Wait for an outstanding batch (call on failure paths before dropping the hasher)."""
        if self._pending is not None:
            try:
                await self._pending
            finally:
                self._pending = None
