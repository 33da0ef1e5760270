"""Goal 3: reading alone, SFTP → a local file: Ferry's SFTP reader against OpenSSH's
``sftp``, at its defaults and at its best (Ferry's cipher, ``-R``/``-B`` from a grid), with
each tool's client CPU per GiB."""

from __future__ import annotations

from bench import ferry, readers
from bench.common import SINK_LOCAL, Env, Figure, Sizes, Variant, best_of, cpu_per_gib, mbps, median, tune
from bench.peers import OPENSSH_DEFAULTS, OPENSSH_GRID, peer_details

GRID_KEY = "openssh_get"


def run(env: Env, sizes: Sizes) -> Figure:
    size = sizes.read
    src = env.source_file(size)
    out = env.local_dir("read")

    def openssh(variant: Variant) -> tuple[float, float]:
        local = out / variant.key
        child = readers.openssh_sftp(env, src, local, variant.flags)
        assert local.stat().st_size == size
        local.unlink()
        return mbps(size, child.seconds), child.cpu_seconds

    best = tune(env, GRID_KEY, OPENSSH_GRID, lambda v: openssh(v)[0], enabled=sizes.tune)
    peers = [OPENSSH_DEFAULTS, best]
    runs: dict[str, list[float]] = {"ferry": [], **{v.key: [] for v in peers}}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    errors: list[str] = []
    for _ in range(sizes.runs):
        for variant in peers:
            figure, seconds = openssh(variant)
            runs[variant.key].append(figure)
            cpu[variant.key].append(cpu_per_gib(seconds, size))

        local = out / "ferry"
        child = ferry.try_ferry(env, ferry.request(env, "read", source=ferry.sftp_loc(src), local=str(local)), errors)
        if child:
            assert local.stat().st_size == size and child.json()["sha256"] == env.sha256_of(src)
            runs["ferry"].append(mbps(size, child.json()["seconds"]))
            cpu["ferry"].append(cpu_per_gib(child.json()["cpu_seconds"], size))
        local.unlink(missing_ok=True)
    peer = best_of(runs, [v.key for v in peers]) or best.key
    chosen = next(v for v in peers if v.key == peer)
    return Figure(
        name="sftp_read",
        ferry=median(runs["ferry"]),
        peer=median(runs[peer]),
        unit="MB/s",
        sink=SINK_LOCAL,
        peer_name=f"OpenSSH sftp -b (get), the better of defaults and best: {' '.join(chosen.flags) or 'defaults'}",
        goal="≥ 1.0x the best OpenSSH sftp, and client CPU per GiB ≤ OpenSSH's",
        note=" ".join(errors),
        runs=runs,
        details={
            "size_bytes": size,
            "peer_variant": peer,
            "cpu_s_per_gib": {k: median(v) for k, v in cpu.items()},
            "cpu_s_per_gib_runs": cpu,
            **peer_details(peers, env.grids, GRID_KEY),
        },
    )


def met(fig: Figure) -> bool | None:
    cpu = fig.details.get("cpu_s_per_gib")
    if fig.ratio is None or not isinstance(cpu, dict):
        return None
    ours, theirs = cpu.get("ferry"), cpu.get(fig.details.get("peer_variant"))
    if ours is None or theirs is None:
        return None
    return fig.ratio >= 1.0 and ours <= theirs
