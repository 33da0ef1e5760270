"""Issue 17: an SFTP endpoint's ``max_bytes_per_second`` held over a copy.

SFTP → S3 through the engine with the endpoint capped at 20 MB/s and one connection (so the
one copy gets the whole cap: each connection's share is cap ÷ max_connections); the file is
sized for ``Sizes.cap_seconds`` (30 s in the full run). The figure is the rate the copy
achieved, start to finish (connect, read, upload, completion), and its error against the
cap; the goal is ±10%. No peer: the goal is absolute. Each run also copies the same file
uncapped: when the machine cannot move the cap's rate at all (a loaded machine), a shortfall
says nothing about the throttle, and the verdict is n/a rather than a failure.
"""

from __future__ import annotations

from bench import ferry
from bench.common import MB, SINK_S3, Env, Figure, Sizes, median

CAP = 20 * MB  # bytes per second
TINY_CAP = 4 * MB  # the smoke test's: a copy of half a second


def run(env: Env, sizes: Sizes) -> Figure:
    cap = TINY_CAP if sizes.cap_seconds < 1 else CAP
    size = int(cap * sizes.cap_seconds)
    src = env.source_file(size)
    runs: dict[str, list[float]] = {"ferry": [], "error_percent": [], "uncapped": []}
    errors: list[str] = []
    for i in range(sizes.runs):
        for capped in (True, False):
            prefix = f"cap-{i}-{int(capped)}"
            env.remove_prefix(prefix)
            request = ferry.request(
                env, "copy", source=ferry.sftp_loc(src), destination=ferry.s3_loc(f"{prefix}/{src.name}")
            )
            limit = cap if capped else None
            request["sftp"] = {**request["sftp"], "max_connections": 1, "max_bytes_per_second": limit}
            child = ferry.try_ferry(env, request, errors)
            env.remove_prefix(prefix)
            if not child:
                continue
            assert child.json()["size"] == size and child.json()["sha256"] == env.sha256_of(src)
            rate = size / child.json()["seconds"]
            if not capped:
                runs["uncapped"].append(round(rate / MB, 2))
                continue
            runs["ferry"].append(round(rate / MB, 2))
            runs["error_percent"].append(round((rate / cap - 1) * 100, 2))
    return Figure(
        name="bandwidth_cap",
        ferry=median(runs["ferry"]),
        peer=None,
        unit="MB/s",
        sink=SINK_S3,
        peer_name=None,
        goal=f"{cap / MB:g} MB/s cap held within ±10% over a {sizes.cap_seconds:g} s copy",
        note=" ".join(errors),
        runs=runs,
        details={
            "size_bytes": size,
            "cap_bytes_per_second": cap,
            "error_percent": median(runs["error_percent"]),
            "uncapped_mbps": median(runs["uncapped"]),
        },
    )


def met(fig: Figure) -> bool | None:
    error = fig.details.get("error_percent")
    if error is None:
        return None
    if abs(float(error)) <= 10.0:  # type: ignore[arg-type]
        return True
    uncapped = fig.details.get("uncapped_mbps")
    cap = float(fig.details.get("cap_bytes_per_second") or 0) / MB  # type: ignore[arg-type]
    if float(error) < 0 and uncapped is not None and float(uncapped) < cap * 1.1:  # type: ignore[arg-type]
        return None  # the machine could not move the cap's rate even uncapped: not judgeable
    return False
