"""Goal 2: one large file S3→SFTP. Ferry against ``rclone copy`` at its defaults, at its
best (a grid of stream settings) and at its best without hash checks, and against the
destination's ceiling: OpenSSH ``sftp put`` of the same bytes from local disk, with Ferry's
cipher and the best ``-R``/``-B`` of a grid. Client CPU per GiB for each."""

from __future__ import annotations

import shutil

from bench import ferry, readers
from bench.common import BUCKET, SINK_S3, Env, Figure, Sizes, Variant, cpu_per_gib, mbps, tune
from bench.peers import OPENSSH_GRID, RCLONE_DEFAULTS, RCLONE_LARGE_GRID, without_hashes
from bench.sftp_to_s3 import figure_of
from bench.sftp_to_s3 import met as met  # the same verdict: 1.5x the best rclone or 90% of the ceiling

GRID_KEY = "rclone_s3_to_sftp"
CEILING_GRID_KEY = "openssh_put"


def run(env: Env, sizes: Sizes) -> Figure:
    size = sizes.throughput
    key = env.s3_source_object(size)
    local_src = env.source_file(size)
    name = key.rsplit("/", 1)[-1]

    def rclone(variant: Variant) -> tuple[float, float]:
        dest = env.fresh_dir(f"{variant.key}-in")
        r = env.rclone("copy", *variant.flags, f"s3:{BUCKET}/{key}", f"sftp:{dest}/")
        assert (dest / name).stat().st_size == size
        shutil.rmtree(dest)
        return mbps(size, r.seconds), r.cpu_seconds

    def openssh_put(variant: Variant) -> tuple[float, float]:
        dest = env.fresh_dir("openssh-put")
        child = readers.openssh_put(env, local_src, dest / name, variant.flags)
        assert (dest / name).stat().st_size == size
        shutil.rmtree(dest)
        return mbps(size, child.seconds), child.cpu_seconds

    best = tune(env, GRID_KEY, RCLONE_LARGE_GRID, lambda v: rclone(v)[0], enabled=sizes.tune)
    ceiling = tune(env, CEILING_GRID_KEY, OPENSSH_GRID, lambda v: openssh_put(v)[0], enabled=sizes.tune)
    peers = [RCLONE_DEFAULTS, best, without_hashes(best)]
    runs: dict[str, list[float]] = {"ferry": [], **{v.key: [] for v in peers}, "openssh_put_ceiling": []}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    errors: list[str] = []
    for _ in range(sizes.runs):
        for variant in peers:
            figure, seconds = rclone(variant)
            runs[variant.key].append(figure)
            cpu[variant.key].append(cpu_per_gib(seconds, size))

        dest = env.fresh_dir("ferry-in")
        child = ferry.try_ferry(
            env,
            ferry.request(env, "copy", source=ferry.s3_loc(key), destination=ferry.sftp_loc(dest / name)),
            errors,
        )
        if child:
            assert (dest / name).stat().st_size == size
            assert child.json()["sha256"] == env.sha256_of(local_src)
            runs["ferry"].append(mbps(size, child.json()["seconds"]))
            cpu["ferry"].append(cpu_per_gib(child.json()["cpu_seconds"], size))
        shutil.rmtree(dest)

        figure, seconds = openssh_put(ceiling)
        runs["openssh_put_ceiling"].append(figure)
        cpu["openssh_put_ceiling"].append(cpu_per_gib(seconds, size))

    fig = figure_of(
        "s3_to_sftp",
        runs,
        cpu,
        peers,
        size,
        errors,
        env,
        ceiling="openssh_put_ceiling",
        grid_key=GRID_KEY,
        sink=f"source: {SINK_S3}; destination: OpenSSH sshd (local disk)",
        ceiling_name="the destination's ceiling (OpenSSH sftp put of a local file, same cipher, best -R/-B)",
    )
    fig.details["ceiling_flags"] = " ".join(ceiling.flags)
    if CEILING_GRID_KEY in env.grids:
        fig.details["ceiling_grid"] = env.grids[CEILING_GRID_KEY]
    return fig
