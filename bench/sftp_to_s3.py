"""Goal 1: one large file SFTP→S3. Ferry against ``rclone copy`` (its defaults) and against
the sink's own ceiling (boto3 ``upload_file`` of the same bytes from local disk)."""

from __future__ import annotations

import time
import uuid

from bench import ferry
from bench.common import BUCKET, SINK_S3, Env, Figure, Sizes, mbps, median, ratio


def run(env: Env, sizes: Sizes) -> Figure:
    size = sizes.throughput
    src = env.source_file(size)
    s3 = env.s3_client()
    runs: dict[str, list[float]] = {"ferry": [], "rclone": [], "boto3_ceiling": [], "rclone_no_hashcheck": []}
    errors: list[str] = []
    cpu: dict[str, list[float]] = {"ferry": [], "rclone": []}
    # Interleaved rounds, so a noisy minute on the shared machine hits every tool alike.
    for _ in range(sizes.runs):
        prefix = f"rclone-{uuid.uuid4().hex[:8]}"
        r = env.rclone("copy", f"sftp:{src}", f"s3:{BUCKET}/{prefix}/")
        assert s3.head_object(Bucket=BUCKET, Key=f"{prefix}/{src.name}")["ContentLength"] == size
        runs["rclone"].append(mbps(size, r.seconds))
        cpu["rclone"].append(r.cpu_seconds)
        env.remove_prefix(prefix)

        # For context: rclone's default also runs md5sum of the source over SSH (this sshd
        # allows a shell), on the same two cores.
        prefix = f"rclone-nohash-{uuid.uuid4().hex[:8]}"
        r = env.rclone("copy", "--sftp-disable-hashcheck", f"sftp:{src}", f"s3:{BUCKET}/{prefix}/")
        runs["rclone_no_hashcheck"].append(mbps(size, r.seconds))
        env.remove_prefix(prefix)

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
            cpu["ferry"].append(child.cpu_seconds)
        env.remove_prefix(prefix)

        prefix = f"boto3-{uuid.uuid4().hex[:8]}"
        start = time.perf_counter()
        s3.upload_file(str(src), BUCKET, f"{prefix}/{src.name}")
        runs["boto3_ceiling"].append(mbps(size, time.perf_counter() - start))
        env.remove_prefix(prefix)

    ferry_mbps, ceiling = median(runs["ferry"]), median(runs["boto3_ceiling"])
    return Figure(
        name="sftp_to_s3",
        ferry=ferry_mbps,
        peer=median(runs["rclone"]),
        unit="MB/s",
        sink=SINK_S3,
        peer_name="rclone copy (defaults)",
        goal="≥ 1.5x rclone and ≥ 75% of the sink's ceiling (boto3 upload_file from local disk)",
        note=" ".join(errors),
        runs=runs,
        details={
            "size_bytes": size,
            "ceiling_mbps": ceiling,
            "fraction_of_ceiling": ratio(ferry_mbps, ceiling),
            "rclone_fraction_of_ceiling": ratio(median(runs["rclone"]), ceiling),
            "rclone_no_hashcheck_mbps": median(runs["rclone_no_hashcheck"]),
            "ratio_vs_rclone_no_hashcheck": ratio(ferry_mbps, median(runs["rclone_no_hashcheck"])),
            "cpu_seconds": {k: median(v) for k, v in cpu.items()},  # of each tool's own process
        },
    )


def met(fig: Figure) -> bool | None:
    if fig.ratio is None:
        return None
    frac = fig.details.get("fraction_of_ceiling")
    return fig.ratio >= 1.5 and frac is not None and float(frac) >= 0.75  # type: ignore[arg-type]
