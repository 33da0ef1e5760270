"""Errors carry their kind: transient ones are retried, permanent ones are not.

Every failure the engine reports is one of these two, with a short machine-readable
``code`` and a message that is safe to show a customer (never a secret). ``classify``
is the one place where library exceptions (asyncssh, botocore, OS) are sorted.
"""

from __future__ import annotations

import asyncio
import errno
import socket

import asyncssh
import botocore.exceptions as bce


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


class SourceMissing(PermanentError):
    code = "source_missing"


class PermissionDenied(PermanentError):
    code = "permission_denied"


def commit_undone(error: BaseException) -> BaseException:
    """Mark an error raised after ``before_commit`` whose attempt is known to have delivered
    nothing: the caller may take its commit mark back at once. The evidence stays as after
    any other error (the SFTP ``.part``; an S3 upload refused by ``If-None-Match`` stays
    open), so a caller that cannot take the mark back still settles correctly later."""
    error.commit_undone = True  # type: ignore[attr-defined]
    return error


def is_commit_undone(error: BaseException) -> bool:
    return bool(getattr(error, "commit_undone", False))


def opening(error: TransferError, endpoint_id: str) -> TransferError:
    """Mark an error raised while opening a session to ``endpoint_id`` (connect, login,
    SFTP subsystem): a caller that keeps a circuit breaker per endpoint then knows which
    endpoint refused, when a copy touches two. The first mark stays."""
    if not getattr(error, "opening_endpoint", None):
        error.opening_endpoint = endpoint_id  # type: ignore[attr-defined]
    return error


def opening_endpoint(error: BaseException) -> str | None:
    """The endpoint whose session could not be opened (see :func:`opening`), if marked."""
    return getattr(error, "opening_endpoint", None)


class DestinationExists(PermanentError):
    """The destination name holds someone else's file and ``on_conflict`` is ``fail``."""

    code = "destination_exists"


class PathOutsideRoot(PermanentError):
    """An SFTP path that the server resolves (through a symbolic link, or ``..``) to a place
    outside the endpoint's ``root``: Ferry neither reads nor writes there."""

    code = "path_outside_root"


class ChecksumMismatch(PermanentError):
    code = "checksum_mismatch"


class SizeMismatch(PermanentError):
    code = "size_mismatch"


# S3 error codes (botocore ``Error.Code``) by kind.
_S3_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
    "OperationAborted",
    "PriorRequestNotComplete",
    "ExpiredToken",  # an assumed role's session ran out: a fresh client fixes it
    "NoSuchUpload",  # an upload aborted under us (lifecycle, a concurrent cleanup): start over
}
_S3_PERMANENT: dict[str, type[TransferError] | tuple[type[TransferError], str]] = {
    "NoSuchKey": SourceMissing,
    "404": SourceMissing,
    "NotFound": SourceMissing,
    "NoSuchBucket": (PermanentError, "bucket_missing"),
    "AccessDenied": PermissionDenied,
    "403": PermissionDenied,
    "AllAccessDisabled": PermissionDenied,
    "InvalidAccessKeyId": AuthenticationFailed,
    "SignatureDoesNotMatch": AuthenticationFailed,
    "InvalidClientTokenId": AuthenticationFailed,
    "UnrecognizedClientException": AuthenticationFailed,
    "KMS.NotFoundException": (PermanentError, "kms_key_invalid"),
    "KMS.DisabledException": (PermanentError, "kms_key_invalid"),
    "BadDigest": ChecksumMismatch,
    "InvalidDigest": ChecksumMismatch,
    "XAmzContentSHA256Mismatch": ChecksumMismatch,
}

_TRANSIENT_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EPIPE,
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.EAGAIN,
}


def classify(exc: BaseException, *, context: str = "") -> TransferError:
    """Sort ``exc`` into a TransientError or PermanentError (returned, not raised).

    Unknown exceptions are transient (DESIGN §3: logged with their traceback and retried
    up to the attempt limit): calling a surprise permanent would strand a transfer that a
    retry might well finish. ``context`` (e.g. ``"reading /in/a.csv"``) prefixes the message.
    """
    err = _classify(exc)
    if context and not err.message.startswith(context):
        err.message = f"{context}: {err.message}"
        err.args = (err.message,)
    err.__cause__ = exc if err is not exc else exc.__cause__
    return err


