"""Where bytes come from and go to: an SFTP path or an S3 key, with its endpoint spec."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from workers.engine.spec import S3Spec, SftpSpec


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
        return f"s3://{self.spec.bucket}/{self.key}"

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)


Location = SftpLocation | S3Location
