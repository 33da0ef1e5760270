"""The whole Ferry service on this machine, for the service benchmarks (issue 5).

Real processes only, as ``make run`` starts them: the moto server (S3, SQS, DynamoDB,
EventBridge, Secrets Manager, KMS), a PostgreSQL database of its own (dropped and made
again, then migrated), ``manage.py bootstrap_aws``, and on demand one keeper, one Celery
worker, one ``manage.py consume_events`` and a gunicorn process of the API. The benchmark
drives it as a customer would: a tenant and an API key from ``manage.py``, then endpoints,
routes and transfers over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlencode

import psycopg

from bench.common import ROOT, Env
from deploy.local import services

PG = "postgresql://postgres@127.0.0.1:5432"
DATABASE = os.environ.get("FERRY_BENCH_DATABASE", "ferry_bench")
REGION = "us-east-1"


def drop_database(name: str, *, create: bool = False) -> None:
    """Drop ``name`` (ending its connections); with ``create``, make it again, empty."""
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


class Stack:
    """A context manager: moto + database + bootstrap on enter; ``start_*`` for the rest."""

    def __init__(self, work: Path, *, database: str | None = None, orchestrator: str = "celery") -> None:
        self.work = work
        self.database = database or DATABASE
        # FERRY_ORCHESTRATOR of every process: the figures are Celery's unless a benchmark
        # asks for Step Functions (event_latency_stepfunctions), whatever the profile's default.
        self.orchestrator = orchestrator
        self.logs = work / "stack-logs"
        self.moto: services.Moto | None = None
        self.processes: list[services.Process] = []
        self.api_url: str | None = None
        self.api_key: str | None = None
        self.tenant_id: str | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        assert self.moto
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "DJANGO_SETTINGS_MODULE"}
        env.update(
            {
                **self.moto.env(),
                "DJANGO_SETTINGS_MODULE": "controlplane.settings",
                "FERRY_PROFILE": "local",
                "FERRY_ORCHESTRATOR": self.orchestrator,
                "DATABASE_URL": f"{PG}/{self.database}",
                "FERRY_REGIONS": REGION,
                "FERRY_REGION": REGION,
                "FERRY_NETGUARD_ALLOW": "127.0.0.0/8",
                "FERRY_KEEPER_INTERVAL": "0.5",
                "FERRY_SQS_WAIT_TIME": "1",
                "FERRY_SQS_POLLING_INTERVAL": "0.1",
                "FERRY_REDISPATCH_AFTER": "5",
                "FERRY_LOCAL_DIR": str(self.work / "local-ferry"),
                "LOG_LEVEL": "WARNING",  # a log line per file would cost the figures
                # The benchmarks measure Ferry's work, not the API's rate limits (docs/api.md).
                "FERRY_RATE_LIMIT_READ": "1000000/min",
                "FERRY_RATE_LIMIT_WRITE": "1000000/min",
                "FERRY_RATE_LIMIT_PROBE": "1000000/min",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(ROOT),
            }
        )
        env["FERRY_METRICS_PORT"] = "0"  # off: several processes would want the same port
        return env

    def __enter__(self) -> Stack:
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            # Counting: route_small_files reports the AWS requests per file, per operation.
            self.moto = services.start_moto(log_path=self.logs / "moto.log", count_requests=True)
            self.processes.append(self.moto.process)
            drop_database(self.database, create=True)
            self.manage("migrate", "--noinput")
            self.manage("bootstrap_aws")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def shared(cls, env: Env) -> Stack:
        """One stack for the session's service benchmarks (started once: its start costs
        about 20 s), stopped when ``env`` closes."""
        stack = env.__dict__.get("_ferry_stack")
        if stack is None:
            stack = cls(env.work).__enter__()
            env.__dict__["_ferry_stack"] = stack
            env.closers.append(stack.stop)
        return stack

    def stop(self) -> None:
        services.stop_together(list(reversed(self.processes)))
        self.processes.clear()

    def manage(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env(),
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
        return done.stdout

    def python(self, module: str, *args: str, timeout: float = 1800) -> str:
        """Run ``python -m module`` with the stack's environment (Django configured)."""
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            env=self.env(),
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{module} exited {done.returncode}: {done.stderr[-2000:]}")
        return done.stdout

    def _spawn(self, name: str, cmd: list[str]) -> services.Process:
        log = self.logs / f"{name}.log"
        log.write_text("")
        process = services.spawn(cmd, name=name, env=self.env(), log_path=log)
        self.processes.append(process)
        return process

    def running(self, name: str) -> bool:
        return any(p.name == name and p.proc.poll() is None for p in self.processes)

    def stop_processes(self, *names: str) -> None:
        chosen = [p for p in self.processes if p.name in names]
        services.stop_together(chosen)
        self.processes = [p for p in self.processes if p not in chosen]

    def cpu_seconds(self, *names: str) -> float:
        """CPU seconds used so far by the named processes and everything in their process
        groups (a Celery worker's pool children included, live or reaped), from /proc."""
        groups = {p.pid for p in self.processes if p.name in names}
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            # After the command: state ppid pgrp … utime(11) stime(12) cutime(13) cstime(14).
            if int(fields[2]) in groups:
                total += sum(int(x) for x in fields[11:15])
        return total / tick

    def new_tenant(self) -> None:
        """A tenant of its own and its write key: each benchmark sees only its own rows."""
        self.tenant_id, self.api_key = self.python("bench.stack_child", "tenant").split()[-2:]

    def start_api(self, workers: int = 2) -> None:
        """The API under gunicorn (once), and a fresh tenant."""
        if self.running("api"):
            self.new_tenant()
            return
        port = services.free_port()
        process = self._spawn(
            "api",
            [
                str(services.VENV_BIN / "gunicorn"),
                "controlplane.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--error-logfile",
                "-",
            ],
        )
        self.new_tenant()  # while gunicorn starts
        services.wait_for_port(port, proc=process.proc, timeout=60)
        self.api_url = f"http://127.0.0.1:{port}"

    def start_workers(self, *, events: bool = False, wait: bool = True) -> None:
        """One keeper, one Celery worker (and the event consumer); with ``wait``, returns once
        the worker is ready and the keeper holds every partition (else call
        :meth:`wait_workers`). Already running ones are kept."""
        if events and not self.running("events"):
            self._spawn("events", [sys.executable, str(ROOT / "manage.py"), "consume_events"])
        if self.running("worker"):
            return
        self._spawn("keeper", [sys.executable, str(ROOT / "manage.py"), "run_keeper"])
        if self.orchestrator == "stepfunctions":
            self._spawn("steps", [sys.executable, str(ROOT / "manage.py"), "run_steps"])
        self._spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "controlplane.celery",
                "worker",
                "-Q",
                f"ferry-{REGION}-transfers,ferry-{REGION}-control",
                "-c",
                "2",
                "-n",
                f"bench-{uuid.uuid4().hex[:6]}@%h",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "-l",
                "INFO",  # for its "ready." line
            ],
        )
        if wait:
            self.wait_workers()

    def wait_workers(self, timeout: float = 90) -> None:
        (worker,) = [p for p in self.processes if p.name == "worker"]
        deadline = time.monotonic() + timeout
        # The worker's "ready." first (a log read), then the leases (a Django process each):
        # the keeper takes them while the worker starts.
        held = "not asked"
        while (
            "ready." not in (worker.log_path.read_text(errors="replace") if worker.log_path else "")
            or (held := self.python("bench.stack_child", "partitions").strip()) != "all"
        ):
            for p in self.processes:
                if p.proc.poll() is not None:
                    raise RuntimeError(f"{p.name} exited: {p.log_path.read_text()[-2000:] if p.log_path else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the keeper/worker did not come up (partitions: {held}); see {self.logs}")
            time.sleep(0.2)

    # --- the API ----------------------------------------------------------------------------

    def request(self, method: str, path: str, body: dict | None = None, *, query: dict | None = None) -> dict:
        assert self.api_url and self.api_key
        url = self.api_url + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.api_key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read()[:1000]!r}") from None

    def get_url(self, url: str) -> tuple[float, dict]:
        """GET a full URL (a ``next`` link); returns (seconds, body)."""
        req = urllib.request.Request(url)
        req.add_header("Authorization", f"Bearer {self.api_key}")
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read()
        seconds = time.perf_counter() - start
        return seconds, json.loads(body)

    def sftp_endpoint(self, sshd: services.Sshd) -> dict:
        return self.request(
            "POST",
            "/api/v1/endpoints",
            {
                "name": f"sftp-{uuid.uuid4().hex[:8]}",
                "kind": "sftp",
                "config": {
                    "host": sshd.host,
                    "port": sshd.port,
                    "username": sshd.key_user,
                    "root": str(sshd.data_dir),
                    "host_keys": [sshd.pin],
                    "max_connections": 4,
                },
                "credentials": {"private_key": sshd.client_key.read_text()},
            },
        )

    def s3_endpoint(self, bucket: str, prefix: str = "") -> dict:
        assert self.moto
        self.s3().create_bucket(Bucket=bucket)
        return self.request(
            "POST",
            "/api/v1/endpoints",
            {
                "name": f"s3-{uuid.uuid4().hex[:8]}",
                "kind": "s3",
                "config": {"bucket": bucket, "prefix": prefix, "region": REGION},
                "credentials": {
                    "access_key_id": services.EMULATOR_ENV["AWS_ACCESS_KEY_ID"],
                    "secret_access_key": services.EMULATOR_ENV["AWS_SECRET_ACCESS_KEY"],
                },
            },
        )

    def route(self, source: dict, src_path: str, destination: dict, dst_path: str, trigger: str) -> dict:
        return self.request(
            "POST",
            "/api/v1/routes",
            {
                "name": f"route-{uuid.uuid4().hex[:8]}",
                "source": {"endpoint": source["id"], "path": src_path, "pattern": "*"},
                "destination": {"endpoint": destination["id"], "path": dst_path},
                "trigger": {"type": trigger},
                "options": {"min_age_seconds": 0},
            },
        )

    def transfers(self, route_id: str) -> list[dict]:
        """Every transfer of a route (all pages)."""
        found: list[dict] = []
        _, page = self.get_url(f"{self.api_url}/api/v1/transfers?{urlencode({'route': route_id, 'limit': 200})}")
        while True:
            found += page["results"]
            if not page.get("next"):
                return found
            _, page = self.get_url(page["next"])

    def moto_requests(self) -> int:
        """How many AWS requests the moto server has answered since the last
        :meth:`take_requests` (its counter, deploy/local/moto_server.py)."""
        assert self.moto
        return int(self.moto.requests()["total"])

    def take_requests(self) -> dict:
        """The requests counted since the last call, per service and operation; zeroes them."""
        assert self.moto
        return self.moto.reset_requests()

    def s3(self):
        return self._client("s3")

    def _client(self, service: str):
        import boto3

        assert self.moto
        return boto3.client(
            service,
            endpoint_url=self.moto.url,
            region_name=REGION,
            aws_access_key_id=services.EMULATOR_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=services.EMULATOR_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def ledger_size(self, table: str = "ferry-ledger") -> int:
        """How many delivery-ledger entries there are (a Select=COUNT scan)."""
        dynamodb = self._client("dynamodb")
        return sum(
            page.get("Count", 0) for page in dynamodb.get_paginator("scan").paginate(TableName=table, Select="COUNT")
        )
