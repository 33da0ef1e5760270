"""Listing, deleting and moving remote files (the scheduler's polls, after-delivery actions)."""

from __future__ import annotations

import fnmatch
import posixpath
import re
import stat
from dataclasses import dataclass
from typing import Any

import asyncssh
from botocore.exceptions import ClientError

from engine import confine, runtime, s3client, s3io, sftpio
from engine.errors import DestinationExists, TransferError, classify
from engine.locations import Location, S3Location, SftpLocation
from engine.pool import get_pool

# In-flight deliveries are never files to pick up: ``.ferry-<transfer id>[.<claim>].part``
# (sftpio.part_path) and the previous release's ``.NAME.<transfer id>[.<claim>].part``,
# which a worker of that release may have left behind.
PART_RE = re.compile(r"^\.ferry-[^./]+(\.[0-9]+)?\.part$|^\..+\.[^.]+\.part$")


@dataclass(frozen=True, slots=True)  # slots: a big folder's listing is thousands of them
class RemoteFile:
    path: str  # as listed: absolute SFTP path or full S3 key (workers.scheduler makes it endpoint-relative)
    size: int
    mtime: float
    # SFTP: f"{size}:{int(mtime)}"; S3: VersionId or ETag. Empty when the lister does not
    # know it: the transfers app then derives the SFTP form.
    version: str = ""


def _wanted(name: str, pattern: str) -> bool:
    return not PART_RE.match(name) and fnmatch.fnmatchcase(name, pattern)


async def alist_files(location: Location, *, pattern: str = "*", recursive: bool = False) -> list[RemoteFile]:
    if isinstance(location, SftpLocation):
        return await _list_sftp(location, pattern, recursive)
    return await _list_s3(location, pattern, recursive)


async def _list_sftp(location: SftpLocation, pattern: str, recursive: bool) -> list[RemoteFile]:
    found: list[RemoteFile] = []
    async with get_pool().session(location.spec) as session:
        # The folder itself may be a link out of the root (the links inside it are skipped
        # below, so one check covers the whole listing).
        await confine.inside_root(session.sftp, location.spec, location.path)
        folders = [location.path]
        while folders:
            folder = folders.pop()
            async for entry in session.sftp.scandir(folder):
                name = entry.filename if isinstance(entry.filename, str) else entry.filename.decode()
                if name in (".", ".."):
                    continue
                attrs = entry.attrs
                full = posixpath.join(folder, name)
                mode = attrs.permissions or 0
                if stat.S_ISDIR(mode) or attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                    if recursive:
                        folders.append(full)
                    continue
                if not (stat.S_ISREG(mode) or attrs.type == asyncssh.FILEXFER_TYPE_REGULAR):
                    continue
                if _wanted(name, pattern):
                    size = attrs.size or 0
                    mtime = float(attrs.mtime or 0)
                    found.append(RemoteFile(path=full, size=size, mtime=mtime, version=f"{size}:{int(mtime)}"))
    return sorted(found, key=lambda f: f.path)


async def _list_s3(location: S3Location, pattern: str, recursive: bool) -> list[RemoteFile]:
    client = s3client.client(location.spec)
    prefix = location.key
    if prefix and not prefix.endswith("/"):
        prefix += "/"

    def collect() -> list[RemoteFile]:
        kwargs: dict[str, Any] = {"Bucket": location.spec.bucket, "Prefix": prefix}
        if not recursive:
            kwargs["Delimiter"] = "/"
        files = []
        for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue  # a folder marker
                if _wanted(posixpath.basename(key), pattern):
                    files.append(
                        RemoteFile(
                            path=key,
                            size=int(obj["Size"]),
                            mtime=obj["LastModified"].timestamp(),
                            version=obj.get("VersionId") or obj["ETag"].strip('"'),
                        )
                    )
        return files

    return sorted(await runtime.in_thread(collect), key=lambda f: f.path)


async def adelete(location: Location) -> None:
    """Delete the file; a file already gone is not an error (the action is retried)."""
    if isinstance(location, SftpLocation):
        async with get_pool().session(location.spec) as session:
            await sftpio.remove_quietly(session.sftp, location.path)
        return
    client = s3client.client(location.spec)
    await runtime.in_thread(client.delete_object, Bucket=location.spec.bucket, Key=location.key)


async def amove(location: Location, new_path: str) -> None:
    """Move the file to ``new_path`` (SFTP path or S3 key), creating folders on SFTP. Refuses
    to replace an existing file (DestinationExists). Idempotent: a move already done passes."""
    if isinstance(location, SftpLocation):
        async with get_pool().session(location.spec) as session:
            sftp = session.sftp
            gone = await sftpio.stat_or_none(sftp, location.path) is None
            if gone and await sftpio.stat_or_none(sftp, new_path) is not None:
                return  # done by an earlier attempt
            folder = posixpath.dirname(new_path) or "/"
            await sftp.makedirs(folder, exist_ok=True)
            await confine.inside_root(sftp, location.spec, folder)
            try:
                await sftp.rename(location.path, new_path)
            except asyncssh.SFTPError as exc:
                if await sftpio.stat_or_none(sftp, new_path) is not None:
                    raise DestinationExists(f"{new_path} already exists.") from exc
                raise
        return
    client = s3client.client(location.spec)
    bucket = location.spec.bucket
    source = await s3io.head(client, bucket, location.key)
    target = await s3io.head(client, bucket, new_path)
    if target is not None:
        if source is None:
            return  # done by an earlier attempt
        if (source["ContentLength"], source["ETag"]) != (target["ContentLength"], target["ETag"]):
            raise DestinationExists(f"s3://{bucket}/{new_path} already exists.")
        # An earlier attempt copied but did not delete: finish it.
        await runtime.in_thread(client.delete_object, Bucket=bucket, Key=location.key)
        return
    extra = {"MetadataDirective": "COPY", **s3io.sse_args(location.spec)}
    # The managed copy does a multipart server-side copy above 5 GiB.
    await runtime.in_thread(client.copy, {"Bucket": bucket, "Key": location.key}, bucket, new_path, ExtraArgs=extra)
    await runtime.in_thread(client.delete_object, Bucket=bucket, Key=location.key)


