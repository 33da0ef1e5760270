"""Faults against the real sshd: a cut connection leaves no visible file and the retry
delivers once; a wrong password is permanent; a reset connection is transient."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from deploy.local.services import free_port
from engine.copy import CopyOptions, copy
from engine.errors import AuthenticationFailed, HostKeyMismatch, TransientError
from engine.spec import SftpSpec
from tests.engine.conftest import MIB, make_sftp_spec, payload, s3, s3_loc, sftp_loc, sha, visible


def kill_sshd_sessions(sshd) -> int:
    """SIGKILL every per-connection sshd process: the server side of each connection dies
    mid-stream, as when a network path or the server goes away."""
    out = subprocess.run(["pgrep", "-P", str(sshd.process.pid)], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


class CutAfter:
    """A progress callback that cuts every SSH connection once ``limit`` bytes went by."""

    def __init__(self, sshd, limit: int) -> None:
        self.sshd, self.limit, self.killed = sshd, limit, 0

    def __call__(self, done: int) -> None:
        if not self.killed and done >= self.limit:
            self.killed = kill_sshd_sessions(self.sshd)


@pytest.mark.parametrize("max_connections", [1, 4])
def test_cut_while_writing_to_sftp_leaves_nothing_and_the_retry_delivers_once(max_connections, sshd, s3spec, folder):
    # One connection allowed: the cleanup's fresh connection must not wait on the dead one.
    sftp_spec = make_sftp_spec(sshd, max_connections=max_connections)
    data = payload(48 * MIB, seed=21)
    s3().put_object(Bucket=s3spec.bucket, Key="big.bin", Body=data)
    src, dest = s3_loc(s3spec, "big.bin"), sftp_loc(sftp_spec, folder / "big.bin")
    cut = CutAfter(sshd, 8 * MIB)
    with pytest.raises(TransientError) as err:
        copy(src, dest, transfer_id="cut-1", progress=cut)
    assert cut.killed
    assert err.value.transient
    assert visible(folder) == []  # no target, and the .part was removed over a fresh connection
    result = copy(src, dest, transfer_id="cut-1")
    assert (result.outcome, result.sha256) == ("delivered", sha(data))
    assert (folder / "big.bin").read_bytes() == data
    assert visible(folder) == ["big.bin"]


@pytest.mark.parametrize("streams", [1, 4])
def test_cut_while_reading_from_sftp_leaves_no_object_and_the_retry_delivers_once(
    streams, sshd, sftp_spec, s3spec, folder
):
    data = payload(40 * MIB, seed=22)
    (folder / "src.bin").write_bytes(data)
    src, dest = sftp_loc(sftp_spec, folder / "src.bin"), s3_loc(s3spec, "dst.bin")
    cut = CutAfter(sshd, 10 * MIB)
    # streams=4: the file is read over ranged streams (engine.ranged), every one of them cut.
    options = CopyOptions(part_size=5 * MIB, sftp_streams=streams, sftp_streams_min_size=0)
    with pytest.raises(TransientError):
        copy(src, dest, transfer_id="cut-2", progress=cut, options=options)
    assert cut.killed
    assert "Contents" not in s3().list_objects_v2(Bucket=s3spec.bucket)
    assert not s3().list_multipart_uploads(Bucket=s3spec.bucket).get("Uploads")
    assert copy(src, dest, transfer_id="cut-2").outcome == "delivered"
    assert s3().get_object(Bucket=s3spec.bucket, Key="dst.bin")["Body"].read() == data
    assert copy(src, dest, transfer_id="cut-2").outcome == "already_delivered"


def test_wrong_password_is_permanent(sshd, s3spec, folder):
    assert sshd.password_user, "password logins need the test run as root"
    (folder / "a").write_bytes(b"a")
    spec = make_sftp_spec(sshd, username=sshd.password_user, private_key=None, password="not-the-password")
    with pytest.raises(AuthenticationFailed) as err:
        copy(sftp_loc(spec, folder / "a"), s3_loc(s3spec, "a"), transfer_id="auth-1")
    assert not err.value.transient
    assert "not-the-password" not in str(err.value)


def test_unpinned_host_key_is_permanent(sshd, s3spec, folder):
    spec = make_sftp_spec(sshd, host_keys=("ssh-ed25519 SHA256:" + "C" * 43,))
    with pytest.raises(HostKeyMismatch) as err:
        copy(sftp_loc(spec, folder / "a"), s3_loc(s3spec, "a"), transfer_id="hk-1")
    assert not err.value.transient


class ResettingServer:
    """Accepts TCP connections and resets them at once (SO_LINGER 0 → RST)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_reset_connection_is_transient(s3spec):
    server = ResettingServer()
    try:
        spec = SftpSpec(
            endpoint_id="reset",
            version=1,
            host="127.0.0.1",
            port=server.port,
            username="x",
            host_keys=("ssh-ed25519 SHA256:" + "A" * 43,),
            password="x",
        )
        with pytest.raises(TransientError) as err:
            copy(sftp_loc(spec, "/a"), s3_loc(s3spec, "a"), transfer_id="reset-1")
        assert err.value.transient
    finally:
        server.close()


