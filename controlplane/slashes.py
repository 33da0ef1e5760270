"""Both slash variants of every path.

Ferry's API paths have no trailing slash and the admin's have one; clients type both. A
redirect (Django's ``APPEND_SLASH``) cannot carry a POST body, so a path that does not
resolve is tried once with its trailing slash added or removed and, if that resolves, served
in place. The schema keeps documenting the canonical form.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, get_resolver


def _resolves(path: str) -> bool:
    try:
        get_resolver().resolve(path)
    except Resolver404:
        return False
    return True


def other_form(path: str) -> str | None:
    """The path with its trailing slash toggled; None for the root, which has only one form."""
    if path in ("", "/"):
        return None
    return path[:-1] if path.endswith("/") else path + "/"


class OptionalSlashMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        other = other_form(path)
        if other is not None and not _resolves(path) and _resolves(other):
            request.path_info = other
        return self.get_response(request)