async def _classified(coro: Any, context: str) -> Any:
    try:
        return await coro
    except TransferError:
        raise
    except Exception as exc:
        raise classify(exc, context=context) from exc


def list_files(location: Location, *, pattern: str = "*", recursive: bool = False) -> list[RemoteFile]:
    """Files under ``location`` (an SFTP folder or an S3 prefix) whose name matches ``pattern``."""
    return runtime.run(_classified(alist_files(location, pattern=pattern, recursive=recursive), f"listing {location}"))


def delete(location: Location) -> None:
    runtime.run(_classified(adelete(location), f"deleting {location}"))


def move(location: Location, new_path: str) -> None:
    runtime.run(_classified(amove(location, new_path), f"moving {location}"))


# --- the evidence of an unfinished commit, and cleanup ------------------------------------------
# docs/execution.md ("Settling a commit from evidence"): after the commit mark only the rename /
# CompleteMultipartUpload takes the temporary file / open upload away, so whether it is still
# there says whether the delivery happened.


async def aexists(location: SftpLocation) -> bool:
    """Whether the SFTP file exists now (a stat; errors other than "no such file" raise)."""
    async with get_pool().session(location.spec) as session:
        return await sftpio.stat_or_none(session.sftp, location.path) is not None


async def aremove_if_present(location: SftpLocation) -> bool:
    """Remove the SFTP file: True when this call removed it, False when it was already gone.
    Any other failure raises (the caller cannot tell, so it decides nothing)."""
    async with get_pool().session(location.spec) as session:
        try:
            await session.sftp.remove(location.path)
            return True
        except asyncssh.SFTPError as exc:
            if exc.code in (asyncssh.FX_NO_SUCH_FILE, asyncssh.FX_NO_SUCH_PATH):
                return False
            raise


async def aremove_many(spec: Any, paths: list[str]) -> None:
    """Remove SFTP files over one session; those already gone are fine."""
    async with get_pool().session(spec) as session:
        for path in paths:
            await sftpio.remove_quietly(session.sftp, path)


def _no_such_upload(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and (
        s3io.error_code(exc) in ("NoSuchUpload", "404") or s3io.status_of(exc) == 404
    )


async def aupload_open(location: S3Location, upload_id: str) -> bool:
    """Whether the multipart upload is still open (ListParts answers) or gone (NoSuchUpload:
    completed or aborted)."""
    client = s3client.client(location.spec)
    try:
        await runtime.in_thread(
            client.list_parts, Bucket=location.spec.bucket, Key=location.key, UploadId=upload_id, MaxParts=1
        )
        return True
    except Exception as exc:
        if _no_such_upload(exc):
            return False
        raise


async def aabort_upload(location: S3Location, upload_id: str) -> bool:
    """Abort the multipart upload: True when this call aborted it, False when it was gone
    already (completed or aborted before)."""
    client = s3client.client(location.spec)
    try:
        await runtime.in_thread(
            client.abort_multipart_upload, Bucket=location.spec.bucket, Key=location.key, UploadId=upload_id
        )
        return True
    except Exception as exc:
        if _no_such_upload(exc):
            return False
        raise


def exists(location: SftpLocation) -> bool:
    return bool(runtime.run(_classified(aexists(location), f"checking {location}")))


def remove_if_present(location: SftpLocation) -> bool:
    return bool(runtime.run(_classified(aremove_if_present(location), f"removing {location}")))


def remove_many(spec: Any, paths: list[str]) -> None:
    if paths:
        runtime.run(_classified(aremove_many(spec, paths), "removing temporary files"))


def upload_open(location: S3Location, upload_id: str) -> bool:
    return bool(runtime.run(_classified(aupload_open(location, upload_id), f"checking an upload of {location}")))


def abort_upload(location: S3Location, upload_id: str) -> bool:
    return bool(runtime.run(_classified(aabort_upload(location, upload_id), f"aborting an upload of {location}")))


async def aowner_of(location: S3Location) -> str | None:
    """The transfer id in the object's metadata ("" when it has none), or None when there is
    no object."""
    found = await s3io.head(s3client.client(location.spec), location.spec.bucket, location.key)
    if found is None:
        return None
    return s3io.transfer_id_of(found) or ""


def owner_of(location: S3Location) -> str | None:
    owner: str | None = runtime.run(_classified(aowner_of(location), f"checking {location}"))
    return owner
