"""``FERRY_EGRESS_ADDRESSES``: the addresses Ferry connects from, per region.

Read by settings.py and published at ``GET /api/v1/network`` for customers' allowlists.
The format is the one region.yaml writes from the NAT gateways' EIPs of both regions:
``us-east-1=203.0.113.10,203.0.113.11;us-west-2=198.51.100.7,198.51.100.8``. A region may
have no address yet (the peer's before the pair's second deployment): ``us-west-2=``.
"""

from __future__ import annotations

import ipaddress
import re

import environ

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")


def parse(text: str) -> dict[str, list[str]]:
    """Region → addresses; ``ImproperlyConfigured`` naming the part that is wrong."""
    found: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        region, sep, addresses = part.partition("=")
        region = region.strip()
        if not sep or not _REGION.match(region):
            raise environ.ImproperlyConfigured(f"FERRY_EGRESS_ADDRESSES: {part!r} is not <region>=<addresses>")
        if region in found:
            raise environ.ImproperlyConfigured(f"FERRY_EGRESS_ADDRESSES: {region} is given twice")
        listed = []
        for address in filter(None, (a.strip() for a in addresses.split(","))):
            try:
                listed.append(str(ipaddress.ip_address(address)))
            except ValueError:
                raise environ.ImproperlyConfigured(
                    f"FERRY_EGRESS_ADDRESSES: {address!r} ({region}) is not an IP address"
                ) from None
        found[region] = listed
    return found
