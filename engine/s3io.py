"""Streaming S3 reads and multipart writes with boto3 (blocking calls on the engine's threads).

Reads: one streamed GET, read in ``CHUNK`` pieces with one piece read ahead; a connection
dropped mid-body resumes with a ranged GET pinned to the same ETag.

Writes (``S3Upload``): bytes arrive in order and are cut into parts of ``part_size``; at most
``parts_in_flight`` parts are uploading at once and the producer waits for a free slot, so
memory is bounded by ``(parts_in_flight + 1) * part_size``. A stream shorter than one part
becomes a single PutObject. Each part carries its SHA-256 (``ChecksumSHA256``), which S3
checks on arrival and reports back in ListParts, so a resumed upload can prove that a
completed part holds the same bytes as the source before reusing it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from engine import runtime
from engine.errors import SizeMismatch, TransferError, classify
from engine.hashing import StreamHasher
from engine.spec import S3Spec

log = logging.getLogger("ferry.engine")

MIB = 1024 * 1024
CHUNK = 1 * MIB
MIN_PART = 8 * MIB
MAX_PARTS = 9000  # S3 allows 10,000: leave room for a source that grows while read
SINGLE_COPY_LIMIT = 5 * 1024 * MIB
Response = dict[str, Any]  # a boto3 response (or a part of one), as botocore parsed it

META_TRANSFER = "ferry-transfer-id"
TAG_SHA256 = "ferry-sha256"


def part_size_for(size: int | None, override: int | None = None) -> int:
    """``max(8 MiB, ceil(size / 9000))``: at most 9,000 parts whatever the size."""
    if override:
        return override
    return max(MIN_PART, math.ceil((size or 0) / MAX_PARTS))


def b64sha256(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def sse_args(spec: S3Spec) -> dict[str, str]:
    args: dict[str, str] = {}
    if spec.sse:
        args["ServerSideEncryption"] = spec.sse
        if spec.sse == "aws:kms" and spec.kms_key_id:
            args["SSEKMSKeyId"] = spec.kms_key_id
    return args


def object_metadata(transfer_id: str, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """An object's user metadata: the caller's pairs, then Ferry's transfer id (never
    overridden by the caller's)."""
    return {**dict(extra), META_TRANSFER: transfer_id}


