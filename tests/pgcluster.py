"""A throwaway PostgreSQL cluster for one test: initdb in a temporary folder, started on a
free loopback port with the certificate files given, stopped and removed afterwards.

As root, initdb and pg_ctl run as the ``postgres`` OS user (PostgreSQL refuses to run as
root); otherwise as whoever runs the tests. Only TLS connections from loopback are
accepted (``hostssl``), with ``trust``: the tests using it check the transport, not logins.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class ClusterError(RuntimeError):
    pass


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if not found:
        raise ClusterError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (make system-deps)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    workdir: Path
    port: int
    bin_dir: Path
    user: str | None  # the OS user the server runs as, when not us

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", timeout=30)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_tls_cluster(cert_pem: bytes, key_pem: bytes) -> Cluster:
    """A cluster serving ``cert_pem`` (chain, PEM) with ``key_pem`` on 127.0.0.1; TLS only."""
    user = "postgres" if os.geteuid() == 0 else None
    # Not under pytest's basetemp: that is private to root, and the server runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="ferry-pgtls-"))
    cluster = Cluster(workdir=workdir, port=_free_port(), bin_dir=_bin_dir(), user=user)
    try:
        if user:
            entry = pwd.getpwnam(user)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
        done = cluster.run(
            "initdb", "-D", str(cluster.data_dir), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"
        )
        if done.returncode != 0:
            raise ClusterError(f"initdb failed: {done.stderr[-1000:]}")
        for name, body in (("server.crt", cert_pem), ("server.key", key_pem)):
            path = cluster.data_dir / name
            path.write_bytes(body)
            path.chmod(0o600)
            if user:
                os.chown(path, entry.pw_uid, entry.pw_gid)
        (cluster.data_dir / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n"
        )
        options = " ".join(
            [
                f"-p {cluster.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={workdir}",
                "-c ssl=on",
                "-c fsync=off",
                "-c max_connections=10",
                "-c shared_buffers=8MB",
            ]
        )
        log = workdir / "server.log"
        done = cluster.run(
            "pg_ctl", "-D", str(cluster.data_dir), "-l", str(log), "-o", options, "-w", "-t", "30", "start"
        )
        if done.returncode != 0:
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise ClusterError(f"pg_ctl start failed: {done.stdout[-500:]}{done.stderr[-500:]}\n{tail}")
    except BaseException:
        cluster.stop()
        raise
    return cluster
