"""Timed whole-file SFTP reads to a local file: OpenSSH's ``sftp`` client and the two
Python SSH libraries (each in its own process, see bench.reader)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.common import ChildRun, Env, run_child


def openssh_sftp(env: Env, remote: Path, local: Path, flags: tuple[str, ...] = ()) -> ChildRun:
    """``sftp -b`` ``get`` of the file (the whole process, connect included); its wall time
    and CPU (``wait4``: the client and its ``ssh``, never the server)."""
    return _openssh_batch(env, f'get "{remote}" "{local}"\n', local.with_suffix(".batch"), flags)


def openssh_put(env: Env, local: Path, remote: Path, flags: tuple[str, ...] = ()) -> ChildRun:
    """``sftp -b`` ``put`` of a local file: the SFTP destination's ceiling."""
    return _openssh_batch(env, f'put "{local}" "{remote}"\n', local.with_name(f"{local.name}.batch"), flags)


def _openssh_batch(env: Env, command: str, batch: Path, flags: tuple[str, ...]) -> ChildRun:
    assert env.sshd
    batch.write_text(command)
    try:
        return run_child(
            [
                "sftp",
                "-q",
                *flags,
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
                "/dev/null",  # its defaults (and the flags given), not the machine's ssh_config
                f"{env.sshd.key_user}@127.0.0.1",
            ]
        )
    finally:
        batch.unlink(missing_ok=True)


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
