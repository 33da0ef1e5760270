"""Copying to an S3 destination: streamed multipart upload, or a server-side copy.

Atomic delivery (DESIGN §4): the object is written with ``If-None-Match: *`` and the
transfer id in its metadata, so a destination that already holds this transfer's object
counts as ``already_delivered`` and someone else's is a conflict settled by
``on_conflict``. S3 → S3 is a server-side copy when one client can reach both objects and
the source's SHA-256 is known (a Ferry tag); everything else reads the source through the
chunk pipeline (``plumbing.Pipeline``).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from botocore.exceptions import ClientError

from engine import runtime, s3client, s3io
from engine.errors import ChecksumMismatch, DestinationExists, SizeMismatch, classify, commit_undone
from engine.locations import Location, S3Location
from engine.plumbing import (
    SMALL_SOURCE,
    CopyOptions,
    CopyResult,
    Hook,
    Pipeline,
    Progress,
    Sessions,
    Source,
    call_hook,
    open_source,
)
from engine.spec import S3Spec

log = logging.getLogger("ferry.engine")

# How much larger than its source a transformed stream may grow before the multipart parts
# (sized from this estimate) could run out: armor adds a third, decompression more.
TRANSFORMED_GROWTH = 4


def _write_settles_conflicts(dest: S3Location, options: CopyOptions) -> bool:
    """Whether the write itself may find an occupied destination: a small source (by the
    caller's ``source_size`` hint) written with If-None-Match to a server that honours it.
    The 412 is then settled as a race is (ours → already delivered, someone else's → the
    conflict policy), after the source's few bytes were read. Large sources, overwrites and
    servers without conditional writes look first, so nothing is read for nothing."""
    return (
        options.source_size is not None
        and options.source_size <= SMALL_SOURCE
        and options.on_conflict != "overwrite"
        and dest.spec.conditional_writes
    )


async def _existing_s3(client: Any, dest: S3Location, transfer_id: str, options: CopyOptions) -> CopyResult | None:
    """Settle an occupied destination before reading anything: ours → already delivered,
    someone else's → the conflict policy. None: go ahead and write."""
    head = await s3io.head(client, dest.spec.bucket, dest.key)
    if head is None:
        return None
    return await _settle_s3_conflict(client, dest, head, transfer_id, options)


async def _settle_s3_conflict(
    client: Any, dest: S3Location, head: s3io.Response, transfer_id: str, options: CopyOptions
) -> CopyResult | None:
    if s3io.transfer_id_of(head) == transfer_id:
        sha = await s3io.sha256_tag(client, dest.spec.bucket, dest.key) if dest.spec.object_tags else None
        if sha is None:
            # Crashed between CompleteMultipartUpload and tagging: hash it and finish the job.
            sha, _ = await _hash_s3(client, dest.spec.bucket, dest.key)
            if dest.spec.object_tags:
                await s3io.put_sha256_tag(client, dest.spec.bucket, dest.key, sha)
        size = int(head["ContentLength"])
        return CopyResult(sha256=sha, size=size, destination=dest.key, outcome="already_delivered")
    if options.on_conflict == "overwrite":
        return None
    if options.on_conflict == "skip":
        return CopyResult(sha256="", size=int(head["ContentLength"]), destination=dest.key, outcome="skipped")
    raise DestinationExists(f"{dest} already exists (another file).")


async def _hash_s3(client: Any, bucket: str, key: str) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    async for chunk in s3io.read_stream(client, bucket, key):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


async def _check_s3_delivery(client: Any, dest: S3Location, transfer_id: str, sha: str, size: int, verify: str) -> None:
    """Read the written object's head (and with ``reread`` its bytes) back. Not called after
    a single PutObject whose answer proved the bytes (``UploadResult.proven``) unless
    ``reread`` asks: with If-None-Match honoured nothing else can have landed there, and on
    a server that ignores it a head read a moment later proves no more (the last writer
    wins, before or after that read alike)."""
    head = await s3io.head(client, dest.spec.bucket, dest.key)
    if head is None:
        raise SizeMismatch(f"{dest} is missing right after it was written.", code="lost")
    owner = s3io.transfer_id_of(head)
    if owner is None:
        # Some S3-compatible servers drop user metadata (rclone serve s3 on multipart
        # uploads): ownership cannot be proven here, the size check below still runs.
        log.warning("destination object carries no transfer id metadata", extra={"key": dest.key})
    elif owner != transfer_id:
        # A server that ignores If-None-Match let someone else's write win the race.
        raise DestinationExists(f"{dest} was replaced by another writer.")
    if int(head["ContentLength"]) != size:
        raise SizeMismatch(f"{dest} holds {head['ContentLength']} bytes, {size} written.")
    if verify == "reread":
        got, n = await _hash_s3(client, dest.spec.bucket, dest.key)
        if got != sha or n != size:
            # Ours (checked above) and wrong: remove it so a retry can deliver.
            await runtime.in_thread(client.delete_object, Bucket=dest.spec.bucket, Key=dest.key)
            raise commit_undone(ChecksumMismatch(f"{dest} reads back with another SHA-256."))


async def to_s3(
    sessions: Sessions,
    source: Location,
    dest: S3Location,
    *,
    transfer_id: str,
    options: CopyOptions,
    progress: Progress,
    before_commit: Hook | None,
    reuse_only_if_ours: bool = False,
) -> CopyResult:
    client = s3client.client(dest.spec)
    if not _write_settles_conflicts(dest, options):
        settled = await _existing_s3(client, dest, transfer_id, options)
        if settled is not None:
            return settled
    async with open_source(sessions, source, options) as src:
        server_side = (
            not options.transforms
            and isinstance(source, S3Location)
            and src.sha256
            and dest.spec.object_tags
            and _same_account(source.spec, dest.spec)
        )
        if server_side and src.size <= s3io.SINGLE_COPY_LIMIT:
            assert isinstance(source, S3Location)
            return await _server_side_copy(
                client, source, dest, src, transfer_id=transfer_id, options=options, before_commit=before_commit
            )
        pipeline = Pipeline(src, str(source), options.transforms)
        # A transform changes the size (OpenPGP adds a little, armor a third, decompression
        # more): the parts are sized for up to TRANSFORMED_GROWTH times the source, and the
        # source's size is checked as it is read (``counted``), not at the end.
        estimate = src.size * TRANSFORMED_GROWTH if pipeline.transformed else src.size
        upload = s3io.S3Upload(
            client=client,
            spec=dest.spec,
            key=dest.key,
            transfer_id=transfer_id,
            size_hint=None if pipeline.transformed else src.size,
            part_size=s3io.part_size_for(estimate, options.part_size),
            hasher=pipeline.hasher,
            parts_in_flight=options.parts_in_flight,
            if_none_match=options.on_conflict != "overwrite",
            resume=True,
            before_commit=before_commit,
            progress=progress,
            upload_started=options.upload_started,
            about_to_commit=options.about_to_commit,
            metadata=options.metadata,
        )
        result = await upload.run(pipeline.chunks())
    if result.outcome == "precondition_failed":
        # Refused by If-None-Match: ours was not written (the upload is aborted), so an
        # error from here on undoes the commit.
        head = await s3io.head(client, dest.spec.bucket, dest.key)
        try:
            settled = await _settle_s3_conflict(client, dest, head or {}, transfer_id, options) if head else None
        except DestinationExists as exc:
            raise commit_undone(exc) from None
        if settled is None:  # gone again, or overwrite: the caller's retry writes it
            raise commit_undone(classify(TimeoutError(), context=f"{dest} changed under us"))
        return settled
    progress.finish(result.size)
    if not result.proven or options.verify == "reread":
        await _check_s3_delivery(client, dest, transfer_id, result.sha256, result.size, options.verify)
    return CopyResult(
        sha256=result.sha256,
        size=result.size,
        destination=dest.key,
        outcome="delivered",
        source_sha256=await pipeline.source_sha256(),
    )


def _same_account(a: S3Spec, b: S3Spec) -> bool:
    """One client can read the source and write the destination (server-side copy)."""
    return (a.access_key_id, a.role_arn, a.region) == (b.access_key_id, b.role_arn, b.region)


async def _server_side_copy(
    client: Any,
    source: S3Location,
    dest: S3Location,
    src: Source,
    *,
    transfer_id: str,
    options: CopyOptions,
    before_commit: Hook | None,
) -> CopyResult:
    assert src.sha256 is not None
    args: dict[str, Any] = {
        "Bucket": dest.spec.bucket,
        "Key": dest.key,
        "CopySource": {"Bucket": source.spec.bucket, "Key": source.key},
        "MetadataDirective": "REPLACE",
        "Metadata": s3io.object_metadata(transfer_id, options.metadata),
        "TaggingDirective": "REPLACE",
        "Tagging": f"{s3io.TAG_SHA256}={src.sha256}",
        **s3io.sse_args(dest.spec),
    }
    if src.etag:
        args["CopySourceIfMatch"] = src.etag
    if options.on_conflict != "overwrite":
        args["IfNoneMatch"] = "*"
    if options.about_to_commit is not None:
        options.about_to_commit(src.sha256, src.size)
    await call_hook(before_commit)
    log.info("server-side copy", extra={"source": str(source), "destination": str(dest)})
    try:
        await runtime.in_thread(client.copy_object, **args)
    except ClientError as exc:
        if s3io.status_of(exc) == 412 and options.on_conflict != "overwrite":
            head = await s3io.head(client, dest.spec.bucket, dest.key)
            if head is not None:
                settled = await _settle_s3_conflict(client, dest, head, transfer_id, options)
                if settled is not None:
                    return settled
        raise
    await _check_s3_delivery(client, dest, transfer_id, src.sha256, src.size, options.verify)
    return CopyResult(
        sha256=src.sha256, size=src.size, destination=dest.key, outcome="delivered", source_sha256=src.sha256
    )
