"""Read one remote file to a local file with one SSH library, in its own process.

``python -m bench.reader '<json>'`` with ``lib`` = ``"asyncssh"`` (through Ferry's own
``sftp_connect.connect``: its cipher order and host-key pinning) or ``"paramiko"``, each
with the same cipher (aes128-gcm) and its own defaults for request size and requests in
flight. Prints one JSON line: the seconds from connecting to the last byte written, and
the size read.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path


def read_asyncssh(req: dict) -> int:
    from engine import sftp_connect
    from engine.spec import SftpSpec

    spec = SftpSpec(
        endpoint_id="bench",
        version=1,
        host=req["host"],
        port=req["port"],
        username=req["user"],
        host_keys=(req["pin"],),
        private_key=Path(req["key"]).read_text(),
    )

    async def go() -> None:
        async with await sftp_connect.connect(spec) as conn, conn.start_sftp_client() as sftp:
            await sftp.get(req["remote"], req["local"])

    asyncio.run(go())
    return os.path.getsize(req["local"])


def read_paramiko(req: dict) -> int:
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(req["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        req["host"],
        port=req["port"],
        username=req["user"],
        key_filename=req["key"],
        allow_agent=False,
        look_for_keys=False,
        # The same cipher as the asyncssh side, so the comparison is of the libraries.
        disabled_algorithms={
            "ciphers": [c for c in paramiko.Transport._preferred_ciphers if c != "aes128-gcm@openssh.com"]
        },
    )
    try:
        sftp = client.open_sftp()
        sftp.get(req["remote"], req["local"])
        sftp.close()
    finally:
        client.close()
    return os.path.getsize(req["local"])


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    start = time.perf_counter()
    size = {"asyncssh": read_asyncssh, "paramiko": read_paramiko}[request["lib"]](request)
    print("BENCH-RESULT " + json.dumps({"seconds": time.perf_counter() - start, "size": size}), flush=True)
