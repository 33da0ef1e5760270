"""Timed whole-file SFTP reads to a local file: OpenSSH's ``sftp`` client and the two
Python SSH libraries (each in its own process, see bench.reader)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.common import Env, run_child


def openssh_sftp(env: Env, remote: Path, local: Path) -> float:
    """Seconds for ``sftp -b`` to ``get`` the file (the whole process: connect included)."""
    assert env.sshd
    batch = local.with_suffix(".batch")
    batch.write_text(f'get "{remote}" "{local}"\n')
    run = run_child(
        [
            "sftp",
            "-q",
            "-b",
            str(batch),
            "-P",
            str(env.sshd.port),
            "-i",
            str(env.sshd.client_key),
            "-o",
            f"UserKnownHostsFile={env.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-F",
            "/dev/null",  # its defaults, not the machine's ssh_config
            f"{env.sshd.key_user}@127.0.0.1",
        ]
    )
    batch.unlink()
    return run.seconds


def library_read(env: Env, lib: str, remote: Path, local: Path) -> float:
    """Seconds for ``lib`` (asyncssh | paramiko) to read the file, connect included."""
    assert env.sshd
    request = {
        "lib": lib,
        "host": "127.0.0.1",
        "port": env.sshd.port,
        "user": env.sshd.key_user,
        "pin": env.sshd.pin,
        "key": str(env.sshd.client_key),
        "known_hosts": str(env.known_hosts),
        "remote": str(remote),
        "local": str(local),
    }
    return run_child([sys.executable, "-m", "bench.reader", json.dumps(request)]).json()["seconds"]
