"""Where bytes come from and go to: an SFTP path or an S3 key, with its endpoint spec."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import overload

from engine.spec import S3Spec, SftpSpec


@dataclass(frozen=True)
class SftpLocation:
    """``path`` is absolute on the server (the endpoint root already applied by the caller)."""

    spec: SftpSpec
    path: str

    def __str__(self) -> str:
        return f"sftp://{self.spec.host}:{self.spec.port}{self.path}"

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


@dataclass(frozen=True)
class S3Location:
    """``key`` is the full object key (the endpoint prefix already applied by the caller)."""

    spec: S3Spec
    key: str

    def __str__(self) -> str:
        """Customer-safe: the spec's ``label`` when it has one, else ``uri``."""
        return self.spec.label or self.uri

    @property
    def uri(self) -> str:
        """``s3://bucket/key``, for operator logs."""
        return f"s3://{self.spec.bucket}/{self.key}"

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)


Location = SftpLocation | S3Location


def _folder(prefix: str) -> str:
    """An S3 endpoint prefix names a folder: ``in`` and ``in/`` both mean ``in/``."""
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


@overload
def location_of(spec: SftpSpec, path: str) -> SftpLocation: ...
@overload
def location_of(spec: S3Spec, path: str) -> S3Location: ...
def location_of(spec: SftpSpec | S3Spec, path: str) -> Location:
    """Where a route path (``/outbound/a.csv``, relative to the endpoint) lives: under the
    SFTP root, or under the S3 prefix."""
    relative = path.lstrip("/")
    if isinstance(spec, SftpSpec):
        return SftpLocation(spec, posixpath.join(spec.root, relative) if relative else spec.root)
    return S3Location(spec, _folder(spec.prefix) + relative)


def s3_relative_path(prefix: str, key: str) -> str | None:
    """The route path of ``key`` under an S3 endpoint's ``prefix`` (inverse of location_of),
    or None when the key lies outside it."""
    folder = _folder(prefix)
    if not key.startswith(folder) or key == folder:
        return None
    return "/" + key[len(folder) :]


def relative_path(spec: SftpSpec | S3Spec, remote: str) -> str | None:
    """The route path of a listed SFTP path or S3 key (inverse of :func:`location_of`)."""
    if isinstance(spec, S3Spec):
        return s3_relative_path(spec.prefix, remote)
    root = spec.root.rstrip("/") or "/"
    if root == "/":
        return remote if remote.startswith("/") else None
    if not remote.startswith(root + "/"):
        return None
    return remote[len(root) :]
