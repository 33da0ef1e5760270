"""Goal 4: many small files SFTP→S3 (1000 x 4 KiB), in files per second.

rclone copies the folder (listing included); Ferry lists the same folder through the
engine and copies the files with ``copy_many`` (one route, pooled connections, several in
flight), the listing inside the timed span too."""

from __future__ import annotations

import os
import uuid

from bench import ferry
from bench.common import BUCKET, SINK_S3, Env, Figure, Sizes, median, ratio


def source_dir(env: Env, count: int, size: int) -> list[str]:
    folder = env.data_dir / f"small-{count}x{size}"
    folder.mkdir(exist_ok=True)
    names = [f"file {i:05d}.bin" for i in range(count)]
    for name in names:
        path = folder / name
        if not path.exists():
            path.write_bytes(os.urandom(size))
    return [str(folder / n) for n in names]


def run(env: Env, sizes: Sizes) -> Figure:
    count = sizes.small_count
    paths = source_dir(env, count, sizes.small_size)
    folder = os.path.dirname(paths[0])
    s3 = env.s3_client()
    runs: dict[str, list[float]] = {"ferry": [], "rclone": [], "rclone_no_hashcheck": []}
    errors: list[str] = []
    cpu: dict[str, list[float]] = {"ferry": [], "rclone": [], "rclone_no_hashcheck": []}
    for _ in range(sizes.runs):
        prefix = f"rclone-small-{uuid.uuid4().hex[:8]}"
        r = env.rclone("copy", f"sftp:{folder}", f"s3:{BUCKET}/{prefix}/")
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["KeyCount"] == count
        runs["rclone"].append(round(count / r.seconds, 1))
        cpu["rclone"].append(r.cpu_seconds)
        env.remove_prefix(prefix)

        # For context: by default rclone runs md5sum over an SSH exec channel per file (this
        # sshd allows a shell); an SFTP-only server, or this flag, skips that.
        prefix = f"rclone-nohash-{uuid.uuid4().hex[:8]}"
        r = env.rclone("copy", "--sftp-disable-hashcheck", f"sftp:{folder}", f"s3:{BUCKET}/{prefix}/")
        runs["rclone_no_hashcheck"].append(round(count / r.seconds, 1))
        cpu["rclone_no_hashcheck"].append(r.cpu_seconds)
        env.remove_prefix(prefix)

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
            cpu["ferry"].append(child.cpu_seconds)
            if child.json().get("listed") is False and "listing" not in " ".join(errors):
                errors.append("Ferry's listing was not available: its figure times copy_many alone.")
        env.remove_prefix(prefix)
    return Figure(
        name="small_files",
        ferry=median(runs["ferry"]),
        peer=median(runs["rclone"]),
        unit="files/s",
        sink=SINK_S3,
        peer_name="rclone copy (defaults: --transfers 4 --checkers 8)",
        goal="≥ 2x rclone's files per second",
        note=" ".join(errors),
        runs=runs,
        details={
            "count": count,
            "file_bytes": sizes.small_size,
            "rclone_no_hashcheck_files_per_s": median(runs["rclone_no_hashcheck"]),
            "ratio_vs_rclone_no_hashcheck": ratio(median(runs["ferry"]), median(runs["rclone_no_hashcheck"])),
            # CPU of each tool's own process (Ferry's includes ~1 s of interpreter start and imports).
            "cpu_ms_per_file": {k: round(1000 * median(v) / count, 1) if v else None for k, v in cpu.items()},
        },
    )


def met(fig: Figure) -> bool | None:
    return None if fig.ratio is None else fig.ratio >= 2.0
