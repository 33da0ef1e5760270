"""What the engine's caller decides: timeouts, retries and S3 addressing.

The engine reads no environment of its own. A process configures it once at start-up
(the workers app from Django settings, workers/apps.py; a benchmark from its own
arguments) with :func:`configure`; until then the defaults below apply, which are the
settings' defaults (controlplane/settings.py), so the policy reads the same everywhere.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

ADDRESSING_STYLES = ("auto", "virtual", "path")


@dataclass(frozen=True)
class EngineConfig:
    """Ferry's AWS client policy. Frozen and hashable: it is part of the S3 client cache key,
    so configuring anew never reuses a client built under the old policy."""

    connect_timeout: float = 5.0  # seconds
    read_timeout: float = 30.0  # seconds
    max_attempts: int = 5  # botocore's adaptive retries (it makes one attempt more in all)
    addressing_style: str = "auto"  # "path" for S3-compatible servers without virtual hosts
    max_pool_connections: int = 64  # HTTP connections per S3 client (parts in flight share them)

    def __post_init__(self) -> None:
        if self.addressing_style not in ADDRESSING_STYLES:
            raise ValueError(f"addressing_style must be one of {ADDRESSING_STYLES}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_attempts < 1 or self.max_pool_connections < 1:
            raise ValueError("max_attempts and max_pool_connections must be at least 1")


_lock = threading.Lock()
_current = EngineConfig()


def configure(config: EngineConfig) -> None:
    """Use ``config`` for every client built from now on (cached clients built under another
    config are not reused)."""
    global _current
    with _lock:
        _current = config


def current() -> EngineConfig:
    """The configuration in force."""
    return _current
