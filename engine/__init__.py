"""Ferry's streaming engine, a library: SFTP and S3 readers and writers, one chunk pipeline,
staging and checksums (docs/engine.md). It imports nothing of Ferry's apps and no Django,
and reads no environment: its caller configures it (``engine.config``)."""
