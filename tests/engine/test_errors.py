"""classify(): library exceptions sorted into transient and permanent (pure unit tests)."""

from __future__ import annotations

import errno

import asyncssh
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from engine.errors import (
    AuthenticationFailed,
    DestinationExists,
    PermissionDenied,
    SourceMissing,
    TransientError,
    classify,
)


def client_error(code: str, status: int, op: str = "PutObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


@pytest.mark.parametrize(
    ("exc", "transient", "code"),
    [
        (client_error("SlowDown", 503), True, "s3_throttled"),
        (client_error("InternalError", 500), True, "s3_unavailable"),
        (client_error("Whatever", 502), True, "s3_unavailable"),
        (client_error("AccessDenied", 403), False, "permission_denied"),
        (client_error("NoSuchKey", 404, "GetObject"), False, "source_missing"),
        (client_error("NoSuchBucket", 404), False, "bucket_missing"),
        (client_error("InvalidAccessKeyId", 403), False, "authentication_failed"),
        (client_error("PreconditionFailed", 412), False, "destination_exists"),
        (client_error("BadDigest", 400), False, "checksum_mismatch"),
        (EndpointConnectionError(endpoint_url="http://x"), True, "connection_failed"),
        (ReadTimeoutError(endpoint_url="http://x"), True, "connection_failed"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), True, "connection_failed"),
        (TimeoutError(), True, "timeout"),
        (OSError(errno.EHOSTUNREACH, "unreachable"), True, "network"),
        (asyncssh.ConnectionLost("gone"), True, "connection_lost"),
        (asyncssh.PermissionDenied("no"), False, "authentication_failed"),
        (
            asyncssh.KeyExchangeFailed(
                "No matching server host key algorithm found, sent rsa-sha2-512 and received ssh-ed25519"
            ),
            False,
            "host_key_mismatch",
        ),
        (asyncssh.KeyExchangeFailed("No matching encryption algorithm found"), True, "connection_lost"),
        (asyncssh.SFTPNoSuchFile("no"), False, "source_missing"),
        (asyncssh.SFTPPermissionDenied("no"), False, "permission_denied"),
        (asyncssh.SFTPFailure("eh"), True, "sftp_failure"),
        (asyncssh.SFTPFileAlreadyExists("there"), False, "destination_exists"),
        (RuntimeError("surprise"), True, "unexpected"),
    ],
)
def test_classify(exc, transient, code):
    err = classify(exc)
    assert (err.transient, err.code) == (transient, code)
    assert err.__cause__ is exc


def test_classify_keeps_transfer_errors_and_adds_context():
    original = SourceMissing("gone")
    assert classify(original) is original
    err = classify(ConnectionResetError(), context="reading /a")
    assert isinstance(err, TransientError)
    assert str(err).startswith("reading /a: ")


def test_kinds():
    assert not AuthenticationFailed("x").transient
    assert not PermissionDenied("x").transient
    assert DestinationExists("x").code == "destination_exists"
