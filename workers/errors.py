"""Errors carry their kind: transient ones are retried, permanent ones are not.

Every failure the engine reports is one of these two, with a short machine-readable
``code`` and a message that is safe to show a customer (never a secret).
"""

from __future__ import annotations


class TransferError(Exception):
    """Base class: ``code`` names the failure, ``str()`` is customer-safe."""

    transient = False
    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def __str__(self) -> str:
        return self.message


class TransientError(TransferError):
    """Network resets, timeouts, throttling, 5xx: worth another attempt."""

    transient = True
    code = "transient"


class PermanentError(TransferError):
    """Authentication, host key, permission, missing file, checksum mismatch: retrying
    without a change (new credentials, a new pin, the file restored) cannot help."""

    transient = False
    code = "permanent"


class HostKeyMismatch(PermanentError):
    code = "host_key_mismatch"


class AuthenticationFailed(PermanentError):
    code = "authentication_failed"
