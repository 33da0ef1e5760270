"""Goal 5: asyncssh (as Ferry connects: sftp_connect.connect) against paramiko on the same
reads, same cipher (aes128-gcm), each library's own request size and pipelining."""

from __future__ import annotations

from bench import readers
from bench.common import SINK_LOCAL, Env, Figure, Sizes, mbps, median


def run(env: Env, sizes: Sizes) -> Figure:
    size = sizes.library
    src = env.source_file(size)
    out = env.local_dir("library")
    runs: dict[str, list[float]] = {"asyncssh": [], "paramiko": []}
    for _ in range(sizes.runs):
        for lib in ("asyncssh", "paramiko"):
            local = out / lib
            seconds = readers.library_read(env, lib, src, local)
            assert local.stat().st_size == size
            local.unlink()
            runs[lib].append(mbps(size, seconds))
    return Figure(
        name="ssh_library",
        ferry=median(runs["asyncssh"]),
        peer=median(runs["paramiko"]),
        unit="MB/s",
        sink=SINK_LOCAL,
        peer_name="paramiko 5.1 SFTPClient.get",
        goal="asyncssh ahead of paramiko on the same reads (the reason for the choice); no numeric goal",
        note="Ferry's column is asyncssh through Ferry's own connect (cipher order, pinned host key) and SFTPClient.get with its defaults.",
        runs=runs,
        details={"size_bytes": size, "cipher": "aes128-gcm@openssh.com (both)"},
    )


def met(fig: Figure) -> bool | None:
    return None if fig.ratio is None else fig.ratio > 1.0
