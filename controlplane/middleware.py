"""Request-scoped middleware: liveness probe, request id and log context, request body limit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from controlplane import logs
from controlplane.correlation import new_request_id, valid_request_id
from controlplane.errors import error_response
from controlplane.health import healthz


def request_id_of(request: HttpRequest) -> str | None:
    return getattr(request, "request_id", None)


class LivenessProbeMiddleware:
    """Answer ``GET /healthz`` before anything validates the Host header.

    A load balancer's health check addresses the task by its private IP, which is not (and
    should not be) in ``ALLOWED_HOSTS``; Django would answer 400 and the target would never
    become healthy. Liveness says nothing about the request, so it skips host validation;
    every other path, ``/readyz`` included, still goes through it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)


class RequestContextMiddleware:
    """Give each request an id (or keep a sane incoming ``X-Request-ID``), bind it to the
    log context, echo it in the response, and log one access line."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = valid_request_id(incoming) or new_request_id()
        logs.clear()
        logs.bind(request_id=request.request_id, region=settings.FERRY_REGION)
        started = time.monotonic()
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        if not request.path.startswith(("/healthz", "/metrics", "/static/")):
            logging.getLogger("ferry.access").info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={"status": response.status_code, "ms": round((time.monotonic() - started) * 1000, 1)},
            )
        logs.clear()
        return response


class BodySizeLimitMiddleware:
    """Refuse request bodies over FERRY_MAX_BODY_BYTES with 413 before anything reads them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.FERRY_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if request.path.startswith("/api/") and length > limit:
            return error_response(
                request,
                status=413,
                code="request_too_large",
                message=f"Request bodies are limited to {limit} bytes.",
            )
        return self.get_response(request)
