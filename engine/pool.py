"""The per-process SFTP connection pool.

Keyed by ``spec.pool_key`` (endpoint id + config version: a changed endpoint or rotated
credential gets fresh connections, old ones drain and close idle). At most
``spec.max_connections`` connections per key are open at any moment (the customer's server
sets that limit, and OpenSSH's MaxStartups/MaxSessions refuse more); a caller past the
limit waits for one to be released. Idle connections close after ``idle_timeout`` seconds;
a connection found closed, or released after a connection-level error, is discarded and a
new one is opened on the next request.

The pool lives on the engine loop (``runtime``): all its methods run there. Synchronous
callers go through ``runtime.run``.

**Fleet-wide slots.** The per-key limit holds in one process only. A process that installs
a :class:`SlotGate` (the workers do: ``workers/slots.py``) also takes one of the endpoint's
``max_connections`` fleet-wide slots before it opens a connection, and gives it back when
the connection closes; a connection whose slot was lost (not renewed in time, taken over)
is closed instead of reused. No slot is free: the gate raises
:class:`SlotsBusy` and nothing is dialled. Idle connections holding a slot close after the
gate's ``idle_seconds`` (short), so a slot parked in one process does not starve the others.
Each connection also carries its share of the endpoint's bandwidth cap (``throttle``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import asyncssh

from engine import runtime, sftp_connect
from engine.errors import TransferError, TransientError, classify, opening
from engine.spec import SftpSpec
from engine.throttle import Throttle, share

PoolKey = tuple[str, int]  # SftpSpec.pool_key: endpoint id, config version

SLOT_WAIT_CODE = "connection_slot_wait"


class SlotsBusy(TransientError):
    """Every fleet-wide connection slot of the endpoint is held: nothing was dialled. The
    caller waits (a transfer goes back to ``failed`` without spending an attempt)."""

    code = SLOT_WAIT_CODE


@dataclass(eq=False)
class SlotTicket:
    """One fleet-wide connection slot held by this process; ``lost`` once a renewal found
    it taken (the connection is then closed, never reused)."""

    endpoint_id: str
    slot: int
    holder: str
    lost: bool = False


class SlotGate(Protocol):
    """Fleet-wide connection slots (blocking calls: the pool runs them on threads)."""

    idle_seconds: float

    def acquire(self, spec: SftpSpec, *, wait: float | None = None) -> SlotTicket:
        """A slot of ``spec``'s endpoint, or :class:`SlotsBusy` after a short wait (``wait``
        seconds when given: 0 tries once)."""
        ...

    def release(self, ticket: SlotTicket) -> None:
        """Give the slot back (an error is harmless: an unrenewed slot expires)."""
        ...


@dataclass(eq=False)
class SftpSession:
    """One SSH connection with its SFTP channel. Several requests may share it at once."""

    key: PoolKey
    conn: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient
    last_used: float = field(default_factory=time.monotonic)
    broken: bool = False
    ticket: SlotTicket | None = None  # the fleet-wide slot this connection holds, if gated
    throttle: Throttle | None = None  # this connection's share of the bandwidth cap

    @property
    def closed(self) -> bool:
        return self.broken or self.conn.is_closed() or (self.ticket is not None and self.ticket.lost)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sftp.exit()
        with contextlib.suppress(Exception):
            self.conn.close()
            await asyncio.wait_for(self.conn.wait_closed(), 5)


@dataclass
class _Slot:
    idle: list[SftpSession] = field(default_factory=list)
    open: int = 0
    peak: int = 0
    opened_total: int = 0
    live: set[SftpSession] = field(default_factory=set)
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)


class ConnectionPool:
    def __init__(self, *, idle_timeout: float = 60.0, connect_timeout: float = 15.0) -> None:
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._slots: dict[PoolKey, _Slot] = {}
        self._reaper: asyncio.Task[None] | None = None

    # --- observability (tests, metrics) ---------------------------------------------------

    def open_count(self, key: PoolKey | None = None) -> int:
        """Connections open now, for one key or all."""
        if key is not None:
            return self._slots[key].open if key in self._slots else 0
        return sum(s.open for s in self._slots.values())

    def peak_count(self, key: PoolKey) -> int:
        """The most connections ever open at once for ``key``."""
        return self._slots[key].peak if key in self._slots else 0

    def opened_total(self, key: PoolKey) -> int:
        """How many connections were ever opened for ``key`` (a replaced one counts twice)."""
        return self._slots[key].opened_total if key in self._slots else 0

    def sessions(self, key: PoolKey) -> list[SftpSession]:
        """Every open session of ``key``, leased or idle (fault-injection tests)."""
        return list(self._slots[key].live) if key in self._slots else []

    # --- use ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def session(self, spec: SftpSpec) -> AsyncIterator[SftpSession]:
        """Lease a connection for ``spec`` (exclusive until the block ends).

        A connection-level failure inside the block (lost connection, timeout) marks it
        broken so it is closed rather than handed to the next caller; SFTP status errors
        (no such file, permission denied) leave it usable.
        """
        session = await self.acquire(spec)
        async with self._lent(session):
            yield session

    @contextlib.asynccontextmanager
    async def spare_session(self, spec: SftpSpec) -> AsyncIterator[SftpSession | None]:
        """Like :meth:`session`, but only a connection to be had without waiting (None
        otherwise): an idle one, or a new one while the process is under the endpoint's
        ``max_connections`` and, with a gate, a fleet-wide slot is free right now. For the
        extra streams of one big file (``engine.ranged``): they count like any connection
        and never queue behind other transfers'. A failure to dial also gives None."""
        try:
            session = await self._acquire(spec, wait=False)
        except TransferError:
            session = None
        if session is None:
            yield None
            return
        async with self._lent(session):
            yield session

    @contextlib.asynccontextmanager
    async def _lent(self, session: SftpSession) -> AsyncIterator[None]:
        """While a caller holds ``session``: a connection-level failure marks it broken;
        whatever happens, it goes back to the pool."""
        try:
            yield
        except BaseException as exc:
            if _breaks_session(exc):
                session.broken = True
            raise
        finally:
            await self.release(session)

    async def acquire(self, spec: SftpSpec) -> SftpSession:
        session = await self._acquire(spec, wait=True)
        assert session is not None  # waiting, it always gets one (or raises)
        return session

    async def _acquire(self, spec: SftpSpec, *, wait: bool) -> SftpSession | None:
        key = spec.pool_key
        slot = self._slots.setdefault(key, _Slot())
        self._start_reaper()
        async with slot.cond:
            while True:
                while slot.idle:
                    session = slot.idle.pop()
                    if session.closed:
                        await self._discard(slot, session)
                        continue
                    session.last_used = time.monotonic()
                    return session
                if slot.open < max(1, spec.max_connections):
                    slot.open += 1
                    slot.peak = max(slot.peak, slot.open)
                    break
                if not wait:
                    return None
                await slot.cond.wait()
        ticket: SlotTicket | None = None
        try:
            gate = _gate
            if gate is not None:
                if wait:
                    ticket = await runtime.in_thread(gate.acquire, spec)
                else:
                    ticket = await runtime.in_thread(gate.acquire, spec, wait=0.0)
            conn = await sftp_connect.connect(spec, timeout=self.connect_timeout)
            try:
                sftp = await conn.start_sftp_client()
            except BaseException:
                conn.close()
                raise
        except BaseException as exc:
            async with slot.cond:
                slot.open -= 1
                slot.cond.notify()
            if ticket is not None:
                await _release_ticket(ticket)
            if isinstance(exc, Exception):
                err = opening(classify(exc, context=f"opening SFTP to {spec.host}:{spec.port}"), spec.endpoint_id)
                raise err from exc
            raise
        slot.opened_total += 1
        rate = share(spec.max_bytes_per_second, spec.max_connections)
        session = SftpSession(key=key, conn=conn, sftp=sftp, ticket=ticket, throttle=Throttle(rate) if rate else None)
        slot.live.add(session)
        return session

    async def release(self, session: SftpSession) -> None:
        slot = self._slots[session.key]
        if session.closed:
            await self._discard(slot, session, notify=True)
            return
        session.last_used = time.monotonic()
        async with slot.cond:
            slot.idle.append(session)
            slot.cond.notify()

    async def _discard(self, slot: _Slot, session: SftpSession, notify: bool = False) -> None:
        slot.live.discard(session)
        await session.close()
        await _release_ticket(session.ticket)
        if notify:
            async with slot.cond:
                slot.open -= 1
                slot.cond.notify()
        else:  # caller holds the condition's lock
            slot.open -= 1

    async def close_idle(self, older_than: float | None = None) -> int:
        """Close idle connections unused for ``older_than`` seconds (default: idle_timeout)."""
        limit = self.idle_timeout if older_than is None else older_than
        now = time.monotonic()
        closed = 0
        for slot in list(self._slots.values()):
            async with slot.cond:
                keep = []
                for session in slot.idle:
                    # A connection holding a fleet-wide slot idles only briefly.
                    held = min(limit, _gate.idle_seconds) if session.ticket is not None and _gate else limit
                    if session.closed or now - session.last_used >= held:
                        slot.live.discard(session)
                        await session.close()
                        await _release_ticket(session.ticket)
                        slot.open -= 1
                        closed += 1
                    else:
                        keep.append(session)
                slot.idle = keep
                slot.cond.notify_all()
        return closed

    async def close_all(self) -> None:
        await self.close_idle(older_than=0)

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        while True:
            idle = min(self.idle_timeout, _gate.idle_seconds) if _gate is not None else self.idle_timeout
            await asyncio.sleep(max(0.5, idle / 2))
            await self.close_idle()


