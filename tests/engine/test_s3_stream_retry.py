"""A GET cut mid-body resumes with a ranged GET pinned to the ETag: through a real TCP proxy
in front of the moto server that drops the first connection carrying a large response."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from urllib.parse import urlparse

from deploy.local.services import free_port
from engine import s3client
from engine.copy import copy
from tests.engine.conftest import MIB, payload, s3, s3_loc, sftp_loc, sha


class CuttingProxy:
    """Forwards TCP to ``target``; the first time a response passes ``cut_after`` bytes on one
    connection, both sides are closed (a reset mid-download)."""

    def __init__(self, target: tuple[str, int], cut_after: int) -> None:
        self.target, self.cut_after = target, cut_after
        self.cuts = 0
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self.pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, True), daemon=True).start()

    def pipe(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        passed = 0
        try:
            while data := src.recv(65536):
                passed += len(data)
                if downstream and self.cuts == 0 and passed > self.cut_after:
                    self.cuts += 1
                    dst.sendall(data[: len(data) // 2])
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


def test_a_get_cut_mid_body_resumes_and_delivers_the_same_bytes(moto, s3spec, sftp_spec, folder, caplog):
    caplog.set_level(logging.INFO, logger="ferry.engine")
    data = payload(24 * MIB, seed=51)
    s3().put_object(Bucket=s3spec.bucket, Key="big.bin", Body=data)
    url = urlparse(moto.url)
    proxy = CuttingProxy((url.hostname, url.port), cut_after=6 * MIB)
    try:
        os.environ["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{proxy.port}"  # boto3 reads it
        s3client.reset_clients()
        result = copy(s3_loc(s3spec, "big.bin"), sftp_loc(sftp_spec, folder / "big.bin"), transfer_id="g-1")
    finally:
        os.environ.pop("AWS_ENDPOINT_URL_S3", None)
        proxy.close()
        s3client.reset_clients()
    assert proxy.cuts == 1
    resumed = [r for r in caplog.records if r.message == "resuming GET"]
    assert len(resumed) == 1 and 0 < resumed[0].offset < len(data)
    assert (result.outcome, result.sha256) == ("delivered", sha(data))
    assert (folder / "big.bin").read_bytes() == data
