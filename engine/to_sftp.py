"""Copying to an SFTP destination: written to a temporary name, renamed into place.

Atomic delivery (DESIGN §4): the bytes go to ``.ferry-<transfer id>.<claim>.part`` beside the
target, which the plain SFTP rename (it refuses to overwrite) moves into place. A target
that already holds this transfer's bytes counts as ``already_delivered``; another file is
a conflict settled by ``on_conflict``. The source is read through the chunk pipeline
(``plumbing.Pipeline``).

Once ``before_commit`` returned (the caller's commit mark), the ``.part`` is the evidence
of whether the rename happened, so from there on the engine never removes it unless the
target became this transfer's file: a failure leaves it in place (an error known to have
delivered nothing is marked :func:`errors.commit_undone`), and so does ``skipped``. The
caller takes its mark back first and removes the ``.part`` after (docs/execution.md).
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncssh

from engine import sftpio
from engine.errors import ChecksumMismatch, DestinationExists, SizeMismatch, classify, commit_undone
from engine.locations import Location, SftpLocation
from engine.plumbing import CopyOptions, CopyResult, Hook, Pipeline, Progress, Sessions, Source, call_hook, open_source
from engine.pool import SftpSession, get_pool
from engine.throttle import throttled


async def to_sftp(
    sessions: Sessions,
    source: Location,
    dest: SftpLocation,
    *,
    transfer_id: str,
    options: CopyOptions,
    progress: Progress,
    before_commit: Hook | None,
) -> CopyResult:
    part = sftpio.part_path(dest.path, transfer_id, options.part_tag)
    leftover = False  # a .part that still has to be removed
    commit = _Commit()
    try:
        async with sessions.sftp(dest.spec) as session:
            sftp = session.sftp
            try:
                return await _write_and_rename(
                    session,
                    source,
                    dest,
                    part,
                    sessions=sessions,
                    options=options,
                    progress=progress,
                    before_commit=before_commit,
                    commit=commit,
                )
            except BaseException:
                if commit.begun:
                    raise  # the .part is the evidence of an unfinished commit: it stays
                leftover = True
                if not session.closed:
                    with contextlib.suppress(Exception):
                        leftover = not await asyncio.wait_for(sftpio.remove_quietly(sftp, part), 10)
                raise
    finally:
        if leftover:
            # The connection died mid-write: remove the .part over a fresh one (after the
            # dead lease is released, so a max_connections of 1 cannot deadlock).
            await _remove_part_fresh(dest, part)


async def _write_and_rename(
    session: SftpSession,
    source: Location,
    dest: SftpLocation,
    part: str,
    *,
    sessions: Sessions,
    options: CopyOptions,
    progress: Progress,
    before_commit: Hook | None,
    commit: _Commit,
) -> CopyResult:
    sftp = session.sftp
    async with open_source(sessions, source, options) as src:
        existing = await sftpio.stat_or_none(sftp, dest.path)
        if existing is not None:
            settled = await _settle_sftp_precheck(
                sftp, dest, existing, src, options, transformed=bool(options.transforms)
            )
            if settled is not None:
                await sftpio.remove_quietly(sftp, part)  # a stale one from a crashed attempt
                return settled
        pipeline = Pipeline(src, str(source), options.transforms)
        written = 0
        async with sftp.open(part, "wb", block_size=sftpio.write_size(sftp), max_requests=1) as f:
            writer = sftpio.SftpWriter(f, block=sftpio.write_size(sftp), in_flight=options.sftp_requests_in_flight)
            try:
                async for chunk in throttled(pipeline.chunks(), session.throttle):
                    await writer.write(chunk)
                    written += len(chunk)
                    progress(written)
                await writer.flush()
            except BaseException:
                await writer.abort()
                await pipeline.aclose()
                raise
    sha = await pipeline.sha256()
    source_sha = await pipeline.source_sha256()
    if src.sha256 and src.sha256 != source_sha:
        raise ChecksumMismatch(f"{source} does not match the SHA-256 recorded when it was staged.")
    attrs = await sftp.stat(part)
    if attrs.size != written:
        raise SizeMismatch(f"{part} holds {attrs.size} bytes, {written} written.")
    if options.about_to_commit is not None:
        options.about_to_commit(sha, written)
    await call_hook(before_commit)
    commit.begun = before_commit is not None
    outcome = await _rename_into_place(sftp, part, dest, sha, written, options, keep_part=commit.begun)
    progress.finish(written)
    if outcome == "delivered" and options.verify == "reread":
        got, n = await sftpio.hash_remote(sftp, dest.path, in_flight=options.sftp_requests_in_flight)
        if got != sha or n != written:
            # We renamed it there a moment ago: take the bad copy away so a retry can deliver.
            await _take_back(sftp, dest.path, part, keep_part=commit.begun)
            raise commit_undone(ChecksumMismatch(f"{dest.path} reads back with another SHA-256."))
    return CopyResult(sha256=sha, size=written, destination=dest.path, outcome=outcome, source_sha256=source_sha)


class _Commit:
    """Whether ``before_commit`` has returned (the caller's commit mark is in place)."""

    begun = False


async def _take_back(sftp: asyncssh.SFTPClient, path: str, part: str, *, keep_part: bool) -> None:
    """Undo a rename whose file turned out bad. After a commit mark it goes back to the
    ``.part`` name, which stays the evidence that nothing was delivered; if that fails (or
    without a mark) the file is removed."""
    if keep_part:
        try:
            await sftp.rename(path, part)
            return
        except asyncssh.SFTPError:
            pass
    await sftpio.remove_quietly(sftp, path)


async def _remove_part_fresh(dest: SftpLocation, part: str) -> None:
    async def remove() -> None:
        async with get_pool().session(dest.spec) as fresh:
            await sftpio.remove_quietly(fresh.sftp, part)

    # Bounded: inside a batch the pool may be full; a .part left then is removed by the
    # retry, which writes the same name.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(remove(), 20)


async def _settle_sftp_precheck(
    sftp: asyncssh.SFTPClient,
    dest: SftpLocation,
    existing: asyncssh.SFTPAttrs,
    src: Source,
    options: CopyOptions,
    *,
    transformed: bool = False,
) -> CopyResult | None:
    """Before writing: a target that cannot be ours (other size) meets the policy now; one of
    the same size whose SHA-256 we know already is compared; otherwise decide at rename.
    Transformed bytes (OpenPGP) have no size or digest known beforehand: decide at rename."""
    if options.on_conflict == "overwrite" or transformed:
        return None
    if existing.size == src.size and src.sha256:
        got, n = await sftpio.hash_remote(sftp, dest.path)
        if got == src.sha256 and n == src.size:
            return CopyResult(sha256=got, size=n, destination=dest.path, outcome="already_delivered")
    elif existing.size == src.size:
        return None  # maybe ours: compare after the copy
    if options.on_conflict == "skip":
        return CopyResult(sha256="", size=existing.size or 0, destination=dest.path, outcome="skipped")
    raise DestinationExists(f"{dest.path} already exists on the destination server (another file).")


async def _rename_into_place(
    sftp: asyncssh.SFTPClient,
    part: str,
    dest: SftpLocation,
    sha: str,
    size: int,
    options: CopyOptions,
    *,
    keep_part: bool = False,
) -> str:
    """Plain SFTP rename (refuses to overwrite). Returns the outcome. ``part`` is removed
    when the target turns out to be this transfer's; otherwise, with ``keep_part`` (a
    commit mark is in place) it stays as the evidence that nothing was delivered, and
    without it, it is removed."""
    try:
        await sftp.rename(part, dest.path)
        return "delivered"
    except asyncssh.SFTPError as exc:
        existing = await sftpio.stat_or_none(sftp, dest.path)
        if existing is None:
            raise classify(exc, context=f"renaming into {dest.path}") from exc
    # The name is taken: by this transfer's own earlier attempt (same bytes), or another file.
    if options.on_conflict == "overwrite":
        # Explicitly asked for: replace in one step where the server can (OpenSSH's extension).
        try:
            await sftp.posix_rename(part, dest.path)
        except asyncssh.SFTPOpUnsupported:
            await sftpio.remove_quietly(sftp, dest.path)
            await sftp.rename(part, dest.path)
        return "delivered"
    if existing.size == size:
        got, n = await sftpio.hash_remote(sftp, dest.path)
        if got == sha and n == size:
            await sftpio.remove_quietly(sftp, part)
            return "already_delivered"
    if not keep_part:
        await sftpio.remove_quietly(sftp, part)
    if options.on_conflict == "skip":
        return "skipped"
    raise commit_undone(DestinationExists(f"{dest.path} already exists on the destination server (another file)."))
