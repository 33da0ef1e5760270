"""Business metadata: a small map of the customer's own strings on routes and transfers, pure.

A route's ``metadata`` is copied onto every transfer it creates (like its options, so a
later change never touches a transfer on its way); an ad-hoc transfer carries its own. It is
returned by the API, put on every notification event, and written as S3 *user metadata*
(``x-amz-meta-<key>``) on objects delivered to an S3 destination.

S3 allows at most 2 KB of user metadata per object, counted as the UTF-8 bytes of every key
and value, keys stored lowercase; Ferry writes its own ``ferry-transfer-id`` (53 bytes)
beside the customer's. The limits below keep the customer's part within 1 KB, so both fit
with room to spare, and refuse what S3 would change or refuse: uppercase keys (S3 lowers
them, so two keys could collide), non-ASCII values (S3 wants them RFC 2047-encoded) and
control characters (header injection). Keys starting ``ferry-`` are Ferry's own.
"""

from __future__ import annotations

import re
from typing import Any

MAX_KEYS = 10
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 256
MAX_TOTAL_BYTES = 1024
RESERVED_PREFIX = "ferry-"
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Printable ASCII: what an HTTP header value carries unchanged.
VALUE_RE = re.compile(r"^[\x20-\x7e]*$")


class InvalidMetadata(ValueError):
    """``fields`` maps ``metadata`` or ``metadata.<key>`` to its messages (safe to show)."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()))
        self.fields = fields


def normalize(raw: Any) -> dict[str, str]:
    """Validate a metadata map; returns a plain ``dict[str, str]`` (``None`` is ``{}``).

    Raises :class:`InvalidMetadata` naming every offending key.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidMetadata({"metadata": ["Must be an object of strings."]})
    errors: dict[str, list[str]] = {}
    if len(raw) > MAX_KEYS:
        errors["metadata"] = [f"At most {MAX_KEYS} keys."]
    total = 0
    for key, value in raw.items():
        # Shown in the error's field path: cut, so a hostile key cannot make the error huge.
        field = f"metadata.{str(key)[:MAX_KEY_LENGTH]}"
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH or not KEY_RE.match(key):
            errors[field] = [
                f"Keys are 1-{MAX_KEY_LENGTH} characters of a-z, 0-9, '-' and '_', starting with a letter or digit."
            ]
            continue
        if key.startswith(RESERVED_PREFIX):
            errors[field] = [f"Keys starting with {RESERVED_PREFIX!r} are Ferry's own."]
            continue
        if not isinstance(value, str):
            errors[field] = ["Values are strings."]
            continue
        if len(value) > MAX_VALUE_LENGTH or not VALUE_RE.match(value):
            errors[field] = [f"Values are at most {MAX_VALUE_LENGTH} printable ASCII characters."]
            continue
        total += len(key) + len(value)
    if total > MAX_TOTAL_BYTES and "metadata" not in errors:
        errors["metadata"] = [
            f"Keys and values together are at most {MAX_TOTAL_BYTES} characters (S3's limit is 2 KB)."
        ]
    if errors:
        raise InvalidMetadata(errors)
    return {str(k): str(v) for k, v in raw.items()}
