"""What every benchmark shares: the services, the data files, timing and peak-RSS helpers.

Every tool talks to the same OpenSSH sshd and the same S3 server (``rclone serve s3``,
disk-backed) on loopback. Timed copies run in child processes so each starts cold and its
peak RSS can be read on its own (``os.wait4`` returns the child's rusage).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig

from deploy.local import services

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
BUCKET = "ferry-bench"
MB = 1_000_000
MiB = 1 << 20
GiB = 1 << 30
SINK_S3 = "rclone serve s3 (disk-backed, loopback)"
RESULT_MARK = "BENCH-RESULT "
SINK_LOCAL = "local file (page cache)"


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is; ``quick`` is the under-five-minutes version."""

    runs: int = 3
    throughput: int = 1 << 30  # goals 1 and 2: 1 GiB
    read: int = 1 << 30  # goal 3
    library: int = 256 * MiB  # goal 5 (paramiko is slow; 256 MiB keeps it to seconds a run)
    small_count: int = 1000  # goal 4: 1000 files of 4 KiB
    small_size: int = 4096
    memory: tuple[int, ...] = (256 * MiB, 2 << 30)  # goal 6
    # The service benchmarks (issue 5): the whole stack, not the engine alone.
    event_files: int = 100  # event_latency: 1 KiB objects, one at a time
    route_files: int = 1000  # route_small_files: 4 KiB files through one route
    api_rows: int = 100_000  # api_list: transfers in PostgreSQL
    api_requests: int = 300  # api_list: timed GETs
    cap_seconds: float = 30.0  # bandwidth_cap: how long the capped copy should last
    # Try each peer's grid of tuned settings once per session and keep the fastest (False:
    # the first candidate only, for the smoke test).
    tune: bool = True
    quick: bool = False

    @classmethod
    def full(cls) -> Sizes:
        return cls()

    @classmethod
    def quick_sizes(cls) -> Sizes:
        return cls(
            throughput=128 * MiB,
            read=128 * MiB,
            library=64 * MiB,
            small_count=100,
            memory=(64 * MiB, 256 * MiB),
            event_files=20,
            route_files=200,
            api_requests=150,
            cap_seconds=10.0,
            quick=True,
        )

    @classmethod
    def tiny(cls) -> Sizes:
        """For the smoke test: proves the harness, measures nothing."""
        return cls(
            runs=1,
            throughput=MiB,
            read=MiB,
            library=MiB,
            small_count=10,
            memory=(MiB, 2 * MiB),
            event_files=2,
            route_files=5,
            api_rows=200,
            api_requests=10,
            cap_seconds=0.5,
            tune=False,
            quick=True,
        )


@dataclass
class Figure:
    """One benchmark's result as it goes into benchmarks.json."""

    name: str
    ferry: float | None
    peer: float | None
    unit: str
    sink: str
    peer_name: str | None
    better: str = "higher"  # "higher" | "lower": which way the ratio should go
    goal: str = ""
    note: str = ""
    runs: dict[str, list[float]] = field(default_factory=dict)  # every run, per tool
    details: dict[str, object] = field(default_factory=dict)
    date: str | None = None  # when it was measured (set by the runner)

    @property
    def ratio(self) -> float | None:
        return ratio(self.ferry, self.peer)

    def as_json(self, date: str) -> dict[str, object]:
        return {
            "name": self.name,
            "ferry": self.ferry,
            "peer": self.peer,
            "unit": self.unit,
            "ratio": self.ratio,
            "sink": self.sink,
            "date": self.date or date,
            "peer_name": self.peer_name,
            "better": self.better,
            "goal": self.goal,
            "note": self.note,
            "runs": self.runs,
            "details": self.details,
        }


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def spread(values: list[float]) -> float | None:
    """(max - min) / median: how noisy the runs were."""
    if len(values) < 2:
        return None
    return round((max(values) - min(values)) / statistics.median(values), 3)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def mbps(size: int, seconds: float) -> float:
    return round(size / seconds / MB, 2)


def cpu_per_gib(cpu_seconds: float, size: int) -> float:
    """Client CPU seconds per GiB moved (the figure that holds from machine to machine)."""
    return round(cpu_seconds * GiB / size, 2)


def cpu_per_1000(cpu_seconds: float, files: int) -> float:
    """Client CPU seconds per 1,000 files."""
    return round(cpu_seconds * 1000 / files, 2)


@dataclass(frozen=True)
class Variant:
    """One way of running a peer: ``key`` names its runs in the JSON, ``flags`` are exactly
    what it was given (listed in the page), ``verifies`` whether it still checks a hash of
    the content end to end (rclone's md5sum over SSH; OpenSSH never does)."""

    key: str
    label: str
    flags: tuple[str, ...] = ()
    verifies: bool = True

    def described(self) -> str:
        return f"{self.label}: `{' '.join(self.flags) or '(no flags)'}`"


