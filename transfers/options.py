"""Route (and ad-hoc transfer) options: defaults and validation, pure.

Stored as JSON on the route and copied onto each transfer when it is created, so a
change to a route never changes a transfer already on its way.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Any

from transfers import manifests, naming, schedule

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
    # OpenPGP on delivery (docs/pgp.md): ids of the tenant's keys (``/api/v1/pgp-keys``).
    "encrypt": [],  # recipients' keys: encrypt to all of them
    "sign": None,  # a private key of the tenant's
    "decrypt": None,  # a private key of the tenant's
    # The partner's key the file must be signed with (``verify`` is taken: size | reread).
    "verify_signature": None,
    "armor": False,  # ASCII armor on what Ferry encrypts or signs
    # {"cron", "grace_seconds", "min_files"} or None: when files are expected (late files,
    # transfers.expectations, docs/late-files.md). The cron runs in the route's time zone.
    "expect": None,
}
EXPECT_KEYS = ("cron", "grace_seconds", "min_files")
EXPECT_MAX_GRACE = 7 * 24 * 3600
EXPECT_MAX_FILES = 10_000
# Expectation windows at most this often: each one is a row and, when late, an alert.
EXPECT_MIN_INTERVAL = 15 * 60

PGP_KEY_OPTIONS = ("sign", "decrypt", "verify_signature")
MAX_RECIPIENTS = 10
PGP_SUFFIXES = (".pgp", ".gpg", ".asc")


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
    _check_pgp(out, errors)
    if out["expect"] is not None:
        try:
            out["expect"] = normalize_expect(out["expect"])
        except InvalidOptions as exc:
            errors.update(exc.fields)
    if errors:
        raise InvalidOptions(errors)
    return out


def normalize_expect(raw: Any) -> dict[str, Any]:
    """``{"cron": "0 6 * * 1-5", "grace_seconds": 1800, "min_files": 1}``: files are expected
    by each time ``cron`` fires (in the route's time zone), with ``grace_seconds`` (default
    0) of tolerance, at least ``min_files`` (default 1) of them. Field names in errors are
    ``expect.<key>``."""
    if not isinstance(raw, dict):
        raise InvalidOptions({"expect": ['An object such as {"cron": "0 6 * * *", "grace_seconds": 1800}, or null.']})
    errors: dict[str, list[str]] = {}
    for key in sorted(set(raw) - set(EXPECT_KEYS)):
        errors[f"expect.{key}"[:80]] = ["Unknown field."]
    out: dict[str, Any] = {
        "cron": raw.get("cron"),
        "grace_seconds": raw.get("grace_seconds", 0),
        "min_files": raw.get("min_files", 1),
    }
    if not isinstance(out["cron"], str) or not out["cron"].strip():
        errors["expect.cron"] = ["A 5-field cron expression, evaluated in the route's time zone."]
    else:
        try:
            out["cron"] = schedule.check_cron(out["cron"])
        except schedule.InvalidSchedule as exc:
            errors["expect.cron"] = [str(exc)]
        else:
            if schedule.shortest_interval(out["cron"]) < EXPECT_MIN_INTERVAL:
                errors["expect.cron"] = [f"Expect files at most every {EXPECT_MIN_INTERVAL // 60} minutes."]
    if not _int(out["grace_seconds"]) or not 0 <= out["grace_seconds"] <= EXPECT_MAX_GRACE:
        errors["expect.grace_seconds"] = [f"An integer from 0 to {EXPECT_MAX_GRACE} (one week)."]
    if not _int(out["min_files"]) or not 1 <= out["min_files"] <= EXPECT_MAX_FILES:
        errors["expect.min_files"] = [f"An integer from 1 to {EXPECT_MAX_FILES}."]
    if errors:
        raise InvalidOptions(errors)
    return out


def _key_id(value: Any) -> str | None:
    """The canonical form of a key id, or None when it is not a UUID."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _check_pgp(out: dict[str, Any], errors: dict[str, list[str]]) -> None:
    """Shapes only; that the keys exist, are the tenant's and fit their use is checked by
    ``transfers.pgpkeys.check_option_keys`` (it needs the database)."""
    recipients = out["encrypt"]
    if not isinstance(recipients, list) or len(recipients) > MAX_RECIPIENTS:
        errors["encrypt"] = [f"A list of up to {MAX_RECIPIENTS} key ids (empty: no encryption)."]
    else:
        ids = [_key_id(v) for v in recipients]
        if None in ids:
            errors["encrypt"] = ["Each recipient is a key id (a UUID from /api/v1/pgp-keys)."]
        elif len(set(ids)) != len(ids):
            errors["encrypt"] = ["A recipient is listed twice."]
        else:
            out["encrypt"] = ids
    for name in PGP_KEY_OPTIONS:
        if out[name] is not None:
            key = _key_id(out[name])
            if key is None:
                errors[name] = ["A key id (a UUID from /api/v1/pgp-keys), or null."]
            else:
                out[name] = key
    if not isinstance(out["armor"], bool):
        errors["armor"] = ["Must be true or false."]
    elif out["armor"] and not (out["encrypt"] or out["sign"]):
        errors["armor"] = ["Armor applies to what Ferry encrypts or signs: set encrypt or sign."]


def pgp_opens(options: dict[str, Any]) -> bool:
    return bool(options.get("decrypt") or options.get("verify_signature"))


def pgp_seals(options: dict[str, Any]) -> bool:
    return bool(options.get("encrypt") or options.get("sign"))


def pgp_output_path(path: str, options: dict[str, Any]) -> str:
    """The delivered name under the OpenPGP options: a ``.pgp``/``.gpg``/``.asc`` suffix is
    stripped when opening (decrypt/verify); ``.pgp`` (``.asc`` with armor) is added when
    sealing (encrypt/sign). Other options leave the name alone."""
    folder, name = posixpath.split(path)
    if pgp_opens(options):
        lower = name.lower()
        for suffix in PGP_SUFFIXES:
            if lower.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    if pgp_seals(options):
        name += ".asc" if options.get("armor") else ".pgp"
    return posixpath.join(folder, name)
