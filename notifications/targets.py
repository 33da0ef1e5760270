"""Validation of subscription targets: webhook URLs and EventBridge bus ARNs.

A webhook URL must be HTTPS and its host must pass the same SSRF guard as endpoints
(endpoints/netguard.py): checked here at creation, and again at every connection
(notifications/webhooks.py connects to the address it checked).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from endpoints import netguard

MAX_URL = 2048
# arn:<partition>:events:<region>:<account>:event-bus/<name>
BUS_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:events:([a-z]{2}(?:-gov)?-[a-z]+-[0-9]):([0-9]{12}):event-bus/[A-Za-z0-9._/\-]{1,256}"
)


class Invalid(ValueError):
    """The target is refused; the message is safe to show the customer."""


def split_url(url: str) -> tuple[str, int]:
    """(host, port) of an acceptable webhook URL; raise Invalid otherwise (no network)."""
    if len(url) > MAX_URL:
        raise Invalid(f"At most {MAX_URL} characters.")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise Invalid("A URL has no spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise Invalid("Not a valid URL.") from None
    if parts.scheme != "https":
        raise Invalid("Webhooks are HTTPS only: the URL must start with https://.")
    if not parts.hostname:
        raise Invalid("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise Invalid("Credentials in the URL are not allowed; verify Ferry's signature instead.")
    if parts.fragment:
        raise Invalid("A URL fragment is not sent; remove it.")
    return parts.hostname, port


def check_url(url: str) -> netguard.Checked:
    """Validate ``url`` and resolve its host through the SSRF guard; raise Invalid."""
    host, port = split_url(url)
    try:
        return netguard.guard_from_settings(host, port, check_ports=False)
    except netguard.Refused as exc:
        raise Invalid(str(exc)) from None


def bus_region(arn: str) -> str:
    """The region of an EventBridge bus ARN; raise Invalid when it is not one."""
    match = BUS_ARN.fullmatch(arn)
    if not match:
        raise Invalid("Not an EventBridge event bus ARN (arn:aws:events:<region>:<account>:event-bus/<name>).")
    return match.group(1)
