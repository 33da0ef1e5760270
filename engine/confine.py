"""Keeping SFTP paths inside the endpoint's ``root``, as the server resolves them.

``location_of`` applies the root by joining strings, so a path under the root can still
name a symbolic link (or a folder that is one) pointing elsewhere on the server. Before a
source is opened, a folder listed or a destination written, the server's ``realpath``
resolves the path and a resolution outside the (equally resolved) root is refused with
the permanent ``path_outside_root``. A link that resolves inside the root is followed.

Cost: one ``realpath`` per path checked (a transfer's source, its destination folder, a
route's folder: never one per listed file, the listing skips links itself), plus one per
connection for the root, kept with the SFTP client. A root of ``/`` holds everything, so
nothing is asked then.
"""

from __future__ import annotations

import posixpath
import weakref

import asyncssh

from engine.errors import PathOutsideRoot
from engine.spec import SftpSpec

# The resolved root of each endpoint root, per SFTP client (one connection, one login):
# dropped with the connection, so a root re-pointed by the server's owner is seen by the
# next connection.
_roots: weakref.WeakKeyDictionary[asyncssh.SFTPClient, dict[str, str]] = weakref.WeakKeyDictionary()


def _normal(path: str) -> str:
    return posixpath.normpath(path) if path else "/"


def is_inside(root: str, path: str) -> bool:
    """``path`` is ``root`` or lies under it (both absolute and normalised)."""
    root = _normal(root)
    path = _normal(path)
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


async def _realpath_or_none(sftp: asyncssh.SFTPClient, path: str) -> str | None:
    """The server's resolution of ``path``, or None when part of it does not exist."""
    try:
        resolved = await sftp.realpath(path)
    except asyncssh.SFTPError as exc:
        if exc.code in (asyncssh.FX_NO_SUCH_FILE, asyncssh.FX_NO_SUCH_PATH):
            return None
        raise
    return resolved if isinstance(resolved, str) else resolved.decode()


async def _resolved_root(sftp: asyncssh.SFTPClient, root: str) -> str:
    known = _roots.setdefault(sftp, {})
    if root not in known:
        # A root that does not exist resolves to itself: nothing under it exists either.
        known[root] = await _realpath_or_none(sftp, root) or root
    return known[root]


async def inside_root(sftp: asyncssh.SFTPClient, spec: SftpSpec, path: str) -> str:
    """``path`` as the server resolves it, after checking that this lies inside
    ``spec.root``; raises :class:`PathOutsideRoot` otherwise.

    A path that does not exist (yet) is returned unchanged: the operation that follows
    reports it as it always has (source missing, no such folder). Callers that go on to
    use the path should use the returned one, so that a link swapped after the check
    cannot redirect them.
    """
    root = _normal(spec.root)
    if root == "/":
        return path
    resolved = await _realpath_or_none(sftp, path)
    if resolved is None:
        return path
    if not is_inside(await _resolved_root(sftp, root), resolved):
        # The target is not named: it is a place on the server outside what the endpoint
        # may see.
        raise PathOutsideRoot(
            f"{path} resolves outside the endpoint's root {root} (a symbolic link or '..'); Ferry does not follow it."
        )
    return resolved
