"""One JSON error shape for every 4xx and 5xx (DESIGN.md §10).

``{"error": {"code", "message", "fields": {"<path>": ["<msg>"]}, "request_id"}}``

Services raise :class:`FerryError` subclasses; DRF's own exceptions are translated here;
anything unexpected becomes a 500 with a generic message (the traceback goes to the log,
never to the customer).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

log = logging.getLogger(__name__)


class FerryError(Exception):
    """An error a client caused or can act on; carries its HTTP status and code."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}


class NotFound(FerryError):
    status_code = 404
    code = "not_found"


class Conflict(FerryError):
    status_code = 409
    code = "conflict"


class Unavailable(FerryError):
    """503: a service Ferry depends on (or a feature) is not available now; try again."""

    status_code = 503
    code = "unavailable"


class ValidationFailed(FerryError):
    status_code = 400
    code = "validation_error"


class AuthenticationRefused(exceptions.AuthenticationFailed):
    """A 401 with a code of its own (``api_key_expired``) instead of ``not_authenticated``.

    An ``AuthenticationFailed`` so that DRF still answers it with ``WWW-Authenticate``.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.ferry_code = code


_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "internal_error",
    503: "unavailable",
}


def _encodable(text: Any) -> str:
    # A lone surrogate (from a "\ud800" escape that reached a field name or message)
    # cannot be encoded as UTF-8: rendering it would turn a 400 into a 500. "?" instead.
    return str(text).encode("utf-8", "replace").decode("utf-8")


def body(
    *, status: int, code: str | None = None, message: str, fields: dict | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """The error shape. Never echoes text that cannot be encoded (see :func:`_encodable`)."""
    return {
        "error": {
            "code": code or _CODES.get(status, "error"),
            "message": _encodable(message),
            "fields": {
                _encodable(path): [_encodable(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
                for path, msgs in (fields or {}).items()
            },
            "request_id": request_id,
        }
    }


def error_response(
    request: HttpRequest, *, status: int, message: str, code: str | None = None, fields: dict | None = None
) -> JsonResponse:
    """A plain Django JSON response in the error shape (for middleware and Django views)."""
    return JsonResponse(
        body(status=status, code=code, message=message, fields=fields, request_id=getattr(request, "request_id", None)),
        status=status,
    )


def flatten_fields(detail: Any, path: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into ``{"config.host": ["…"]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "non_field_errors":
                sub = path or "non_field_errors"
            for k, v in flatten_fields(value, sub).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out[path or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                for k, v in flatten_fields(item, f"{path}.{index}" if path else str(index)).items():
                    out.setdefault(k, []).extend(v)
    else:
        out[path or "non_field_errors"] = [str(detail)]
    return out


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF exception handler: every error in the one shape, never a traceback."""
    request = context.get("request")
    request_id = getattr(getattr(request, "_request", request), "request_id", None)
    headers: dict[str, str] = {}
    if isinstance(exc, FerryError):
        data = body(
            status=exc.status_code, code=exc.code, message=exc.message, fields=exc.fields, request_id=request_id
        )
        return Response(data, status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        code = _CODES.get(exc.status_code, "error")
        if isinstance(exc, exceptions.ValidationError):
            fields = flatten_fields(exc.detail)
            message = "The request is not valid."
            if list(fields) == ["non_field_errors"]:
                message = fields["non_field_errors"][0]
            data = body(status=400, code="validation_error", message=message, fields=fields, request_id=request_id)
        else:
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            data = body(status=exc.status_code, code=code, message=str(detail), request_id=request_id)
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            headers["WWW-Authenticate"] = "Bearer"
            exc.status_code = status.HTTP_401_UNAUTHORIZED
            data["error"]["code"] = getattr(exc, "ferry_code", "not_authenticated")
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        return Response(data, status=exc.status_code, headers=headers)
    log.exception("unhandled error in API view")
    return Response(
        body(status=500, message="Internal error; the request id identifies it in our logs.", request_id=request_id),
        status=500,
    )


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request, status=400, message="Bad request.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request, status=403, message="Permission denied.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request, status=404, message="Not found.")


def handler500(request: HttpRequest) -> JsonResponse:
    return error_response(request, status=500, message="Internal error; the request id identifies it in our logs.")
