"""SSRF guard: resolve an endpoint's host and refuse addresses Ferry must never reach.

Customers name hosts; Ferry's workers run inside a VPC next to the metadata service,
databases and other tenants' traffic. So a host is resolved and *every* address it
resolves to must be public (a name with one public and one private A record is refused:
DNS answers can be rotated between the check and the connect). The caller then connects
to the checked address, never to a fresh resolution of the name.

Pure functions: the allow-list and the allowed ports are arguments, so the policy can be
tested without settings. :func:`guard_from_settings` is the one place settings are read.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges refused on top of what ``ipaddress`` reports as non-global. Python 3.11's
# ``is_global`` misses a few (192.0.0.0/24, multicast, 6to4/NAT64 forms that embed a
# private IPv4 address); the embedded forms are unwrapped in :func:`_embedded_ipv4`.
_BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, the instance metadata service
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/128",
        "::1/128",
        "100::/64",  # discard
        "2001:db8::/32",
        "64:ff9b:1::/48",  # local-use NAT64
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

MAX_HOSTNAME = 253


class Refused(ValueError):
    """The host, address or port is not allowed; the message is safe to show a customer."""


class Unresolvable(Refused):
    """The host name does not resolve (possibly for a moment: DNS failures can pass)."""


@dataclass(frozen=True)
class Checked:
    """The outcome of a successful check: connect to ``address`` (not to ``host``)."""

    host: str
    port: int
    address: str
    addresses: tuple[str, ...]


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Operator allow-list entries ("127.0.0.0/8", "::1") → networks; raise ValueError when malformed."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v and v.strip())


def parse_ports(values: Iterable[str | int]) -> frozenset[int]:
    """Operator port list ("22", "2222") → ports; empty means any port."""
    return frozenset(int(v) for v in values if str(v).strip())


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, Teredo, NAT64), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # IPv4-compatible (::a.b.c.d, deprecated): treat like mapped.
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _allowed_by(ip: IPAddress, allow: Sequence[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in allow)


def is_forbidden(ip: IPAddress) -> bool:
    """True when ``ip`` (or the IPv4 address it embeds) is not a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # ::ffff:a.b.c.d reaches a.b.c.d: judge it as that address.
        return is_forbidden(ip.ipv4_mapped)
    if any(ip.version == net.version and ip in net for net in _BLOCKED):
        return True
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return True
    inner = _embedded_ipv4(ip)
    return inner is not None and is_forbidden(inner)


def check_address(address: str, *, allow: Sequence[IPNetwork] = ()) -> IPAddress:
    """Return the parsed address when Ferry may connect to it; raise Refused otherwise.

    An operator allow-list entry wins over the built-in refusals (the local stack and the
    tests allow loopback this way); an embedded IPv4 address is checked against it too.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise Refused(f"{address!r} is not an IP address.") from None
    inner = _embedded_ipv4(ip)
    if _allowed_by(ip, allow) or (inner is not None and _allowed_by(inner, allow)):
        return ip
    if is_forbidden(ip):
        raise Refused(
            f"{address} is a loopback, private, link-local or reserved address; Ferry does not connect there."
        )
    return ip


def check_port(port: int, *, allowed_ports: frozenset[int] | set[int] = frozenset()) -> int:
    if not 1 <= port <= 65535:
        raise Refused("Ports are 1-65535.")
    if allowed_ports and port not in allowed_ports:
        raise Refused(f"Port {port} is not allowed; allowed ports: {', '.join(map(str, sorted(allowed_ports)))}.")
    return port


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address ``host`` resolves to (an IP literal resolves to itself), in resolver order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"The host name {host!r} does not resolve.") from exc
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in seen:
            seen.append(addr)
    if not seen:
        raise Unresolvable(f"The host name {host!r} does not resolve.")
    return tuple(seen)


def guard(
    host: str,
    port: int,
    *,
    allow: Sequence[IPNetwork] = (),
    allowed_ports: frozenset[int] | set[int] = frozenset(),
) -> Checked:
    """Resolve ``host`` and check every address and the port; return the address to use.

    Refuses when *any* resolved address is forbidden, so a name cannot smuggle a private
    address past the check by listing a public one first.
    """
    check_port(port, allowed_ports=allowed_ports)
    addresses = resolve(host, port)
    for address in addresses:
        try:
            check_address(address, allow=allow)
        except Refused:
            if address == host:
                raise
            raise Refused(
                f"{host} resolves to {address}, a loopback, private, link-local or reserved address; "
                "Ferry does not connect there."
            ) from None
    return Checked(host=host, port=port, address=addresses[0], addresses=addresses)


def guard_from_settings(host: str, port: int, *, check_ports: bool = True) -> Checked:
    """:func:`guard` with the operator's allow-list (``FERRY_NETGUARD_ALLOW``) and SFTP
    ports (``FERRY_SFTP_ALLOWED_PORTS``; ``check_ports=False`` for non-SFTP hosts)."""
    allow = parse_networks(settings.FERRY_NETGUARD_ALLOW)
    ports = parse_ports(settings.FERRY_SFTP_ALLOWED_PORTS) if check_ports else frozenset()
    return guard(host, port, allow=allow, allowed_ports=ports)
