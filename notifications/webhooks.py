"""Sending one signed webhook: Standard Webhooks headers, SSRF-guarded, bounded.

- Signed with the ``standardwebhooks`` library (HMAC-SHA256 over ``id.timestamp.body``);
  during a secret rotation's overlap the message carries both signatures, space-separated.
- The URL's host is resolved and checked by the SSRF guard (endpoints/netguard.py) at every
  send, and the connection goes to the checked address (TLS still verifies the URL's host
  name, sent as SNI): a DNS answer changed since the subscription was made cannot point
  Ferry at a private address.
- HTTPS only, redirects never followed (a 3xx is a failed attempt), connect and read
  timeouts, and at most FERRY_WEBHOOK_MAX_RESPONSE_BYTES of the answer are read.

urllib3 (already a dependency of botocore) makes the connection: it lets the TCP address
and the TLS host name differ, which the higher-level clients do not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from standardwebhooks import Webhook

from endpoints import netguard
from notifications import targets

USER_AGENT = "Ferry-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    """What one attempt gave: ``ok`` for a 2xx answer."""

    ok: bool
    status_code: int | None = None
    latency_ms: int | None = None
    error: str = ""


def sign(*, secrets: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per secret, space-separated."""
    return " ".join(Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body) for secret in secrets)


def headers(*, secrets: list[str], msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of a message."""
    now = now or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(secrets=secrets, msg_id=msg_id, timestamp=now, body=body),
    }


def post(*, url: str, body: str, signed: dict[str, str]) -> Outcome:
    """POST ``body`` to ``url`` once. Never raises for a network or HTTP failure: the
    outcome says what happened, in words safe to show the customer."""
    try:
        host, port = targets.split_url(url)
        checked = netguard.guard_from_settings(host, port, check_ports=False)
    except (targets.Invalid, netguard.Refused) as exc:
        return Outcome(ok=False, error=f"refused: {exc}"[:500])
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connect, read = settings.FERRY_WEBHOOK_CONNECT_TIMEOUT, settings.FERRY_WEBHOOK_READ_TIMEOUT
    pool = urllib3.HTTPSConnectionPool(
        checked.address,
        port,
        server_hostname=host,
        assert_hostname=host,
        cert_reqs="CERT_REQUIRED",
        ca_certs=settings.FERRY_WEBHOOK_CA_BUNDLE or None,
        timeout=urllib3.Timeout(connect=connect, read=read, total=connect + read),
        retries=False,
        maxsize=1,
    )
    started = time.monotonic()
    try:
        response = pool.urlopen(
            "POST",
            path,
            body=body.encode(),
            headers={
                **signed,
                "Host": parts.netloc.rsplit("@", 1)[-1],
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
            redirect=False,
            retries=False,
            preload_content=False,
        )
        try:
            # Bounded: the answer is read only to let the connection finish cleanly.
            response.read(settings.FERRY_WEBHOOK_MAX_RESPONSE_BYTES, decode_content=False)
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        latency = int((time.monotonic() - started) * 1000)
        return Outcome(ok=False, latency_ms=latency, error=_describe(exc))
    finally:
        pool.close()
    latency = int((time.monotonic() - started) * 1000)
    status = response.status
    if 200 <= status < 300:
        return Outcome(ok=True, status_code=status, latency_ms=latency)
    if 300 <= status < 400:
        return Outcome(ok=False, status_code=status, latency_ms=latency, error="redirects are not followed")
    return Outcome(ok=False, status_code=status, latency_ms=latency, error=f"HTTP {status}")


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "TLS failed (certificate not trusted or host name mismatch)"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "connect timed out"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "read timed out"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "connection refused or unreachable"
    return f"connection failed ({type(exc).__name__})"
