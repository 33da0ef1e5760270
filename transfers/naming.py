"""Destination names: templates, conflict suffixes, and checks on untrusted remote names.

A route's ``destination.name`` template may use ``{name}`` (``report.csv``), ``{stem}``
(``report``), ``{ext}`` (``.csv``, with its dot, empty when there is none),
``{date:<strftime>}`` (the transfer's creation time in UTC; ``{date}`` alone is
``%Y-%m-%d``) and ``{transfer_id}``. The result is one file name: no ``/``.

File names coming from remote servers are untrusted: a name with a ``..`` segment, an
absolute path, NUL or another control character (any that can split a line:
``controlplane.text``) never becomes a destination name.
"""

from __future__ import annotations

import posixpath
import string
from datetime import datetime

from controlplane.text import CONTROL_CHARS

FIELDS = frozenset({"name", "stem", "ext", "date", "transfer_id"})
DEFAULT_DATE_FORMAT = "%Y-%m-%d"
MAX_NAME = 255
MAX_PATH = 1024  # characters, as Route and Transfer store paths (max_length=1024)
MAX_TEMPLATE = 255
_formatter = string.Formatter()


class UnsafeName(ValueError):
    """A name or template that must not be used; ``str()`` says why (safe to show)."""


def check_remote_path(path: str) -> str:
    """A remote path relative to an endpoint root, normalised to ``/a/b``.

    Refuses NUL and control characters and ``..`` segments. A leading ``/`` is the
    endpoint root, not the server's root: it is kept as the canonical form.
    """
    if not path or not path.strip():
        raise UnsafeName("The path is empty.")
    if len(path) > MAX_PATH:
        raise UnsafeName(f"The path is longer than {MAX_PATH} characters.")
    if CONTROL_CHARS.search(path):
        raise UnsafeName("The path contains control characters.")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeName("The path contains a '..' segment.")
    return "/" + "/".join(parts)


def check_remote_name(name: str) -> str:
    """One untrusted file name: no separators, ``..``, absolute paths or control characters."""
    if not name or name in (".", ".."):
        raise UnsafeName(f"{name!r} is not a file name.")
    if "/" in name or "\\" in name:
        raise UnsafeName("A file name cannot contain '/' or '\\'.")
    if CONTROL_CHARS.search(name):
        raise UnsafeName("The file name contains control characters.")
    if len(name.encode()) > MAX_NAME:
        raise UnsafeName(f"The file name is longer than {MAX_NAME} bytes.")
    return name


def split_name(name: str) -> tuple[str, str]:
    """``report.tar.gz`` → (``report.tar``, ``.gz``); a leading dot is not an extension."""
    stem, ext = posixpath.splitext(name)
    return stem, ext


def check_template(template: str) -> str:
    """Validate a name template without rendering it for a real file."""
    if not template:
        raise UnsafeName("The name template is empty.")
    if len(template) > MAX_TEMPLATE:
        raise UnsafeName(f"The name template is longer than {MAX_TEMPLATE} characters.")
    if "/" in template or "\\" in template or CONTROL_CHARS.search(template):
        raise UnsafeName("The name template makes one file name: no '/', '\\' or control characters.")
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as exc:
        raise UnsafeName(f"The name template is malformed: {exc}.") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in FIELDS:
            raise UnsafeName(f"Unknown field {{{field}}}; use {', '.join('{' + f + '}' for f in sorted(FIELDS))}.")
        if conversion:
            raise UnsafeName("Conversions such as '!r' are not allowed in name templates.")
        if spec and field != "date":
            raise UnsafeName(f"Only {{date}} takes a format, not {{{field}}}.")
    render(
        template, source_name="sample.txt", transfer_id="00000000-0000-0000-0000-000000000000", at=datetime(2000, 1, 1)
    )
    return template


def render(template: str, *, source_name: str, transfer_id: str, at: datetime) -> str:
    """The destination file name for ``source_name`` (checked: see :func:`check_remote_name`)."""
    check_remote_name(source_name)
    stem, ext = split_name(source_name)
    values = {"name": source_name, "stem": stem, "ext": ext, "transfer_id": str(transfer_id)}
    out: list[str] = []
    try:
        for literal, field, spec, _conversion in _formatter.parse(template):
            out.append(literal)
            if field is None:
                continue
            if field == "date":
                out.append(at.strftime(spec or DEFAULT_DATE_FORMAT))
            elif field in values:
                out.append(values[field])
            else:
                raise UnsafeName(f"Unknown field {{{field}}}.")
    except ValueError as exc:
        if isinstance(exc, UnsafeName):
            raise
        raise UnsafeName(f"The name template is malformed: {exc}.") from None
    return check_remote_name("".join(out))


def marker_is_per_file(template: str) -> bool:
    """Whether a ``done_marker`` template names one marker per file (it uses ``{name}`` or
    ``{stem}``, as ``{name}.done`` does) rather than one for the whole folder (``_SUCCESS``)."""
    try:
        return any(field in ("name", "stem") for _literal, field, _spec, _conv in _formatter.parse(template))
    except ValueError:
        return False


def own_marker_path(template: str | None, source_path: str, *, at: datetime) -> str | None:
    """The path of ``source_path``'s own done marker (next to it), to delete or move with it
    after delivery; None when the route has no marker or its marker is shared by the folder
    (other files may still wait for a shared one, so it is left alone)."""
    if not template or not marker_is_per_file(template):
        return None
    folder, name = posixpath.split(source_path)
    try:
        return posixpath.join(folder, render(template, source_name=name, transfer_id="", at=at))
    except UnsafeName:
        return None


def rename_candidate(path: str, n: int) -> str:
    """The ``n``-th alternative name for ``on_conflict: rename``: ``/in/report.csv`` →
    ``/in/report-1.csv``, ``/in/report-2.csv`` …"""
    if n < 1:
        raise ValueError("n counts from 1")
    folder, name = posixpath.split(path)
    stem, ext = split_name(name)
    return posixpath.join(folder, f"{stem}-{n}{ext}")


def destination_path(
    *, folder: str, template: str, source_path: str, source_root: str, transfer_id: str, at: datetime
) -> str:
    """The final destination path of ``source_path`` under a route.

    Sub-folders below the route's source folder (recursive routes) are kept under the
    destination folder; every segment is checked as an untrusted name.
    """
    source_path = check_remote_path(source_path)
    root = check_remote_path(source_root) if source_root not in ("", "/") else "/"
    parent, name = posixpath.split(source_path)
    relative = posixpath.relpath(parent, root) if parent != root else ""
    if relative.startswith(".."):
        raise UnsafeName("The file is outside the route's source folder.")
    segments = [check_remote_name(s) for s in relative.split("/") if s and s != "."]
    folder = check_remote_path(folder) if folder not in ("", "/") else "/"
    return posixpath.join(folder, *segments, render(template, source_name=name, transfer_id=transfer_id, at=at))
