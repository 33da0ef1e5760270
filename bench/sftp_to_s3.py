"""Goal 1: one large file SFTP→S3. Ferry against ``rclone copy`` at its defaults, at its
best (a grid of stream and part settings) and at its best without hash checks, and against
the sink's own ceiling (boto3 ``upload_file`` of the same bytes from local disk), with each
tool's client CPU per GiB."""

from __future__ import annotations

import time
import uuid

from bench import ferry
from bench.common import (
    BUCKET,
    SINK_S3,
    Env,
    Figure,
    Sizes,
    Variant,
    best_of,
    cpu_per_gib,
    mbps,
    median,
    ratio,
    tune,
)
from bench.peers import RCLONE_DEFAULTS, RCLONE_LARGE_GRID, peer_details, without_hashes

GRID_KEY = "rclone_sftp_to_s3"


def run(env: Env, sizes: Sizes) -> Figure:
    size = sizes.throughput
    src = env.source_file(size)
    s3 = env.s3_client()

    def rclone(variant: Variant) -> tuple[float, float]:
        prefix = f"{variant.key}-{uuid.uuid4().hex[:8]}"
        r = env.rclone("copy", *variant.flags, f"sftp:{src}", f"s3:{BUCKET}/{prefix}/")
        assert s3.head_object(Bucket=BUCKET, Key=f"{prefix}/{src.name}")["ContentLength"] == size
        env.remove_prefix(prefix)
        return mbps(size, r.seconds), r.cpu_seconds

    best = tune(env, GRID_KEY, RCLONE_LARGE_GRID, lambda v: rclone(v)[0], enabled=sizes.tune)
    peers = [RCLONE_DEFAULTS, best, without_hashes(best)]
    runs: dict[str, list[float]] = {"ferry": [], **{v.key: [] for v in peers}, "boto3_ceiling": []}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    errors: list[str] = []
    # Interleaved rounds, so a noisy minute on the shared machine hits every tool alike.
    for _ in range(sizes.runs):
        for variant in peers:
            figure, seconds = rclone(variant)
            runs[variant.key].append(figure)
            cpu[variant.key].append(cpu_per_gib(seconds, size))

        prefix = f"ferry-{uuid.uuid4().hex[:8]}"
        child = ferry.try_ferry(
            env,
            ferry.request(env, "copy", source=ferry.sftp_loc(src), destination=ferry.s3_loc(f"{prefix}/{src.name}")),
            errors,
        )
        if child:
            assert child.json()["size"] == size and child.json()["sha256"] == env.sha256_of(src)
            assert env.s3_object_path(f"{prefix}/{src.name}").stat().st_size == size
            runs["ferry"].append(mbps(size, child.json()["seconds"]))
            cpu["ferry"].append(cpu_per_gib(child.json()["cpu_seconds"], size))
        env.remove_prefix(prefix)

        prefix = f"boto3-{uuid.uuid4().hex[:8]}"
        before = time.process_time()
        start = time.perf_counter()
        s3.upload_file(str(src), BUCKET, f"{prefix}/{src.name}")
        runs["boto3_ceiling"].append(mbps(size, time.perf_counter() - start))
        cpu["boto3_ceiling"].append(cpu_per_gib(time.process_time() - before, size))
        env.remove_prefix(prefix)

    return figure_of(
        "sftp_to_s3",
        runs,
        cpu,
        peers,
        size,
        errors,
        env,
        ceiling="boto3_ceiling",
        grid_key=GRID_KEY,
        sink=SINK_S3,
        ceiling_name="the sink's ceiling (boto3 upload_file from local disk)",
    )


def figure_of(
    name: str,
    runs: dict[str, list[float]],
    cpu: dict[str, list[float]],
    peers: list[Variant],
    size: int,
    errors: list[str],
    env: Env,
    *,
    ceiling: str,
    grid_key: str,
    sink: str,
    ceiling_name: str,
) -> Figure:
    """The large-file figure: the peer is the better of rclone's verifying variants; the
    target is 1.5x that, or 90% of the ceiling where that is lower."""
    verifying = [v.key for v in peers if v.verifies]
    peer = best_of(runs, verifying) or verifying[-1]
    ferry_mbps, top = median(runs["ferry"]), median(runs[ceiling])
    peer_mbps = median(runs[peer])
    target = min(1.5 * peer_mbps, 0.9 * top) if peer_mbps and top else None
    nohash = next((v.key for v in peers if not v.verifies), None)
    flags = next(" ".join(v.flags) or "defaults" for v in peers if v.key == peer)
    return Figure(
        name=name,
        ferry=ferry_mbps,
        peer=peer_mbps,
        unit="MB/s",
        sink=sink,
        peer_name=f"rclone copy, the better of defaults and best: {flags}",
        goal=f"≥ 1.5x the best rclone, or ≥ 90% of {ceiling_name} where that is lower",
        note=" ".join(errors),
        runs=runs,
        details={
            "size_bytes": size,
            "peer_variant": peer,
            "ceiling_mbps": top,
            "target_mbps": round(target, 2) if target else None,
            "fraction_of_ceiling": ratio(ferry_mbps, top),
            "rclone_fraction_of_ceiling": ratio(peer_mbps, top),
            "ratio_vs_each_peer": {v.key: ratio(ferry_mbps, median(runs[v.key])) for v in peers},
            "ratio_vs_rclone_no_hashcheck": ratio(ferry_mbps, median(runs[nohash])) if nohash else None,
            # Client CPU per GiB: Ferry's engine call, each peer's whole process (wait4).
            "cpu_s_per_gib": {k: median(v) for k, v in cpu.items()},
            "cpu_s_per_gib_runs": cpu,
            **peer_details(peers, env.grids, grid_key),
        },
    )


def met(fig: Figure) -> bool | None:
    target = fig.details.get("target_mbps")
    if fig.ferry is None or target is None:
        return None
    return fig.ferry >= float(target)  # type: ignore[arg-type]
