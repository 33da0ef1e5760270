"""Copying many small files of one route in one process, for the benchmarks.

The engine's face copies one file; the worker batches with ``SharedSessions`` on threads
(``workers.runner.run_batch``). The benchmarks measure the engine alone, in one process
without Django, so they batch on the engine loop: one pooled connection per SFTP endpoint
shared by ``concurrency`` copies in flight (SFTP multiplexes requests on one channel).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from engine import runtime
from engine.copy import CopyOptions, CopyResult, acopy
from engine.errors import TransferError
from engine.locations import Location, S3Location, SftpLocation
from engine.plumbing import Sessions
from engine.pool import get_pool
from engine.spec import SftpSpec


async def acopy_many(
    items: list[tuple[Location, Location, str]],
    *,
    options: CopyOptions = CopyOptions(),
    concurrency: int = 8,
    staging: Callable[[str], S3Location] | None = None,
) -> list[CopyResult | TransferError]:
    """Copy ``items`` (source, destination, transfer id); one result, or the TransferError
    it failed with, per item, in order. ``staging`` maps a transfer id to its staging
    location, for SFTP → SFTP batches."""
    sessions = Sessions()
    sem = asyncio.Semaphore(max(1, concurrency))
    specs: dict[tuple[str, int], SftpSpec] = {}
    for src, dst, _ in items:
        for loc in (src, dst):
            if isinstance(loc, SftpLocation):
                specs[loc.spec.pool_key] = loc.spec
    async with contextlib.AsyncExitStack() as stack:
        for key, spec in specs.items():
            try:
                sessions.shared[key] = await stack.enter_async_context(get_pool().session(spec))
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
                        sessions=sessions,
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
    """:func:`acopy_many` from a plain thread."""
    return runtime.run(acopy_many(items, options=options, concurrency=concurrency, staging=staging))
