"""Goal 4: many small files SFTP→S3 (1000 x 4 KiB), in files per second.

rclone copies the folder (listing included) at its defaults, at its best (files in
parallel, from a grid) and at its best without hash checks; Ferry lists the same folder through the
engine and copies the files with ``copy_many`` (one route, pooled connections, several in
flight), the listing inside the timed span too. Client CPU per 1,000 files for each."""

from __future__ import annotations

import os
import uuid

from bench import ferry
from bench.common import BUCKET, SINK_S3, Env, Figure, Sizes, Variant, best_of, cpu_per_1000, median, ratio, tune
from bench.peers import GRID_FILES, RCLONE_DEFAULTS, RCLONE_SMALL_GRID, grid_subset, peer_details, without_hashes


def source_dir(env: Env, count: int, size: int) -> list[str]:
    folder = env.data_dir / f"small-{count}x{size}"
    folder.mkdir(exist_ok=True)
    names = [f"file {i:05d}.bin" for i in range(count)]
    for name in names:
        path = folder / name
        if not path.exists():
            path.write_bytes(os.urandom(size))
    return [str(folder / n) for n in names]


GRID_KEY = "rclone_small_files"


def run(env: Env, sizes: Sizes) -> Figure:
    count = sizes.small_count
    paths = source_dir(env, count, sizes.small_size)
    folder = os.path.dirname(paths[0])
    s3 = env.s3_client()

    def rclone(variant: Variant, subset: tuple[str, ...] = ()) -> tuple[float, float]:
        prefix = f"{variant.key}-small-{uuid.uuid4().hex[:8]}"
        r = env.rclone("copy", *variant.flags, *subset, f"sftp:{folder}", f"s3:{BUCKET}/{prefix}/")
        copied = min(count, GRID_FILES) if subset else count
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["KeyCount"] == copied
        env.remove_prefix(prefix)
        return round(copied / r.seconds, 1), r.cpu_seconds

    subset = grid_subset(paths, env.work / "grid-files.txt")
    best = tune(env, GRID_KEY, RCLONE_SMALL_GRID, lambda v: rclone(v, subset)[0], enabled=sizes.tune)
    peers = [RCLONE_DEFAULTS, best, without_hashes(best)]
    runs: dict[str, list[float]] = {"ferry": [], **{v.key: [] for v in peers}}
    cpu: dict[str, list[float]] = {k: [] for k in runs}  # CPU seconds per 1,000 files
    errors: list[str] = []
    for _ in range(sizes.runs):
        for variant in peers:
            figure, seconds = rclone(variant)
            runs[variant.key].append(figure)
            cpu[variant.key].append(cpu_per_1000(seconds, count))

        prefix = f"ferry-small-{uuid.uuid4().hex[:8]}"
        req = ferry.request(
            env,
            "copy_dir",
            source=ferry.sftp_loc(folder),
            destination=ferry.s3_loc(f"{prefix}/"),
            fallback_items=[
                [ferry.sftp_loc(p), ferry.s3_loc(f"{prefix}/{os.path.basename(p)}"), uuid.uuid4().hex] for p in paths
            ],
        )
        child = ferry.try_ferry(env, req, errors)
        if child:
            assert child.json()["count"] == count
            listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
            assert listing["KeyCount"] == count
            assert all(o["Size"] == sizes.small_size for o in listing["Contents"])
            runs["ferry"].append(round(count / child.json()["seconds"], 1))
            cpu["ferry"].append(cpu_per_1000(child.json()["cpu_seconds"], count))
            if child.json().get("listed") is False and "listing" not in " ".join(errors):
                errors.append("Ferry's listing was not available: its figure times copy_many alone.")
        env.remove_prefix(prefix)
    verifying = [v.key for v in peers if v.verifies]
    peer = best_of(runs, verifying) or verifying[-1]
    unverified = best_of(runs, [v.key for v in peers if not v.verifies])
    ferry_rate = median(runs["ferry"])
    flags = next(" ".join(v.flags) or "defaults" for v in peers if v.key == peer)
    return Figure(
        name="small_files",
        ferry=ferry_rate,
        peer=median(runs[peer]),
        unit="files/s",
        sink=SINK_S3,
        peer_name=f"rclone copy with its MD5 check, the better of defaults and best: {flags}",
        goal="≥ 2x the best rclone with verification, and ≥ 1.0x rclone without it (Ferry still verifies SHA-256)",
        note=" ".join(errors),
        runs=runs,
        details={
            "count": count,
            "file_bytes": sizes.small_size,
            "peer_variant": peer,
            "unverified_peer_variant": unverified,
            "rclone_no_hashcheck_files_per_s": median(runs[unverified]) if unverified else None,
            "ratio_vs_rclone_no_hashcheck": ratio(ferry_rate, median(runs[unverified])) if unverified else None,
            "ratio_vs_each_peer": {v.key: ratio(ferry_rate, median(runs[v.key])) for v in peers},
            # Client CPU: Ferry's engine call (listing included), each peer's whole process.
            "cpu_s_per_1000_files": {k: median(v) for k, v in cpu.items()},
            "cpu_s_per_1000_files_runs": cpu,
            **peer_details(peers, env.grids, GRID_KEY),
        },
    )


def met(fig: Figure) -> bool | None:
    against_unverified = fig.details.get("ratio_vs_rclone_no_hashcheck")
    if fig.ratio is None or against_unverified is None:
        return None
    return fig.ratio >= 2.0 and float(against_unverified) >= 1.0  # type: ignore[arg-type]
