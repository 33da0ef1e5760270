"""The connection pool against the real sshd: never more than max_connections, idle ones
closed, broken ones replaced, callable from synchronous threads."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from engine import runtime
from engine.copy import copy
from engine.pool import ConnectionPool, get_pool
from tests.engine.conftest import make_sftp_spec, payload, s3_loc, sftp_loc
from tests.sockets import established


def test_pool_never_opens_more_than_max_connections(sshd, s3spec, folder):
    spec = make_sftp_spec(sshd, max_connections=2)
    for i in range(8):
        (folder / f"f{i}").write_bytes(payload(2 * 1024 * 1024, seed=i))
    peak_tcp = 0
    stop = threading.Event()

    def watch():
        nonlocal peak_tcp
        while not stop.is_set():
            peak_tcp = max(peak_tcp, established(sshd.port, side="client"))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        # Eight synchronous callers at once (as eight Celery threads would be).
        with ThreadPoolExecutor(8) as threads:
            results = list(
                threads.map(
                    lambda i: copy(sftp_loc(spec, folder / f"f{i}"), s3_loc(s3spec, f"f{i}"), transfer_id=f"p{i}"),
                    range(8),
                )
            )
    finally:
        stop.set()
        watcher.join()
    assert [r.outcome for r in results] == ["delivered"] * 8
    pool = get_pool()
    assert pool.peak_count(spec.pool_key) == 2
    assert 1 <= peak_tcp <= 2
    assert pool.opened_total(spec.pool_key) == 2  # reused, not reopened


def test_idle_connections_close_and_broken_ones_are_replaced(sshd):
    spec = make_sftp_spec(sshd, max_connections=1)
    pool = ConnectionPool(idle_timeout=60)

    async def scenario():
        async with pool.session(spec) as s:
            await s.sftp.listdir("/")
        assert pool.open_count(spec.pool_key) == 1
        # The server drops the idle connection: the next lease notices and opens another.
        pool.sessions(spec.pool_key)[0].conn.abort()
        await asyncio.sleep(0.1)
        async with pool.session(spec) as s:
            await s.sftp.listdir("/")
        assert pool.opened_total(spec.pool_key) == 2
        assert pool.open_count(spec.pool_key) == 1
        closed = await pool.close_idle(older_than=0)
        assert closed == 1
        assert pool.open_count(spec.pool_key) == 0

    runtime.run(scenario(), timeout=30)


def test_idle_reaper_closes_connections_on_its_own(sshd):
    spec = make_sftp_spec(sshd)
    pool = ConnectionPool(idle_timeout=0.5)

    async def scenario():
        async with pool.session(spec) as s:
            await s.sftp.listdir("/")
        assert pool.open_count(spec.pool_key) == 1
        await asyncio.sleep(2)
        return pool.open_count(spec.pool_key)

    assert runtime.run(scenario(), timeout=30) == 0


def test_a_new_config_version_gets_its_own_connections(sshd):
    v1 = make_sftp_spec(sshd, endpoint_id="same", version=1, max_connections=1)
    v2 = make_sftp_spec(sshd, endpoint_id="same", version=2, max_connections=1)
    pool = ConnectionPool()

    async def scenario():
        async with pool.session(v1) as a, pool.session(v2) as b:  # would deadlock if keyed by id alone
            assert a is not b
        await pool.close_all()

    runtime.run(scenario(), timeout=30)


def test_waiters_get_a_connection_when_one_is_released(sshd):
    spec = make_sftp_spec(sshd, max_connections=1)
    pool = ConnectionPool()
    order = []

    async def user(name, hold):
        async with pool.session(spec) as s:
            order.append(name)
            await s.sftp.listdir("/")
            await asyncio.sleep(hold)

    async def scenario():
        await asyncio.gather(user("a", 0.3), user("b", 0), user("c", 0))
        assert pool.peak_count(spec.pool_key) == 1
        await pool.close_all()

    runtime.run(scenario(), timeout=30)
    assert sorted(order) == ["a", "b", "c"]
