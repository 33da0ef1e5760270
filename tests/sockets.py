"""Counting a loopback server's TCP connections from /proc/net/tcp (connection-cap tests)."""

from __future__ import annotations

import os


def established(port: int, *, side: str) -> int:
    """ESTABLISHED connections of the server on ``port``: its own ends (``side="server"``)
    or the clients' ends (``side="client"``).

    Counted as distinct (local, remote) pairs: the kernel fills /proc/net/tcp a page at a
    time, and a socket added or closed between two reads can make another one appear twice
    (seen in CI: one connection listed twice, read as one too many at once)."""
    seen: set[tuple[str, str]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                local_port = int(local.rsplit(":", 1)[1], 16)
                remote_port = int(remote.rsplit(":", 1)[1], 16)
                if state != "01":
                    continue
                if (side == "server" and local_port == port) or (
                    side == "client" and remote_port == port and local_port != port
                ):
                    seen.add((local, remote))
    return len(seen)
