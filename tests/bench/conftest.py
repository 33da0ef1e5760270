"""The engine's fixtures (a fresh bucket, SFTP specs, a private folder, the pool closed
after each test) for the batch helper's tests."""

from tests.engine.conftest import _close_pool, bucket, folder, s3spec, sftp_spec

__all__ = ["_close_pool", "bucket", "folder", "s3spec", "sftp_spec"]
