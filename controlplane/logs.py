"""JSON log lines with bound context (request id, tenant, route, transfer, …).

Context lives in a ContextVar so every line of one request or one transfer's work carries
it. Secrets are kept out by construction (nothing secret is bound or logged); as a second
line of defence, values of keys that look secret and anything registered with
:func:`register_secret` are redacted from every line.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("ferry_log", default={})  # noqa: B039

_SECRET_KEYS = re.compile(r"pass(word|phrase)?|secret|private_key|token|authorization|api_key", re.I)
_REDACTED = "[redacted]"
_secrets_lock = threading.Lock()
_secrets: set[str] = set()


def bind(**values: Any) -> None:
    """Add values to the current context (for the rest of this request or task)."""
    _context.set({**_context.get(), **{k: v for k, v in values.items() if v is not None}})


@contextlib.contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Bind values for the duration of a block."""
    token = _context.set({**_context.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def clear() -> None:
    _context.set({})


def current() -> dict[str, Any]:
    return dict(_context.get())


def register_secret(value: str | None) -> None:
    """Remember a secret string so that it is masked if it ever reaches a log line."""
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _secrets_lock:
        known = list(_secrets)
    for value in known:
        if value in text:
            text = text.replace(value, _REDACTED)
    return text


def scrub(value: Any) -> Any:
    """``value`` with the values of secret-looking keys and registered secrets redacted
    (what every log line goes through; the audit log reuses it)."""
    if isinstance(value, dict):
        return {k: (_REDACTED if _SECRET_KEYS.search(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.ferry_context = _context.get()
        return True


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "ferry_context"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(getattr(record, "ferry_context", None) or _context.get())
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = redact("".join(traceback.format_exception(*record.exc_info)))
        return json.dumps(scrub(line), default=str, ensure_ascii=False)
