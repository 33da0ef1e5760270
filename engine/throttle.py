"""Bandwidth shaping: a token bucket per SFTP connection.

An endpoint's ``max_bytes_per_second`` is shared by the connections Ferry may hold to it
fleet-wide (``max_connections``, enforced by the connection slots, docs/execution.md): each
connection gets :func:`share` of it, so however the slots are spread over workers and
regions the endpoint never sees more than its cap. The bucket is aiolimiter's leaky bucket
(a maintained library, docs/engine.md "Bandwidth caps"); this module only sizes it and
feeds it chunks larger than its capacity in pieces.

Pure engine code: the caller (the control plane, through ``SftpSpec``) passes the rate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiolimiter import AsyncLimiter

# The bucket holds this many seconds' worth of bytes: a short burst after an idle moment,
# small enough that a 1 s window never sees much more than the rate.
BURST_SECONDS = 0.25


def share(max_bytes_per_second: int | None, max_connections: int) -> float | None:
    """The rate of one connection: the endpoint's cap divided by its connection slots
    (None: no cap)."""
    if not max_bytes_per_second:
        return None
    return max_bytes_per_second / max(1, max_connections)


class Throttle:
    """Lets ``rate`` bytes per second through, on the event loop that first uses it."""

    def __init__(self, rate: float, *, burst_seconds: float = BURST_SECONDS) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, rate * burst_seconds)
        self._bucket = AsyncLimiter(self.capacity, time_period=burst_seconds)

    async def take(self, n: int) -> None:
        """Wait until ``n`` more bytes may go (any size: larger than the bucket in pieces)."""
        while n > 0:
            piece = min(float(n), self.capacity)
            await self._bucket.acquire(piece)
            n -= int(piece)


async def throttled(chunks: AsyncIterator[bytes], throttle: Throttle | None) -> AsyncIterator[bytes]:
    """Pass ``chunks`` through, each one after the throttle let its bytes go."""
    if throttle is None:
        async for chunk in chunks:
            yield chunk
        return
    async for chunk in chunks:
        await throttle.take(len(chunk))
        yield chunk
