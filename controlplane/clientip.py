"""The address a request came from, for API keys' last use and the admin's login lockout.

Behind no proxy (``FERRY_TRUSTED_PROXY_HOPS=0``, the default) it is ``REMOTE_ADDR``:
``X-Forwarded-For`` is ignored, because any client can send one. Behind N trusted proxies
(on AWS one: the ALB) it is the N-th entry of ``X-Forwarded-For`` counted from the right.
Each proxy appends the address it received the request from, so the right-most entries are
the trusted ones; the left-most is whatever the client wrote and is never used (the ALB
keeps a client's own header and appends to it).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _normalised(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address as this deployment can trust it, or None when unknown."""
    remote = request.META.get("REMOTE_ADDR")
    hops = settings.FERRY_TRUSTED_PROXY_HOPS
    if hops <= 0:
        return _normalised(remote)
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        # Not through the expected proxies (a health check, a direct call inside the VPC).
        return _normalised(remote)
    return _normalised(forwarded[-hops])


def through_proxies(request: HttpRequest) -> bool:
    """Whether the request came through the deployment's trusted proxies (the ALB on AWS).

    Each trusted proxy appends one ``X-Forwarded-For`` entry, so fewer entries than
    ``FERRY_TRUSTED_PROXY_HOPS`` (or no trusted proxy at all) means the request reached the
    task another way, and headers that only the proxy may set (mTLS) are not believed.
    """
    hops = settings.FERRY_TRUSTED_PROXY_HOPS
    if hops <= 0:
        return False
    forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    return len(forwarded) >= hops
