"""Plain data the transfers app accepts from the execution side.

``RemoteFile`` mirrors ``engine.listing.RemoteFile`` (engine branch); services
accept any object with these attributes, so either works.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """One file of a source listing.

    ``path`` is relative to the endpoint's root (SFTP) or prefix (S3), written with a
    leading ``/`` (``/outbound/a.csv``). ``mtime`` is seconds since the epoch (float).
    ``version`` is the S3 VersionId or ETag; for SFTP it may be empty and is then derived
    as ``"<size>:<int(mtime)>"``.
    """

    path: str
    size: int
    mtime: float
    version: str | None = None
