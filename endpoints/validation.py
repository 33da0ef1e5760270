"""Validation rules for endpoint configuration and credentials: pure functions.

Each function returns the normalised value or raises :class:`Invalid` with a message
that is safe to show (it never repeats a submitted secret). The API serializers map these
onto field paths (``config.host``, ``credentials.private_key``…); docs/endpoints.md lists
the rules.
"""

from __future__ import annotations

import ipaddress
import re

import asyncssh

from controlplane.text import CONTROL_CHARS as _CONTROL
from engine import hostkeys

MAX_PINS = 10
MAX_PRIVATE_KEY = 16 * 1024
MAX_PASSWORD = 1024

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
_USERNAME = re.compile(r"^[A-Za-z0-9._@+-][A-Za-z0-9._@+\\ -]{0,254}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$")
_ROLE_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
_KMS_KEY = re.compile(
    r"^(arn:aws(-[a-z]+)*:kms:[a-z0-9-]+:[0-9]{12}:(key/[0-9a-f-]{36}|alias/[A-Za-z0-9/_-]{1,250})"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|alias/[A-Za-z0-9/_-]{1,250})$"
)
_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_SECRET_ACCESS_KEY = re.compile(r"^[A-Za-z0-9/+=]{16,128}$")


class Invalid(ValueError):
    """A rule failed; ``str()`` is the customer-facing message."""


def name(value: str) -> str:
    value = value.strip()
    if not _NAME.match(value):
        raise Invalid(
            "Names are 1-100 characters: letters, digits, space, '.', '_' and '-', starting with a letter or digit."
        )
    return value


def host(value: str) -> str:
    """A DNS host name (RFC 1123) or an IPv4/IPv6 literal; lower-cased, no trailing dot."""
    value = value.strip()
    candidate = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    hostname = value.lower().rstrip(".")
    if not hostname or len(hostname) > 253:
        raise Invalid("Enter a host name or an IP address (253 characters at most).")
    labels = hostname.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise Invalid("Enter a host name (letters, digits and '-' in dot-separated labels) or an IP address.")
    if labels[-1].isdigit():
        raise Invalid("Enter a valid IPv4 address or a host name whose last label is not numeric.")
    return hostname


def port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise Invalid("Ports are 1-65535.")
    return value


def username(value: str) -> str:
    if not _USERNAME.match(value):
        raise Invalid("User names are 1-255 characters without control characters, ':' or '/'.")
    return value


def remote_root(value: str) -> str:
    """An absolute POSIX path without '..', NUL or control characters; normalised slashes."""
    if not value.startswith("/"):
        raise Invalid("The root must be an absolute path (start with '/').")
    if _CONTROL.search(value):
        raise Invalid("The root cannot contain control characters.")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Invalid("The root cannot contain '..'.")
    if len(value) > 1024:
        raise Invalid("The root is at most 1024 characters.")
    return "/" + "/".join(parts)


def pins(values: list[str]) -> list[str]:
    """1-10 pins ``"<key type> SHA256:<fingerprint>"``, duplicates removed, order kept."""
    if not 1 <= len(values) <= MAX_PINS:
        raise Invalid(f"Pin between 1 and {MAX_PINS} host keys.")
    out: list[str] = []
    for index, value in enumerate(values):
        try:
            key_type, fingerprint = hostkeys.parse_pin(value)
        except hostkeys.InvalidPin as exc:
            raise Invalid(f"Host key {index + 1}: {exc}") from None
        pin = f"{key_type} {fingerprint}"
        if pin not in out:
            out.append(pin)
    return out


def bucket(value: str) -> str:
    """S3 general purpose bucket naming rules."""
    if not _BUCKET.match(value):
        raise Invalid(
            "Bucket names are 3-63 characters: lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit."
        )
    if ".." in value or ".-" in value or "-." in value:
        raise Invalid("Bucket names cannot contain '..', '.-' or '-.'.")
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        pass
    else:
        raise Invalid("Bucket names cannot be formatted as an IP address.")
    if value.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or value.endswith(
        ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
    ):
        raise Invalid("Bucket names cannot use the prefixes and suffixes S3 reserves.")
    return value


def prefix(value: str) -> str:
    """An S3 key prefix: relative (no leading '/'), no control characters, no '..' segment."""
    if _CONTROL.search(value):
        raise Invalid("The prefix cannot contain control characters.")
    if value.startswith("/"):
        raise Invalid("S3 prefixes do not start with '/'.")
    if ".." in value.split("/"):
        raise Invalid("The prefix cannot contain a '..' segment.")
    if len(value.encode()) > 512:
        raise Invalid("The prefix is at most 512 bytes.")
    return value


def region(value: str) -> str:
    if not _REGION.match(value):
        raise Invalid("Enter an AWS region name such as 'eu-west-1'.")
    return value


def role_arn(value: str) -> str:
    if not _ROLE_ARN.match(value):
        raise Invalid("Enter an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>.")
    return value


def account_id(value: str) -> str:
    if not _ACCOUNT_ID.match(value):
        raise Invalid("Enter the 12-digit AWS account id that owns the bucket.")
    return value


def kms_key_id(value: str) -> str:
    if not _KMS_KEY.match(value):
        raise Invalid("Enter a KMS key id, key ARN, alias name ('alias/…') or alias ARN.")
    return value


def access_key_id(value: str) -> str:
    if not _ACCESS_KEY_ID.match(value):
        raise Invalid("Access key ids are 16-128 uppercase letters and digits.")
    return value


def secret_access_key(value: str) -> str:
    if not _SECRET_ACCESS_KEY.match(value):
        raise Invalid("Secret access keys are 16-128 characters of letters, digits, '/', '+' and '='.")
    return value


def password(value: str) -> str:
    if not value or len(value) > MAX_PASSWORD:
        raise Invalid(f"Passwords are 1-{MAX_PASSWORD} characters.")
    if "\x00" in value:
        raise Invalid("Passwords cannot contain NUL.")
    return value


class KeyProblem(Invalid):
    """``field`` is the credentials field the message belongs to."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def private_key(value: str, passphrase: str | None) -> str:
    """A private key asyncssh can load (OpenSSH, PEM or PKCS#8), decrypted by ``passphrase``.

    An encrypted key without its passphrase, a wrong passphrase and a passphrase given for
    an unencrypted key are all refused. Messages name the problem, never the key.
    """
    if len(value) > MAX_PRIVATE_KEY:
        raise KeyProblem(f"Private keys are at most {MAX_PRIVATE_KEY} characters.", "private_key")
    try:
        asyncssh.import_private_key(value, passphrase or None)
    except asyncssh.KeyEncryptionError:
        raise KeyProblem("The passphrase does not decrypt the private key.", "passphrase") from None
    except (asyncssh.KeyImportError, ValueError, TypeError) as exc:
        if "assphrase must be specified" in str(exc):
            raise KeyProblem("The private key is encrypted: give its passphrase.", "passphrase") from None
        raise KeyProblem(
            "The private key could not be read (OpenSSH, PEM or PKCS#8 private key expected).", "private_key"
        ) from None
    if passphrase:
        try:
            asyncssh.import_private_key(value)
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError):
            pass
        else:
            raise KeyProblem("A passphrase was given but the private key is not encrypted.", "passphrase")
    return value