def best_of(runs: dict[str, list[float]], keys: list[str], *, better: str = "higher") -> str | None:
    """The key among ``keys`` whose median is best (the peer that counts)."""
    medians = {k: median(runs.get(k, [])) for k in keys}
    present = {k: m for k, m in medians.items() if m is not None}
    if not present:
        return None
    pick = max if better == "higher" else min
    return pick(present, key=lambda k: present[k])  # type: ignore[arg-type, return-value]


def tune(env: Env, key: str, candidates: list[Variant], once: Callable[[Variant], float], *, enabled: bool) -> Variant:
    """Run each candidate once (``once`` returns a higher-is-better figure) and keep the
    best, remembered for the session under ``key``; the grid's figures go in
    ``env.grids[key]``. Not ``enabled``: the first candidate, untried."""
    if key in env.tuned:
        return env.tuned[key]
    if not enabled or len(candidates) == 1:
        env.tuned[key] = candidates[0]
        return candidates[0]
    grid: dict[str, float] = {}
    best, best_figure = candidates[0], -1.0
    for candidate in candidates:
        try:
            figure = once(candidate)
        except RuntimeError as exc:  # a setting the server refuses is a losing setting
            grid[" ".join(candidate.flags)] = 0.0
            print(f"[bench] {key}: {' '.join(candidate.flags)} failed: {str(exc)[-300:]}", flush=True)
            continue
        grid[" ".join(candidate.flags)] = figure
        if figure > best_figure:
            best, best_figure = candidate, figure
    env.tuned[key], env.grids[key] = best, grid
    return best


@dataclass
class ChildRun:
    seconds: float  # wall time of the child process
    maxrss_kib: int  # its peak RSS (ru_maxrss, KiB on Linux)
    stdout: str
    cpu_seconds: float = 0.0  # user + system CPU time of the child

    def json(self) -> dict:
        # The child's report is the last line marked as such (libraries may log after it).
        lines = [line for line in self.stdout.splitlines() if line.startswith(RESULT_MARK)]
        if not lines:
            raise RuntimeError(f"no result from the child: {self.stdout[-1000:]}")
        return json.loads(lines[-1][len(RESULT_MARK) :])


def run_child(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 1800) -> ChildRun:
    """Run ``cmd`` to completion and return its wall time and its own peak RSS."""
    WORK.mkdir(parents=True, exist_ok=True)
    out_path = WORK / f"child-{uuid.uuid4().hex}.out"
    with open(out_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT))
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = out_path.read_text(errors="replace")
    out_path.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:3])} exited {proc.returncode}: {text[-2000:]}")
    return ChildRun(
        seconds=seconds, maxrss_kib=usage.ru_maxrss, stdout=text, cpu_seconds=usage.ru_utime + usage.ru_stime
    )


def write_random_file(path: Path, size: int) -> Path:
    """Incompressible bytes, so no layer can cheat by compressing."""
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = 8 * MiB
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n
    os.chmod(path, 0o644)
    return path


