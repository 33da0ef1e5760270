"""One asyncio event loop per process, on its own thread, for synchronous callers.

Celery tasks are synchronous; the engine is asyncio (asyncssh). Every entry point submits
its coroutine here with ``run()``, so all SFTP connections of the process live on one loop
and the connection pool can share them between tasks. boto3 calls are blocking: the engine
runs them on ``executor()`` (a bounded thread pool), never on the loop itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_executor: ThreadPoolExecutor | None = None
_pid: int | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The process's engine loop, started on first use (and again after a fork)."""
    global _loop, _thread, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or (_thread is not None and not _thread.is_alive()):
            ready = threading.Event()
            new_loop = asyncio.new_event_loop()

            def serve() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                new_loop.run_forever()

            _thread = threading.Thread(target=serve, name="ferry-engine-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = new_loop
            _pid = os.getpid()
        return _loop


def _forget_after_fork() -> None:
    # A forked child (Celery prefork) has no loop thread and must not share the parent's
    # sockets: it starts its own loop, threads and pool on first use.
    global _loop, _thread, _executor, _pid
    _loop = _thread = _executor = _pid = None


os.register_at_fork(after_in_child=_forget_after_fork)


def executor() -> ThreadPoolExecutor:
    """Threads for blocking boto3 calls (part uploads, GET body reads, hashing big parts)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ferry-engine-io")
        return _executor


async def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call on the engine's thread pool and await it (with the caller's
    context variables, so log lines there keep their transfer context)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(executor(), lambda: context.run(fn, *args, **kwargs))


async def _in_context(coro: Coroutine[Any, Any, T], context: contextvars.Context) -> T:
    # The task runs in the loop thread's context; carry the caller's variables over (the
    # log context: tenant, route, transfer, region, partition, attempt).
    for var, value in context.items():
        var.set(value)
    return await coro


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the engine loop and wait for its result (from any non-loop thread).

    On timeout the coroutine is cancelled (so its cleanup runs) and TimeoutError raised.
    """
    engine_loop = loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is engine_loop:
        coro.close()
        raise RuntimeError("runtime.run() called from the engine loop itself; await the coroutine instead")
    future = asyncio.run_coroutine_threadsafe(_in_context(coro, contextvars.copy_context()), engine_loop)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise
    except BaseException:
        # KeyboardInterrupt / task revocation in the caller: don't leave the work running.
        if not future.done():
            future.cancel()
        raise
