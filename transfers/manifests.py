"""Batch manifests, pure: the route option ``write_manifest``, the manifest file's name and
bytes (JSON or CSV), and the ``batch.completed`` payload.

Everything here is a function of a completed batch's frozen row (``Batch.manifest``,
counts, ``completed_at``), so rendering the same batch twice gives the same bytes: a
worker that crashed after writing the file and a second worker that writes it again
produce one and the same file, and the destination's "is it ours" check (same SHA-256)
settles the second write as already delivered (docs/batches.md).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from transfers import naming

FORMATS = ("json", "csv")
NAME_FIELDS = frozenset({"batch_id", "date"})
DEFAULT_NAME = "manifest-{batch_id}.{format}"
CSV_HEADER = ("path", "size", "sha256", "source_path")
# Up to this many files, ``batch.completed`` carries the manifest itself; above, a
# reference to it (GET /api/v1/batches/{id}/manifest), so an event stays small.
INLINE_FILES = 100
SCHEMA_VERSION = 1


class InvalidManifestOption(ValueError):
    """``str()`` is the message shown to the customer."""


def check_option(value: Any) -> dict[str, str]:
    """Validate ``write_manifest`` and fill in its defaults: ``{"format", "name"}``."""
    if not isinstance(value, dict) or set(value) - {"format", "name"}:
        raise InvalidManifestOption('Use {"format": "json" or "csv", "name": "<file name template>"} or null.')
    fmt = value.get("format", "json")
    if fmt not in FORMATS:
        raise InvalidManifestOption(f"format: one of {', '.join(FORMATS)}.")
    name = value.get("name", DEFAULT_NAME.replace("{format}", fmt))
    if not isinstance(name, str) or not name or len(name) > naming.MAX_TEMPLATE:
        raise InvalidManifestOption(f"name: a file name template of at most {naming.MAX_TEMPLATE} characters.")
    try:
        fields = [field for _, field, spec, _ in string.Formatter().parse(name) if field is not None]
    except ValueError as exc:
        raise InvalidManifestOption(f"name: the template is malformed: {exc}.") from None
    for field in fields:
        if field not in NAME_FIELDS:
            raise InvalidManifestOption("name: only {batch_id} and {date:<strftime>} may be used.")
    try:
        render_name(name, batch_id="00000000-0000-0000-0000-000000000000", at=datetime(2000, 1, 1, tzinfo=UTC))
    except naming.UnsafeName as exc:
        raise InvalidManifestOption(f"name: {exc}") from None
    return {"format": fmt, "name": name}


def render_name(template: str, *, batch_id: str, at: datetime) -> str:
    """The manifest's file name: ``{batch_id}`` and ``{date:…}`` (completion time, UTC)
    filled in, checked as one safe file name (raises ``naming.UnsafeName``)."""
    # naming.render knows {date} and {transfer_id}; the batch id takes the id's place.
    rendered = naming.render(
        template.replace("{batch_id}", "{transfer_id}"), source_name="manifest", transfer_id=batch_id, at=at
    )
    return naming.check_remote_name(rendered)


def entry(*, path: str, source_path: str, size: int, sha256: str) -> dict[str, Any]:
    """One delivered file of a manifest."""
    return {"path": path, "source_path": source_path, "size": size, "sha256": sha256}


def _iso(at: datetime) -> str:
    text = at.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def render(
    fmt: str, *, batch_id: str, route_id: str | None, completed_at: datetime, files: Sequence[Mapping[str, Any]]
) -> bytes:
    """The manifest file's bytes, deterministic for one batch."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for item in files:
            writer.writerow([item[column] for column in CSV_HEADER])
        return out.getvalue().encode()
    document = {
        "batch": batch_id,
        "route": route_id,
        "completed_at": _iso(completed_at),
        "count": len(files),
        "bytes": sum(int(item["size"]) for item in files),
        "files": [dict(item) for item in files],
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def event_data(
    *,
    batch_id: str,
    route_id: str | None,
    trigger: str,
    created_at: datetime,
    completed_at: datetime,
    counts: Mapping[str, int],
    bytes_total: int,
    files: Sequence[Mapping[str, Any]],
    href: str,
) -> dict[str, Any]:
    """The ``data`` of ``batch.completed`` (documented in docs/batches.md).

    The manifest is inline up to :data:`INLINE_FILES` files; above, ``manifest`` holds a
    reference (``href``, the file count, and the SHA-256 and size of the JSON document the
    href returns), so receivers can check what they fetch."""
    if len(files) <= INLINE_FILES:
        manifest: dict[str, Any] = {"inline": True, "count": len(files), "files": [dict(f) for f in files]}
    else:
        body = render("json", batch_id=batch_id, route_id=route_id, completed_at=completed_at, files=files)
        manifest = {
            "inline": False,
            "count": len(files),
            "href": href,
            "sha256": hashlib.sha256(body).hexdigest(),
            "size": len(body),
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "batch": batch_id,
        "route": route_id,
        "trigger": trigger,
        "created_at": _iso(created_at),
        "completed_at": _iso(completed_at),
        "counts": dict(counts),
        "bytes": bytes_total,
        "manifest": manifest,
    }