class Env:
    """The services and paths of one benchmark session (a context manager)."""

    def __init__(self, work: Path = WORK) -> None:
        self.work = work
        self.sshd: services.Sshd | None = None
        self.s3: services.RcloneS3 | None = None
        self.closers: list[Callable[[], None]] = []  # services a benchmark started for the session
        self.tuned: dict[str, Variant] = {}  # a peer's best settings, tried once a session (tune)
        self.grids: dict[str, dict[str, float]] = {}  # what each tried setting reached

    def __enter__(self) -> Env:
        self.work.mkdir(parents=True, exist_ok=True)
        self.sshd = services.start_sshd(self.work / "sshd")
        self.s3 = services.start_rclone_s3(self.work / "s3", log_path=self.work / "rclone-s3.log")
        if not (self.s3.root / BUCKET).is_dir():
            self.s3_client().create_bucket(Bucket=BUCKET)
        kh = self.work / "known_hosts"
        lines = []
        for key_type in ("ed25519", "ecdsa"):  # rclone may negotiate either
            pub = (self.sshd.workdir / "keys" / f"host_{key_type}.pub").read_text().split()
            lines.append(f"[127.0.0.1]:{self.sshd.port} {pub[0]} {pub[1]}\n")
        kh.write_text("".join(lines))
        self.known_hosts = kh
        self.rclone_conf = self.work / "rclone.conf"
        self.rclone_conf.write_text("")  # remotes come from RCLONE_CONFIG_* variables
        return self

    def __exit__(self, *exc: object) -> None:
        for close in reversed(self.closers):
            close()
        if self.s3:
            self.s3.stop()
        if self.sshd:
            self.sshd.stop()

    # --- paths ---------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """Served by sshd at this same absolute path (no chroot)."""
        assert self.sshd
        return self.sshd.data_dir

    def fresh_dir(self, name: str) -> Path:
        path = self.data_dir / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        os.chmod(path, 0o777)
        return path

    def local_dir(self, name: str) -> Path:
        path = self.work / "local" / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def source_file(self, size: int) -> Path:
        return write_random_file(self.data_dir / "src" / f"random-{size}", size)

    def sha256_of(self, path: Path) -> str:
        """The SHA-256 of a local file (cached: sources are hashed once a session)."""
        cache = self.__dict__.setdefault("_sha", {})
        if path not in cache:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(8 * MiB):
                    digest.update(block)
            cache[path] = digest.hexdigest()
        return cache[path]

    def s3_object_path(self, key: str) -> Path:
        """Where ``rclone serve s3`` keeps an object on disk."""
        assert self.s3
        return self.s3.root / BUCKET / key

    # --- clients -------------------------------------------------------------------------

    def s3_client(self):
        assert self.s3
        return boto3.client(
            "s3",
            endpoint_url=self.s3.url,
            aws_access_key_id=self.s3.access_key,
            aws_secret_access_key=self.s3.secret_key,
            region_name="us-east-1",
            config=BotoConfig(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
            ),
        )

    def remove_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.s3_object_path(prefix), ignore_errors=True)

    def s3_source_object(self, size: int) -> str:
        """An object of ``size`` random bytes in the sink (the same bytes as the SFTP source)."""
        key = f"src/random-{size}"
        path = self.s3_object_path(key)
        if not (path.exists() and path.stat().st_size == size):
            self.s3_client().upload_file(str(self.source_file(size)), BUCKET, key)
        return key

    def rclone_env(self) -> dict[str, str]:
        """rclone's two remotes, ``sftp:`` and ``s3:``, configured from the environment."""
        assert self.sshd and self.s3
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
        env.update(
            {
                "RCLONE_CONFIG": str(self.rclone_conf),
                "RCLONE_CONFIG_SFTP_TYPE": "sftp",
                "RCLONE_CONFIG_SFTP_HOST": "127.0.0.1",
                "RCLONE_CONFIG_SFTP_PORT": str(self.sshd.port),
                "RCLONE_CONFIG_SFTP_USER": self.sshd.key_user,
                "RCLONE_CONFIG_SFTP_KEY_FILE": str(self.sshd.client_key),
                "RCLONE_CONFIG_SFTP_KNOWN_HOSTS_FILE": str(self.known_hosts),
                "RCLONE_CONFIG_S3_TYPE": "s3",
                "RCLONE_CONFIG_S3_PROVIDER": "Rclone",
                "RCLONE_CONFIG_S3_ENDPOINT": self.s3.url,
                "RCLONE_CONFIG_S3_ACCESS_KEY_ID": self.s3.access_key,
                "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": self.s3.secret_key,
                "RCLONE_CONFIG_S3_REGION": "us-east-1",
            }
        )
        return env

    def rclone(self, *args: str) -> ChildRun:
        """``rclone ARGS`` against sshd and the S3 sink (flags may come first)."""
        rclone = services.which("rclone")
        assert rclone
        return run_child([rclone, *args], env=self.rclone_env())

    def ferry(self, request: dict) -> ChildRun:
        """Run one Ferry operation in a fresh Python process (see bench.ferry_child)."""
        assert self.s3
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.s3.env())
        env["PYTHONPATH"] = str(ROOT)
        env["FERRY_S3_ADDRESSING_STYLE"] = "path"
        request_file = self.work / f"request-{uuid.uuid4().hex}.json"
        request_file.write_text(json.dumps(request))
        try:
            return run_child([sys.executable, "-m", "bench.ferry_child", f"@{request_file}"], env=env)
        finally:
            request_file.unlink()

    def sftp_spec_json(self) -> dict:
        assert self.sshd
        return {
            "endpoint_id": "bench-sftp",
            "version": 1,
            "host": "127.0.0.1",
            "port": self.sshd.port,
            "username": self.sshd.key_user,
            "host_keys": [self.sshd.pin],
            "private_key": self.sshd.client_key.read_text(),
            "max_connections": 8,
        }

    def s3_spec_json(self) -> dict:
        assert self.s3
        return {
            "endpoint_id": "bench-s3",
            "version": 1,
            "bucket": BUCKET,
            "region": "us-east-1",
            "access_key_id": self.s3.access_key,
            "secret_access_key": self.s3.secret_key,
            # rclone serve s3 stores a PutObjectTagging body as the object and 500s on
            # GetObjectTagging of an untagged one: the engine's switch for servers without tags.
            "object_tags": False,
            # It ignores If-None-Match and overwrites: the engine looks before it writes.
            "conditional_writes": False,
        }


def repeat(runs: int, once: Callable[[int], float]) -> list[float]:
    """Call ``once(i)`` ``runs`` times and return its figures."""
    return [once(i) for i in range(runs)]
