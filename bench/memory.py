"""Goal 6: peak RSS of one SFTP→S3 copy of each size, Ferry's worker process beside rclone's.

Each copy runs in a fresh child process. Ferry's child reports its RSS once the engine is
imported ("idle") and its VmHWM after the copy; rclone's peak is the ``ru_maxrss`` that
``wait4`` returns for it."""

from __future__ import annotations

import uuid

from bench import ferry
from bench.common import BUCKET, SINK_S3, Env, Figure, MiB, Sizes, median


def run(env: Env, sizes: Sizes) -> Figure:
    runs: dict[str, list[float]] = {}
    details: dict[str, object] = {}
    errors: list[str] = []
    for size in sizes.memory:
        label = f"{size // MiB} MiB"
        src = env.source_file(size)
        ferry_peak, ferry_idle, rclone_peak = [], [], []
        for _ in range(sizes.runs):
            prefix = f"mem-rclone-{uuid.uuid4().hex[:8]}"
            r = env.rclone("copy", f"sftp:{src}", f"s3:{BUCKET}/{prefix}/")
            rclone_peak.append(round(r.maxrss_kib / 1024, 1))
            env.remove_prefix(prefix)

            prefix = f"mem-ferry-{uuid.uuid4().hex[:8]}"
            child = ferry.try_ferry(
                env,
                ferry.request(
                    env, "copy", source=ferry.sftp_loc(src), destination=ferry.s3_loc(f"{prefix}/{src.name}")
                ),
                errors,
            )
            if child:
                report = child.json()
                ferry_peak.append(round(max(report["hwm_kib"], child.maxrss_kib) / 1024, 1))
                ferry_idle.append(round(report["idle_rss_kib"] / 1024, 1))
            env.remove_prefix(prefix)
        runs[f"ferry {label}"] = ferry_peak
        runs[f"rclone {label}"] = rclone_peak
        peak, idle = median(ferry_peak), median(ferry_idle)
        details[label] = {
            "ferry_peak_mib": peak,
            "ferry_idle_mib": idle,
            "ferry_above_idle_mib": round(peak - idle, 1) if peak and idle else None,
            "rclone_peak_mib": median(rclone_peak),
        }
        if size == max(sizes.memory):
            src.unlink()  # the largest file is only needed here
    largest = details[f"{max(sizes.memory) // MiB} MiB"]
    assert isinstance(largest, dict)
    return Figure(
        name="memory",
        ferry=largest["ferry_peak_mib"],
        peer=largest["rclone_peak_mib"],
        unit="MiB peak RSS",
        sink=SINK_S3,
        peer_name="rclone copy (defaults), the same copy",
        better="lower",
        goal="unchanged: peak flat in file size (the largest copy's ≈ the smallest's), < 200 MiB above idle",
        note=" ".join(errors),
        runs=runs,
        details=details,
    )


def met(fig: Figure) -> bool | None:
    sizes = [v for v in fig.details.values() if isinstance(v, dict)]
    if fig.ferry is None or not sizes:
        return None
    small, large = sizes[0], sizes[-1]
    assert isinstance(small, dict) and isinstance(large, dict)
    if large["ferry_above_idle_mib"] is None:
        return None
    # "About the same": within a quarter (and 32 MiB) of the small copy's peak.
    same = large["ferry_peak_mib"] <= max(small["ferry_peak_mib"] * 1.25, small["ferry_peak_mib"] + 32)
    return bool(same and large["ferry_above_idle_mib"] < 200)
