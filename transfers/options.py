"""Route (and ad-hoc transfer) options: defaults and validation, pure.

Stored as JSON on the route and copied onto each transfer when it is created, so a
change to a route never changes a transfer already on its way.
"""

from __future__ import annotations

from typing import Any

from transfers import manifests, naming

ON_CONFLICT = ("fail", "overwrite", "skip", "rename")
VERIFY = ("size", "reread")
MAX_ATTEMPTS_LIMIT = 20

DEFAULTS: dict[str, Any] = {
    "min_age_seconds": 0,
    "stable_polls": True,
    "done_marker": None,
    "after_delivery": "keep",
    "on_conflict": "fail",
    "always_stage": False,
    "verify": "size",
    "max_attempts": 5,
    # After a route run's batch completes, a manifest file of its deliveries, written to
    # the destination folder: {"format": "json"|"csv", "name": "<template>"} or null
    # (docs/batches.md; checked by transfers.manifests.check_option).
    "write_manifest": None,
}


class InvalidOptions(ValueError):
    """``fields`` maps an option name to its messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()))
        self.fields = fields


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def normalize(raw: dict[str, Any] | None, *, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``raw`` over ``base`` (or the defaults) and validate every option.

    Unknown options are refused. Returns a complete options dict.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidOptions({"options": ["Must be an object."]})
    errors: dict[str, list[str]] = {}
    for key in sorted(set(raw) - set(DEFAULTS)):
        errors[key] = ["Unknown option."]
    out = {**DEFAULTS, **(base or {}), **{k: v for k, v in raw.items() if k in DEFAULTS}}

    if not _int(out["min_age_seconds"]) or not 0 <= out["min_age_seconds"] <= 7 * 24 * 3600:
        errors["min_age_seconds"] = ["An integer from 0 to 604800 (one week)."]
    if not isinstance(out["stable_polls"], bool):
        errors["stable_polls"] = ["Must be true or false."]
    marker = out["done_marker"]
    if marker is not None:
        if not isinstance(marker, str):
            errors["done_marker"] = ["A name template such as '{name}.done', or null."]
        else:
            try:
                naming.check_template(marker)
            except naming.UnsafeName as exc:
                errors["done_marker"] = [str(exc)]
    action = out["after_delivery"]
    if isinstance(action, dict):
        if set(action) != {"move_to"} or not isinstance(action["move_to"], str):
            errors["after_delivery"] = ['Use "keep", "delete" or {"move_to": "/folder"}.']
        else:
            try:
                out["after_delivery"] = {"move_to": naming.check_remote_path(action["move_to"])}
            except naming.UnsafeName as exc:
                errors["after_delivery.move_to"] = [str(exc)]
    elif action not in ("keep", "delete"):
        errors["after_delivery"] = ['Use "keep", "delete" or {"move_to": "/folder"}.']
    if out["on_conflict"] not in ON_CONFLICT:
        errors["on_conflict"] = [f"One of: {', '.join(ON_CONFLICT)}."]
    if not isinstance(out["always_stage"], bool):
        errors["always_stage"] = ["Must be true or false."]
    if out["verify"] not in VERIFY:
        errors["verify"] = [f"One of: {', '.join(VERIFY)}."]
    if not _int(out["max_attempts"]) or not 1 <= out["max_attempts"] <= MAX_ATTEMPTS_LIMIT:
        errors["max_attempts"] = [f"An integer from 1 to {MAX_ATTEMPTS_LIMIT}."]
    if out["write_manifest"] is not None:
        try:
            out["write_manifest"] = manifests.check_option(out["write_manifest"])
        except manifests.InvalidManifestOption as exc:
            errors["write_manifest"] = [str(exc)]
    if errors:
        raise InvalidOptions(errors)
    return out