def test_s3_permission_problems_are_permanent(sftp_spec, folder, moto):
    from engine.errors import PermanentError
    from engine.spec import S3Spec

    (folder / "a").write_bytes(b"a")
    spec = S3Spec(endpoint_id="nob", version=1, bucket="no-such-bucket-here", region="us-east-1")
    with pytest.raises(PermanentError) as err:
        copy(sftp_loc(sftp_spec, folder / "a"), s3_loc(spec, "a"), transfer_id="perm-1")
    assert err.value.code == "bucket_missing"


def test_a_copy_past_its_timeout_is_cancelled_and_cleans_up(sftp_spec, s3spec, folder):
    from tests.conftest import wait_until

    s3().put_object(Bucket=s3spec.bucket, Key="slow.bin", Body=payload(32 * MIB, seed=41))
    written: list[int] = []

    def slow_down(done: int) -> None:
        written.append(done)
        time.sleep(1.0)  # on the engine loop: 32 MiB report progress 4+ times, so 4+ s > 2 s

    with pytest.raises(TransientError) as err:
        copy(
            s3_loc(s3spec, "slow.bin"),
            sftp_loc(sftp_spec, folder / "slow.bin"),
            transfer_id="to-1",
            timeout=2,
            progress=slow_down,
        )
    assert err.value.code == "timeout"
    assert written and written[-1] < 32 * MIB  # it was mid-write, with a .part on the server
    # The cancelled copy removes its .part on the engine loop.
    wait_until(lambda: visible(folder) == [], timeout=15, message="the .part to be removed")


def test_sftp_to_sftp_cut_during_delivery_retries_from_staging(sshd, sftp_spec, s3spec, folder, caplog):
    import logging

    data = payload(24 * MIB, seed=61)
    (folder / "src.bin").write_bytes(data)
    staging = s3_loc(s3spec, "staging/cut-3")
    src, dest = sftp_loc(sftp_spec, folder / "src.bin"), sftp_loc(sftp_spec, folder / "dst.bin")
    cut = CutAfter(sshd, 4 * MIB)  # progress of a staged copy follows the delivery step
    with pytest.raises(TransientError):
        copy(src, dest, transfer_id="cut-3", staging=staging, progress=cut)
    assert cut.killed
    assert visible(folder) == ["src.bin"]
    caplog.set_level(logging.INFO, logger="ferry.engine")
    result = copy(src, dest, transfer_id="cut-3", staging=staging)
    assert (result.outcome, result.sha256) == ("delivered", sha(data))
    assert any(r.message == "reusing staged copy" for r in caplog.records)
    assert (folder / "dst.bin").read_bytes() == data
    assert visible(folder) == ["dst.bin", "src.bin"]