def _classify(exc: BaseException) -> TransferError:
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, asyncssh.SFTPError):
        return _classify_sftp(exc)
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyMismatch("The server's host key is not pinned for this endpoint.")
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthenticationFailed("The server refused the login.")
    if isinstance(exc, asyncssh.KeyExchangeFailed) and "host key" in (exc.reason or "").lower():
        # No host key algorithm in common (a pin of a key type the server lacks), said by a
        # server that sends a reason: permanent, unlike the network faults around it.
        return HostKeyMismatch(f"No host key algorithm in common with the server ({exc.reason}).")
    if isinstance(exc, asyncssh.ChannelOpenError):
        # Usually MaxSessions reached or the server going away: try again later.
        return TransientError(f"The server refused a new channel: {exc.reason}", code="channel_refused")
    if isinstance(exc, asyncssh.ConnectionLost | asyncssh.DisconnectError):
        return TransientError(f"The SSH connection was lost: {type(exc).__name__}.", code="connection_lost")

    if isinstance(exc, bce.ClientError):
        return _classify_s3(exc)
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return AuthenticationFailed("No usable AWS credentials for this endpoint.")
    if isinstance(
        exc,
        bce.EndpointConnectionError
        | bce.ConnectionClosedError
        | bce.ReadTimeoutError
        | bce.ConnectTimeoutError
        | bce.ResponseStreamingError
        | bce.HTTPClientError,
    ):
        return TransientError(f"S3 connection problem: {type(exc).__name__}.", code="connection_failed")

    if isinstance(exc, TimeoutError | asyncio.TimeoutError | socket.timeout):
        return TransientError("The operation timed out.", code="timeout")
    if isinstance(exc, ConnectionError):
        return TransientError(f"Connection problem: {type(exc).__name__}.", code="connection_failed")
    if isinstance(exc, FileNotFoundError):
        return SourceMissing("The file does not exist.")
    if isinstance(exc, PermissionError):
        return PermissionDenied("Permission denied.")
    if isinstance(exc, OSError):
        if exc.errno in _TRANSIENT_ERRNOS:
            return TransientError(f"Network error: {errno.errorcode.get(exc.errno, exc.errno)}.", code="network")
        if exc.errno == errno.ENOSPC:
            return TransientError("No space left on the device.", code="no_space")
        return TransientError(f"OS error: {type(exc).__name__}.", code="os_error")
    return TransientError(f"Unexpected error: {type(exc).__name__}.", code="unexpected")


def _classify_sftp(exc: asyncssh.SFTPError) -> TransferError:
    code = exc.code
    reason = exc.reason or "SFTP error"
    if code in (asyncssh.FX_NO_SUCH_FILE, asyncssh.FX_NO_SUCH_PATH):
        return SourceMissing(f"No such file or folder ({reason}).")
    if code in (asyncssh.FX_PERMISSION_DENIED, asyncssh.FX_WRITE_PROTECT):
        return PermissionDenied(f"Permission denied ({reason}).")
    if code == asyncssh.FX_FILE_ALREADY_EXISTS:
        return DestinationExists(f"The destination already exists ({reason}).")
    if code in (asyncssh.FX_NO_SPACE_ON_FILESYSTEM, asyncssh.FX_QUOTA_EXCEEDED):
        # A full disk or quota is an operator problem that a later retry may find fixed.
        return TransientError(f"The server is out of space ({reason}).", code="no_space")
    if code in (asyncssh.FX_CONNECTION_LOST, asyncssh.FX_NO_CONNECTION):
        return TransientError(f"The SFTP session was lost ({reason}).", code="connection_lost")
    if code in (asyncssh.FX_OP_UNSUPPORTED,):
        return PermanentError(f"The server does not support this operation ({reason}).", code="unsupported")
    # FX_FAILURE and friends: too vague to give up on.
    return TransientError(f"SFTP failure ({reason}).", code="sftp_failure")


def _classify_s3(exc: bce.ClientError) -> TransferError:
    error = exc.response.get("Error", {}) or {}
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = f"S3 {exc.operation_name} failed: {code or status}."
    if code in _S3_TRANSIENT or status in (429, 500, 502, 503, 504) or (status == 0 and not code):
        return TransientError(message, code="s3_throttled" if status in (429, 503) else "s3_unavailable")
    found = _S3_PERMANENT.get(code)
    if found is None and status in (403, 404):
        found = _S3_PERMANENT[str(status)]
    if found is None:
        if status == 412:
            return DestinationExists(message)
        if 400 <= status < 500:
            return PermanentError(message, code="s3_refused")
        return TransientError(message, code="s3_error")
    if isinstance(found, tuple):
        return found[0](message, code=found[1])
    return found(message)


def is_transient(exc: BaseException) -> bool:
    return classify(exc).transient
