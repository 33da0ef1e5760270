"""What the engine needs to know about an endpoint: plain data, no Django.

The control plane builds these from an Endpoint row, its secret (resolved from Secrets
Manager) and the address the SSRF guard checked; the engine only reads them. Secrets are
excluded from ``repr`` so a spec can never print one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SftpSpec:
    endpoint_id: str
    version: int
    host: str
    port: int
    username: str
    host_keys: tuple[str, ...]
    root: str = "/"
    max_connections: int = 4
    # The endpoint's bandwidth cap, shared by its connections (engine/throttle.py); None: none.
    max_bytes_per_second: int | None = None
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    # A rotated key still in its overlap (Ferry-issued SSH keys, docs/endpoints.md): offered
    # after ``private_key``, so a partner who has not installed the new key yet still works.
    previous_private_key: str | None = field(default=None, repr=False)
    previous_passphrase: str | None = field(default=None, repr=False)
    # The IP address the SSRF guard resolved and allowed; connections go there, not to a
    # fresh resolution of ``host`` (which could have changed since the check).
    connect_address: str | None = None

    @property
    def pool_key(self) -> tuple[str, int]:
        return (self.endpoint_id, self.version)


@dataclass(frozen=True)
class S3Spec:
    endpoint_id: str
    version: int
    bucket: str
    prefix: str = ""
    region: str | None = None
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    sse: str | None = None  # "AES256" | "aws:kms" | None
    kms_key_id: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    # Object tagging works on AWS and the moto server. Some S3-compatible servers lack it,
    # and rclone's ``serve s3`` even stores a PutObjectTagging body AS the object: with False
    # the engine never sends or reads object tags (the SHA-256 is still returned, and a
    # staging object without its tag is not reused).
    object_tags: bool = True
    # The server honours ``If-None-Match: *`` on PutObject and CompleteMultipartUpload (AWS,
    # the moto server). rclone's ``serve s3`` ignores it and overwrites: with False the engine
    # always checks the destination before it writes (the only guard such a server allows,
    # and a racy one), even for the small files it otherwise writes without asking first.
    conditional_writes: bool = True
    # How messages name this bucket (``str`` of an S3Location), instead of
    # ``s3://bucket/key``: the transfer service calls its own staging bucket "Ferry's
    # staging area", so a customer's error never names Ferry's internal resources. Logs
    # use ``S3Location.uri``, which always names the bucket.
    label: str = ""

    @property
    def pool_key(self) -> tuple[str, int]:
        return (self.endpoint_id, self.version)