def transfer_id_of(head: Response) -> str | None:
    """The transfer id in an object's metadata (some servers change the key's case)."""
    for name, value in (head.get("Metadata") or {}).items():
        if name.lower() == META_TRANSFER:
            return str(value)
    return None


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def status_of(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


async def head(client: Any, bucket: str, key: str) -> Response | None:
    """HeadObject, or None when there is no such object."""
    try:
        found: Response = await runtime.in_thread(client.head_object, Bucket=bucket, Key=key)
        return found
    except ClientError as exc:
        if status_of(exc) == 404 or error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


async def sha256_tag(client: Any, bucket: str, key: str) -> str | None:
    """The SHA-256 Ferry tagged the object with, if any (callers skip this when the spec
    says the server has no object tags)."""
    try:
        tags = await runtime.in_thread(client.get_object_tagging, Bucket=bucket, Key=key)
    except ClientError as exc:
        if status_of(exc) in (403, 404, 501) or error_code(exc) in ("NotImplemented", "AccessDenied"):
            return None
        raise
    for tag in tags.get("TagSet", []):
        if tag.get("Key") == TAG_SHA256:
            return str(tag["Value"])
    return None


async def put_sha256_tag(client: Any, bucket: str, key: str, sha256: str) -> bool:
    """Tag the object with its SHA-256. A server without object tagging (some S3-compatible
    ones answer 501) is tolerated: the hash is still returned with the result. Callers skip
    this when the spec says the server has no object tags."""
    try:
        await runtime.in_thread(
            client.put_object_tagging,
            Bucket=bucket,
            Key=key,
            Tagging={"TagSet": [{"Key": TAG_SHA256, "Value": sha256}]},
        )
    except ClientError as exc:
        if status_of(exc) == 501 or error_code(exc) in ("NotImplemented", "NotSupported"):
            log.warning("the S3 server does not support object tags", extra={"key": key})
            return False
        raise
    return True


async def read_stream(
    client: Any, bucket: str, key: str, *, start: int = 0, etag: str | None = None, retries: int = 3
) -> AsyncIterator[bytes]:
    """Yield the object's bytes from ``start``, one chunk read ahead of the consumer."""
    offset = start
    attempts = 0
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if offset:
            kwargs["Range"] = f"bytes={offset}-"
        if etag:
            kwargs["IfMatch"] = etag
        try:
            response = await runtime.in_thread(client.get_object, **kwargs)
        except ClientError as exc:
            if status_of(exc) == 416:  # range starts at the end: nothing left
                return
            raise
        etag = etag or response.get("ETag")
        body = response["Body"]
        try:
            ahead = asyncio.ensure_future(runtime.in_thread(body.read, CHUNK))
            while True:
                try:
                    data = await ahead
                except Exception as exc:
                    attempts += 1
                    if attempts > retries or not classify(exc).transient:
                        raise
                    log.info("resuming GET", extra={"key": key, "offset": offset, "error": type(exc).__name__})
                    break  # reconnect with a Range from where we are
                if not data:
                    return
                ahead = asyncio.ensure_future(runtime.in_thread(body.read, CHUNK))
                offset += len(data)
                yield data
        finally:
            if not ahead.done():
                ahead.cancel()
            body.close()


@dataclass
class UploadResult:
    size: int
    sha256: str
    outcome: str  # "delivered" | "precondition_failed"
    upload_id: str | None = None
    reused_parts: int = 0


@dataclass
class S3Upload:
    """One destination object written from an in-order stream of bytes.

    ``if_none_match``: complete with ``If-None-Match: *`` (a 412 comes back as outcome
    ``precondition_failed`` and the upload is aborted). ``resume``: look for an unfinished
    multipart upload of this key and reuse its parts whose SHA-256 matches ours. ``run``'s
    chunks come from ``plumbing.Pipeline``, whose ``hasher`` this is.
    """

    client: Any
    spec: S3Spec
    key: str
    transfer_id: str
    size_hint: int | None
    part_size: int
    hasher: StreamHasher  # fed by the caller's chunk pipeline; the upload reads its digest
    parts_in_flight: int = 4
    if_none_match: bool = True
    resume: bool = False
    checksums: bool = True
    before_commit: Any = None
    progress: Any = None
    upload_started: Any = None  # (bucket, key, upload id), blocking: run on a thread
    about_to_commit: Any = None  # (sha256, size), just before before_commit
    metadata: tuple[tuple[str, str], ...] = ()  # the caller's user metadata (CopyOptions.metadata)
    _committing: bool = False  # before_commit returned: the open upload is the evidence
    _parts: dict[int, Response] = field(default_factory=dict)
    _existing: dict[int, Response] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _error: BaseException | None = None
    upload_id: str | None = None
    reused_parts: int = 0

    @property
    def bucket(self) -> str:
        return self.spec.bucket

    def _base_args(self) -> dict[str, Any]:
        return {
            "Bucket": self.bucket,
            "Key": self.key,
            "Metadata": object_metadata(self.transfer_id, self.metadata),
            **sse_args(self.spec),
        }

    async def run(self, chunks: AsyncIterator[bytes]) -> UploadResult:
        sem = asyncio.Semaphore(max(1, self.parts_in_flight))
        pending: list[bytes] = []
        pending_len = 0
        total = 0
        part_number = 0
        try:
            async for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    take = min(len(view), self.part_size - pending_len)
                    whole = take == len(view) == len(chunk)
                    pending.append(chunk if whole else bytes(view[:take]))
                    pending_len += take
                    view = view[take:]
                    if pending_len == self.part_size:
                        if self.upload_id is None:
                            await self._start()
                        part_number += 1
                        body = b"".join(pending)
                        pending, pending_len = [], 0
                        await sem.acquire()
                        self._raise_failed()
                        task = asyncio.ensure_future(self._upload_part(part_number, body, sem))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                total += len(chunk)
                if self.progress:
                    self.progress(total)
            if self.upload_id is None:
                body = b"".join(pending)
                return await self._put_single(body)
            if pending_len or part_number == 0:
                part_number += 1
                body = b"".join(pending)
                pending = []
                await sem.acquire()
                task = asyncio.ensure_future(self._upload_part(part_number, body, sem))
                self._tasks.add(task)
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            self._raise_failed()
            return await self._complete(total, part_number)
        except BaseException:
            await self.hasher.aclose()
            await self._cancel_parts()
            # After the commit mark the open upload tells a retry that CompleteMultipartUpload
            # did not happen (docs/execution.md): the caller's cleanup aborts it, not us.
            if self.upload_id is not None and not self._committing:
                await self.abort()
            raise

    def _raise_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def _cancel_parts(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def abort(self) -> None:
        upload_id, self.upload_id = self.upload_id, None
        if upload_id is None:
            return
        # Best effort: the bucket's lifecycle rule sweeps an upload we could not abort.
        with contextlib.suppress(Exception):
            await runtime.in_thread(
                self.client.abort_multipart_upload, Bucket=self.bucket, Key=self.key, UploadId=upload_id
            )

    async def _start(self) -> None:
        if self.resume and await self._find_resumable():
            return
        args = self._base_args()
        if self.checksums:
            args["ChecksumAlgorithm"] = "SHA256"
        response = await runtime.in_thread(self.client.create_multipart_upload, **args)
        self.upload_id = response["UploadId"]
        await self._tell_started()

    async def _tell_started(self) -> None:
        if self.upload_started is not None and self.upload_id is not None:
            await runtime.in_thread(self.upload_started, self.bucket, self.key, self.upload_id)

    async def _find_resumable(self) -> bool:
        """Adopt the newest unfinished upload of this key whose parts have our part size."""
        try:
            listing = await runtime.in_thread(self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=self.key)
        except ClientError:
            return False
        uploads = [u for u in listing.get("Uploads", []) if u.get("Key") == self.key]
        uploads.sort(key=lambda u: u.get("Initiated") or 0, reverse=True)
        for upload in uploads:
            parts: dict[int, Response] = {}
            marker = 0
            while True:
                page = await runtime.in_thread(
                    self.client.list_parts,
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=upload["UploadId"],
                    PartNumberMarker=marker,
                )
                for p in page.get("Parts", []):
                    parts[p["PartNumber"]] = p
                if not page.get("IsTruncated"):
                    break
                marker = page["NextPartNumberMarker"]
            usable = {n: p for n, p in parts.items() if p.get("Size") == self.part_size and _provable(p)}
            if usable:
                self.upload_id = upload["UploadId"]
                self._existing = usable
                await self._tell_started()
                log.info(
                    "resuming multipart upload",
                    extra={"key": self.key, "upload_id": self.upload_id, "parts_done": len(usable)},
                )
                return True
        return False

    async def _upload_part(self, number: int, body: bytes, sem: asyncio.Semaphore) -> None:
        try:
            checksum = await runtime.in_thread(b64sha256, body) if self.checksums else None
            existing = self._existing.get(number)
            if existing is not None and await runtime.in_thread(_same_bytes, existing, body, checksum):
                # The interrupted attempt already uploaded these very bytes.
                self._parts[number] = {"PartNumber": number, "ETag": existing["ETag"], "ChecksumSHA256": checksum}
                self.reused_parts += 1
                return
            args: dict[str, Any] = {
                "Bucket": self.bucket,
                "Key": self.key,
                "UploadId": self.upload_id,
                "PartNumber": number,
                "Body": body,
            }
            if checksum:
                args["ChecksumSHA256"] = checksum
            response = await runtime.in_thread(self.client.upload_part, **args)
            part = {"PartNumber": number, "ETag": response["ETag"]}
            if checksum:
                part["ChecksumSHA256"] = checksum
            self._parts[number] = part
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            raise
        finally:
            del body
            sem.release()

    async def _put_single(self, body: bytes) -> UploadResult:
        sha = await self.hasher.hexdigest()
        args = self._base_args()
        args["Body"] = body
        if self.spec.object_tags:
            args["Tagging"] = f"{TAG_SHA256}={sha}"
        if self.checksums:
            args["ChecksumSHA256"] = await runtime.in_thread(b64sha256, body)
        if self.if_none_match:
            args["IfNoneMatch"] = "*"
        await self._call_before_commit(sha, len(body))
        try:
            await runtime.in_thread(self.client.put_object, **args)
        except ClientError as exc:
            if status_of(exc) == 412 or error_code(exc) == "PreconditionFailed":
                return UploadResult(size=len(body), sha256=sha, outcome="precondition_failed")
            raise
        return UploadResult(size=len(body), sha256=sha, outcome="delivered")

    async def _call_before_commit(self, sha: str, size: int) -> None:
        if self.about_to_commit is not None:
            self.about_to_commit(sha, size)
        if self.before_commit is None:
            return
        result = self.before_commit()
        if asyncio.iscoroutine(result):
            await result
        self._committing = True

    async def _complete(self, total: int, count: int) -> UploadResult:
        sha = await self.hasher.hexdigest()
        if self.size_hint is not None and total != self.size_hint:
            raise SizeMismatch(f"Read {total} bytes where the source announced {self.size_hint}.")
        parts = [self._parts[n] for n in range(1, count + 1)]
        await self._call_before_commit(sha, total)
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "UploadId": self.upload_id,
            "MultipartUpload": {"Parts": parts},
        }
        if self.if_none_match:
            args["IfNoneMatch"] = "*"
        try:
            await runtime.in_thread(self.client.complete_multipart_upload, **args)
        except ClientError as exc:
            if status_of(exc) == 412 or error_code(exc) == "PreconditionFailed":
                # After a commit mark the open upload stays: the caller's evidence that this
                # completion did not happen, aborted by its cleanup once the mark is back.
                if not self._committing:
                    await self.abort()
                return UploadResult(size=total, sha256=sha, outcome="precondition_failed")
            raise
        upload_id, self.upload_id = self.upload_id, None
        if self.reused_parts:
            log.info("resumed upload completed", extra={"key": self.key, "reused_parts": self.reused_parts})
        # A multipart object's metadata is fixed before the hash is known: the hash is a tag.
        if self.spec.object_tags:
            await put_sha256_tag(self.client, self.bucket, self.key, sha)
        return UploadResult(
            size=total, sha256=sha, outcome="delivered", upload_id=upload_id, reused_parts=self.reused_parts
        )


_MD5_ETAG = re.compile(r'^"?[0-9a-f]{32}"?$')


def _provable(part: Response) -> bool:
    """A completed part can be compared with our bytes: by its SHA-256 (AWS reports it in
    ListParts when the upload was created with ChecksumAlgorithm SHA256), else by an ETag
    that is the part's MD5 (plain and SSE-S3 uploads; the moto server reports no checksums)."""
    return bool(part.get("ChecksumSHA256") or _MD5_ETAG.match(part.get("ETag", "")))


def _same_bytes(part: Response, body: bytes, checksum: str | None) -> bool:
    if part.get("ChecksumSHA256"):
        return bool(part["ChecksumSHA256"] == (checksum or b64sha256(body)))
    return bool(part.get("ETag", "").strip('"') == hashlib.md5(body, usedforsecurity=False).hexdigest())


def raise_classified(exc: BaseException, context: str) -> None:
    if isinstance(exc, TransferError):
        raise exc
    raise classify(exc, context=context) from exc