async def _release_ticket(ticket: SlotTicket | None) -> None:
    """Give a fleet-wide slot back, off the loop; a failure only leaves it to expire."""
    gate = _gate
    if ticket is None or gate is None:
        return
    with contextlib.suppress(Exception):
        await runtime.in_thread(gate.release, ticket)


# TransferError codes raised inside a session that say nothing about the connection itself.
_SESSION_SAFE_CODES = {
    "source_missing",
    "permission_denied",
    "destination_exists",
    "checksum_mismatch",
    "size_mismatch",
}


def _breaks_session(exc: BaseException) -> bool:
    """Whether an error inside a lease leaves the connection in doubt (closed, or requests
    still outstanding after a timeout or cancellation)."""
    if isinstance(exc, asyncssh.SFTPError):
        return exc.code in (asyncssh.FX_CONNECTION_LOST, asyncssh.FX_NO_CONNECTION)
    if isinstance(exc, TransferError):
        return exc.code not in _SESSION_SAFE_CODES and exc.transient
    return isinstance(exc, asyncssh.Error | OSError | TimeoutError | asyncio.CancelledError)


_pool: ConnectionPool | None = None
_gate: SlotGate | None = None


def set_slot_gate(gate: SlotGate | None) -> None:
    """Install (or remove) the fleet-wide slot gate of this process (``workers/slots.py``)."""
    global _gate
    _gate = gate


def _forget_after_fork() -> None:
    global _pool
    _pool = None  # the parent's connections belong to the parent's loop


os.register_at_fork(after_in_child=_forget_after_fork)


def get_pool() -> ConnectionPool:
    """The process-wide pool (used from the engine loop)."""
    global _pool
    if _pool is None:
        _pool = ConnectionPool()
    return _pool


def reset_pool(pool: ConnectionPool | None = None) -> None:
    """Replace the process-wide pool (tests). Close the old one first with ``close_all``."""
    global _pool
    _pool = pool
