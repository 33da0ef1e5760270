"""The local and test profiles talk to the emulator only.

A developer's shell may hold real AWS credentials. ``make run``, the tests and ``manage.py``
under ``FERRY_PROFILE=local`` or ``test`` must never reach real AWS with them: every AWS
endpoint they use has to be a loopback address (the moto server), unless the operator says
otherwise with ``FERRY_ALLOW_REAL_AWS=1``. Checked when the settings load, so a command
refuses to start rather than fail half-way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

ALLOW = "FERRY_ALLOW_REAL_AWS"


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refusal(environ: Mapping[str, str], profile: str) -> str | None:
    """Why this environment may not run under ``profile``, or None when it may."""
    if environ.get(ALLOW, "") in ("1", "true", "yes"):
        return None
    endpoints = {k: v for k, v in environ.items() if k == "AWS_ENDPOINT_URL" or k.startswith("AWS_ENDPOINT_URL_")}
    if "AWS_ENDPOINT_URL" not in endpoints:
        return (
            f"The {profile} profile talks to the AWS emulator only, and AWS_ENDPOINT_URL is not set. "
            "With `make run` up: source .local/stack.env. "
            f"To use real AWS on purpose, set {ALLOW}=1."
        )
    outside = sorted(k for k, v in endpoints.items() if not _loopback(v))
    if outside:
        return (
            f"The {profile} profile talks to the AWS emulator only, but {', '.join(outside)} "
            f"is not a loopback address. To use that endpoint on purpose, set {ALLOW}=1."
        )
    return None
