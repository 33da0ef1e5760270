"""A password-only SFTP server for the local stack, used when OpenSSH's sshd can't run
(not root, or not installed). The tests always use OpenSSH.

usage: python -m deploy.local.asyncssh_server DIR PORT USER   (password in FERRY_DEMO_SFTP_PASSWORD)
Files go to DIR/data; SFTP paths are local paths, as with sshd. Prints nothing secret.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path

import asyncssh


class _Server(asyncssh.SSHServer):
    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._username and secrets.compare_digest(password, self._password)


async def serve(workdir: Path, port: int, username: str, password: str) -> None:
    key_path = workdir / "host_ed25519"
    if not key_path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(key_path))
        key.write_public_key(f"{key_path}.pub")
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    await asyncssh.create_server(
        lambda: _Server(username, password),
        "127.0.0.1",
        port,
        server_host_keys=[str(key_path)],
        # No chroot: SFTP paths are local paths, as with the OpenSSH demo server.
        sftp_factory=asyncssh.SFTPServer,
    )
    await asyncio.Event().wait()


def main() -> None:
    workdir, port, username = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    password = os.environ["FERRY_DEMO_SFTP_PASSWORD"]
    workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(workdir, port, username, password))


if __name__ == "__main__":
    main()
