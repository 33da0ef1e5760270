"""The operators' pages (``/admin/``, ``/metrics``) answer only on the operators' host names.

On AWS the public listener already answers 404 for these paths and only the internal
listener (or the allowlisted rule) forwards them (deploy/aws/region.yaml). This is the
second fence, in the application: with ``FERRY_ADMIN_HOSTS`` set, a request for them that
arrives with another ``Host`` (through the public name) gets the same 404 as an unknown
path, so the admin's login page is not even shown there. Empty: every host (local, tests).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port

from controlplane.errors import handler404


def _host(request: HttpRequest) -> str:
    # get_host() was validated against ALLOWED_HOSTS by CommonMiddleware, before this one.
    return split_domain_port(request.get_host())[0].lower()


def is_operator_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/") or path in ("/metrics", "/metrics/")


class OperatorHostsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        hosts = settings.FERRY_ADMIN_HOSTS
        if hosts and is_operator_path(request.path) and _host(request) not in {h.lower() for h in hosts}:
            return handler404(request)
        return self.get_response(request)
