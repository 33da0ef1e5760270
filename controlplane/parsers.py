"""Parsing request input so that no body or query gives a 500 (issue 13, item 3).

:class:`JSONParser` is DRF's JSON parser with three limits DRF and the standard library
do not set: the body size (read at most ``FERRY_MAX_BODY_BYTES``, so a chunked body with no
Content-Length is capped too; ``BodySizeLimitMiddleware`` refuses declared lengths
earlier), the nesting depth (:data:`MAX_JSON_DEPTH`; ``json`` itself only stops at the
interpreter's recursion limit, with a ``RecursionError``), and text that is not valid
Unicode (a lone surrogate escape such as ``"\\ud800"`` decodes to a ``str`` that cannot
be encoded, so the 400 naming it could not be rendered). Each is a 4xx in the one error
shape, and none echoes the input.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions, parsers

# Ferry's own bodies nest at most four levels (a route's trigger or options); 32 leaves
# room for any future shape and stays far below the interpreter's recursion limit.
MAX_JSON_DEPTH = 32


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_json(data: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise ``ParseError`` if ``data`` nests deeper than ``max_depth`` or holds a string
    (key or value) that is not valid Unicode. Iterative, so it cannot recurse too deep."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list) and depth > max_depth:
            raise exceptions.ParseError(f"JSON nested deeper than {max_depth} levels.")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise exceptions.ParseError(
            "The body holds text that is not valid Unicode (an unpaired surrogate escape)."
        ) from None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a size cap, a depth cap and valid Unicode only."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.FERRY_MAX_BODY_BYTES
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestTooLarge(f"Request bodies are limited to {limit} bytes.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise exceptions.ParseError(f"The body is not valid {encoding}.") from None
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.") from None
        except ValueError as exc:
            # json's messages name a position, never the input itself.
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        check_json(data)
        return data


def parse_time(value: str) -> datetime | None:
    """An ISO 8601 time, or None when ``value`` is not one. Django's ``parse_datetime``
    returns None for a wrong format but raises ``ValueError`` for a well-formed impossible
    one (``2026-13-45T99:99:99Z``); both are the client's mistake."""
    try:
        return parse_datetime(value)
    except ValueError:
        return None
