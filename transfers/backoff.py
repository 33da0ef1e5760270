"""Retry delays: exponential backoff with full jitter, capped.

``delay(attempt) = uniform(0, min(cap, base * 2 ** (attempt - 1)))``

Full jitter spreads retries of transfers that failed together (one SFTP server went down
for a minute, say) so they do not come back in lockstep. With the defaults
(``FERRY_RETRY_BASE_SECONDS=10``, ``FERRY_RETRY_CAP_SECONDS=900``) the ceilings are 10 s,
20 s, 40 s, 80 s, 160 s … up to 15 minutes from the 8th attempt on; with the default limit
of 5 attempts a transfer that keeps failing turns ``dead`` within about 2.5 minutes of
retries at most (the ceilings of attempts 1-4 add up to 150 s).
"""

from __future__ import annotations

import random

from django.conf import settings


def ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The largest delay after failed attempt number ``attempt`` (1-based)."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    # min() before the power would overflow for absurd attempt numbers.
    exponent = min(attempt - 1, 62)
    return min(cap, base * (2**exponent))


def delay(
    attempt: int, *, base: float | None = None, cap: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds to wait before the next attempt after failed attempt ``attempt``."""
    base = settings.FERRY_RETRY_BASE_SECONDS if base is None else base
    cap = settings.FERRY_RETRY_CAP_SECONDS if cap is None else cap
    return (rng or random).uniform(0, ceiling(attempt, base=base, cap=cap))
