"""Per-tenant rate limits on the API (docs/api.md, "Rate limits").

DRF's throttling, keyed by tenant and scope: ``read`` (safe methods), ``write`` (the rest)
and ``probe`` (operations that open outbound connections: connection tests and host-key
scans, declared on the view with ``throttle_scope = "probe"``). The rates are settings
(``FERRY_RATE_LIMIT_READ`` / ``_WRITE`` / ``_PROBE``); the counters live in the
``ratelimit`` cache, which on AWS is the region's own Redis (ElastiCache): every API task of
a region counts against one limit, and a request never waits on the other region.

A counter store that cannot be reached lets the request through (logged): the limits protect
Ferry from a noisy tenant, and an outage of the store must not become an outage of the API.
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.core.cache import caches
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

log = logging.getLogger(__name__)

CACHE_ALIAS = "ratelimit"
SCOPES = ("read", "write", "probe")
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"120/min"`` → (120, 60): requests per period (``s``, ``m``, ``h``, ``d``, DRF's format)."""
    number, _, period = rate.partition("/")
    if not number.isdigit() or not period or period[0] not in _PERIODS:
        raise ValueError(f"a rate is '<requests>/<s|min|hour|day>', not {rate!r}")
    return int(number), _PERIODS[period[0]]


def rates() -> dict[str, tuple[int, int]]:
    """Each scope's limit as the settings give it."""
    return {
        "read": parse_rate(settings.FERRY_RATE_LIMIT_READ),
        "write": parse_rate(settings.FERRY_RATE_LIMIT_WRITE),
        "probe": parse_rate(settings.FERRY_RATE_LIMIT_PROBE),
    }


def scope_of(request: Request, view: object) -> str:
    """The limit a request counts against: the view's own scope, else read or write."""
    declared = getattr(view, "throttle_scope", None)
    if declared:
        return declared
    return "read" if request.method in SAFE_METHODS else "write"


class TenantRateThrottle(BaseThrottle):
    """A tenant's requests per scope and fixed window, counted in the region's shared store.

    One atomic ``INCR`` per request on a key per tenant, scope and window (Redis; Django's
    cache ``add`` + ``incr``), not DRF's ``SimpleRateThrottle``: that one reads the whole
    request history, appends and writes it back, so two API tasks counting at once lose
    requests, and its value grows with the limit. A fixed window lets a burst of up to twice
    the limit straddle a window's end; docs/api.md says so. Unauthenticated requests are not
    counted (they end in 401 before any work; the schema and health views take no key).
    """

    timer = staticmethod(time.time)

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def allow_request(self, request: Request, view: object) -> bool:
        tenant = getattr(getattr(request, "user", None), "tenant", None)
        if tenant is None:
            return True
        scope = scope_of(request, view)
        limit, period = rates()[scope]
        now = self.timer()
        window = int(now // period)
        key = f"throttle:{scope}:{tenant.id}:{window}"
        try:
            store = caches[CACHE_ALIAS]
            store.add(key, 0, timeout=period + 1)
            try:
                count = store.incr(key)
            except ValueError:  # expired between the two calls: the window's first request
                store.add(key, 1, timeout=period + 1)
                count = 1
        except Exception:
            log.warning("rate-limit store unreachable; request let through", exc_info=True)
            return True
        if count <= limit:
            return True
        self.retry_after = max(1, math.ceil((window + 1) * period - now))
        log.info("rate limit reached", extra={"scope": scope, "limit": limit, "period": period})
        return False

    def wait(self) -> float | None:
        """Seconds until the window ends (DRF puts it in the 429's ``Retry-After``)."""
        return self.retry_after
