"""Pinned SSH host keys: parsing pins and making asyncssh accept only pinned keys.

A pin reads ``"<key type> SHA256:<base64 fingerprint>"``, the way ``ssh-keygen -lf``
and OpenSSH print fingerprints. A connection offers only the pinned key types (so the
server presents a key we can check) and accepts the server key only when its SHA-256
fingerprint is pinned for that type.
"""

from __future__ import annotations

import asyncio
import re

import asyncssh

# Pinned key type → the host key algorithms a client may offer for it.
KEY_TYPE_ALGORITHMS: dict[str, list[str]] = {
    "ssh-ed25519": ["ssh-ed25519"],
    "ecdsa-sha2-nistp256": ["ecdsa-sha2-nistp256"],
    "ecdsa-sha2-nistp384": ["ecdsa-sha2-nistp384"],
    "ecdsa-sha2-nistp521": ["ecdsa-sha2-nistp521"],
    "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256"],
}
ALGORITHM_KEY_TYPE = {alg: kt for kt, algs in KEY_TYPE_ALGORITHMS.items() for alg in algs}

PIN_RE = re.compile(r"^(?P<type>[a-z0-9-]+) SHA256:(?P<fp>[A-Za-z0-9+/]{43})$")


class InvalidPin(ValueError):
    pass


def parse_pin(pin: str) -> tuple[str, str]:
    """Split a pin into (key type, ``SHA256:…``); raise InvalidPin when malformed."""
    match = PIN_RE.match(pin.strip()) if isinstance(pin, str) else None
    if not match:
        raise InvalidPin("Expected '<key type> SHA256:<43 base64 characters>'.")
    if match["type"] not in KEY_TYPE_ALGORITHMS:
        raise InvalidPin(f"Unsupported key type {match['type']!r}; use one of {', '.join(KEY_TYPE_ALGORITHMS)}.")
    return match["type"], f"SHA256:{match['fp']}"


def key_type_of(key: asyncssh.SSHKey) -> str:
    algorithm = key.get_algorithm()
    return ALGORITHM_KEY_TYPE.get(algorithm, algorithm)


def pin_of(key: asyncssh.SSHKey) -> str:
    """The pin string for a server's public key."""
    return f"{key_type_of(key)} {key.get_fingerprint('sha256')}"


def host_key_algorithms(pins: list[str]) -> list[str]:
    """The host key algorithms to offer: only those of pinned key types."""
    algs: list[str] = []
    for pin in pins:
        for alg in KEY_TYPE_ALGORITHMS[parse_pin(pin)[0]]:
            if alg not in algs:
                algs.append(alg)
    return algs


class PinningClient(asyncssh.SSHClient):
    """Accepts the server key only when pinned; remembers what the server showed."""

    def __init__(self, pins: list[str]) -> None:
        self._pins = {parse_pin(p) for p in pins}
        self.seen: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.seen = pin_of(key)
        return (key_type_of(key), key.get_fingerprint("sha256")) in self._pins


async def _key_for(address: str, port: int, algs: list[str], timeout: float) -> asyncssh.SSHKey | None:
    try:
        return await asyncio.wait_for(
            asyncssh.get_server_host_key(address, port, server_host_key_algs=algs, config=None), timeout=timeout
        )
    except (asyncssh.Error, OSError, TimeoutError):
        return None


async def scan(address: str, port: int, *, timeout: float = 10.0) -> list[str]:
    """The server's host keys as pins, one per key type it offers ([] when none answered).

    One handshake per key type: a server shows one host key per negotiated algorithm, and
    an SSH server does not otherwise say which key types it has.
    """
    found = await asyncio.gather(*(_key_for(address, port, algs, timeout) for algs in KEY_TYPE_ALGORITHMS.values()))
    pins: list[str] = []
    for key in found:
        if key is not None and pin_of(key) not in pins:
            pins.append(pin_of(key))
    return pins


def type_mismatch_message(offered_pins: list[str], pinned: list[str]) -> str:
    """Customer-safe text for a server none of whose host key types is pinned."""

    def describe(types: list[str]) -> str:
        return "; ".join(f"{t} ({', '.join(KEY_TYPE_ALGORITHMS.get(t, [t]))})" for t in types)

    offered = list(dict.fromkeys(p.split(" ", 1)[0] for p in offered_pins))
    wanted = list(dict.fromkeys(parse_pin(p)[0] for p in pinned))
    return (
        f"The server offers host key types {describe(offered)}, but this endpoint pins only {describe(wanted)}. "
        "Scan the server's host keys again and pin one of its keys."
    )


# Trust nothing by default: asyncssh then asks validate_host_public_key about each key.
NO_KNOWN_HOSTS: tuple[list[str], list[str], list[str]] = ([], [], [])
