"""Goal 3: reading alone, SFTP → a local file: Ferry's SFTP reader against OpenSSH's ``sftp``."""

from __future__ import annotations

from bench import ferry, readers
from bench.common import SINK_LOCAL, Env, Figure, Sizes, mbps, median


def run(env: Env, sizes: Sizes) -> Figure:
    size = sizes.read
    src = env.source_file(size)
    out = env.local_dir("read")
    runs: dict[str, list[float]] = {"ferry": [], "openssh_sftp": []}
    errors: list[str] = []
    for _ in range(sizes.runs):
        local = out / "openssh"
        seconds = readers.openssh_sftp(env, src, local)
        assert local.stat().st_size == size
        local.unlink()
        runs["openssh_sftp"].append(mbps(size, seconds))

        local = out / "ferry"
        child = ferry.try_ferry(env, ferry.request(env, "read", source=ferry.sftp_loc(src), local=str(local)), errors)
        if child:
            assert local.stat().st_size == size and child.json()["sha256"] == env.sha256_of(src)
            runs["ferry"].append(mbps(size, child.json()["seconds"]))
        local.unlink(missing_ok=True)
    return Figure(
        name="sftp_read",
        ferry=median(runs["ferry"]),
        peer=median(runs["openssh_sftp"]),
        unit="MB/s",
        sink=SINK_LOCAL,
        peer_name="OpenSSH sftp -b (get), its defaults",
        goal="≥ 1.0x OpenSSH's sftp client",
        note=" ".join(errors),
        runs=runs,
        details={"size_bytes": size},
    )


def met(fig: Figure) -> bool | None:
    return None if fig.ratio is None else fig.ratio >= 1.0
