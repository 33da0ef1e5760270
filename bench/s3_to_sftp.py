"""Goal 2: one large file S3→SFTP, Ferry against ``rclone copy`` (its defaults)."""

from __future__ import annotations

import shutil

from bench import ferry
from bench.common import BUCKET, SINK_S3, Env, Figure, Sizes, mbps, median


def run(env: Env, sizes: Sizes) -> Figure:
    size = sizes.throughput
    key = env.s3_source_object(size)
    name = key.rsplit("/", 1)[-1]
    runs: dict[str, list[float]] = {"ferry": [], "rclone": []}
    errors: list[str] = []
    for _ in range(sizes.runs):
        dest = env.fresh_dir("rclone-in")
        r = env.rclone("copy", f"s3:{BUCKET}/{key}", f"sftp:{dest}/")
        assert (dest / name).stat().st_size == size
        runs["rclone"].append(mbps(size, r.seconds))
        shutil.rmtree(dest)

        dest = env.fresh_dir("ferry-in")
        child = ferry.try_ferry(
            env,
            ferry.request(env, "copy", source=ferry.s3_loc(key), destination=ferry.sftp_loc(dest / name)),
            errors,
        )
        if child:
            assert (dest / name).stat().st_size == size
            assert child.json()["sha256"] == env.sha256_of(env.source_file(size))
            runs["ferry"].append(mbps(size, child.json()["seconds"]))
        shutil.rmtree(dest)
    return Figure(
        name="s3_to_sftp",
        ferry=median(runs["ferry"]),
        peer=median(runs["rclone"]),
        unit="MB/s",
        sink=f"source: {SINK_S3}; destination: OpenSSH sshd (local disk)",
        peer_name="rclone copy (defaults)",
        goal="≥ 1.5x rclone",
        note=" ".join(errors),
        runs=runs,
        details={"size_bytes": size},
    )


def met(fig: Figure) -> bool | None:
    return None if fig.ratio is None else fig.ratio >= 1.5
