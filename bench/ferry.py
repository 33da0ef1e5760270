"""Running Ferry's side of a benchmark: the engine may not be merged yet, or may fail."""

from __future__ import annotations

import importlib.util

from bench.common import ChildRun, Env


def available() -> bool:
    """Whether ``engine.copy`` exists in this checkout."""
    try:
        return importlib.util.find_spec("engine.copy") is not None
    except ImportError:
        return False


NOT_MERGED = "Ferry's engine (engine.copy) is not in this checkout: Ferry's figure is null."


def try_ferry(env: Env, request: dict, errors: list[str]) -> ChildRun | None:
    """Run one Ferry operation; on failure note why (once) and return None."""
    if not available():
        if NOT_MERGED not in errors:
            errors.append(NOT_MERGED)
        return None
    try:
        return env.ferry(request)
    except RuntimeError as exc:
        message = f"Ferry failed: {str(exc)[-600:]}"
        if message not in errors:
            errors.append(message)
        return None


def sftp_loc(path: object) -> dict:
    return {"sftp": str(path)}


def s3_loc(key: str) -> dict:
    return {"s3": key}


def request(env: Env, op: str, **fields: object) -> dict:
    return {"op": op, "sftp": env.sftp_spec_json(), "s3": env.s3_spec_json(), **fields}
