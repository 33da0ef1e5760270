"""Pinned SSH host keys: parsing pins and making asyncssh accept only pinned keys.

A pin reads ``"<key type> SHA256:<base64 fingerprint>"``, the way ``ssh-keygen -lf``
and OpenSSH print fingerprints. A connection offers only the pinned key types (so the
server presents a key we can check) and accepts the server key only when its SHA-256
fingerprint is pinned for that type.
"""

from __future__ import annotations

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


# Trust nothing by default: asyncssh then asks validate_host_public_key about each key.
NO_KNOWN_HOSTS: tuple[list[str], list[str], list[str]] = ([], [], [])
