"""Session fixtures: real services on free loopback ports.

- ``moto``: the moto server over HTTP (S3, SQS, DynamoDB, Secrets Manager, KMS, STS,
  EventBridge), bootstrapped with Ferry's resources; AWS_ENDPOINT_URL points at it.
- ``sshd``: OpenSSH's sshd with generated host and user keys.
- PostgreSQL: the machine's server (DATABASE_URL); pytest-django makes the test database.
- ``celery_worker``: a real Celery worker process consuming SQS on the moto server and
  using the test database; tests that need it commit (``transaction=True``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.test import override_settings

from deploy.local import services
from tests.gpgtool import partner  # noqa: F401 - the partner GnuPG fixture, used by name (tests/pgp, tests/engine)

# Kept across transactional tests: what post_migrate would create again after a flush.
_KEPT_TABLES = {"django_content_type", "auth_permission"}


def _empty_tables_quickly() -> None:
    """After a transactional test, empty the tables with DELETE under
    ``session_replication_role = replica`` (no foreign-key or history triggers fire) instead of
    Django's flush: its TRUNCATE of every table cost about 0.2 s a test, the DELETEs about
    0.01 s. Then post_migrate, as flush sends it (content types and permissions are kept:
    it would only make them again). A database user who may not set the role (not a superuser) gets Django's flush.

    A session worker (Celery, step consumer, keeper) still writing its last row can deadlock
    with the emptying, and PostgreSQL aborts one side; when it aborts ours, the transaction
    rolled back whole: try again (three times at most) rather than fail a test whose
    assertions all passed."""
    from django.core.management.sql import emit_post_migrate_signal
    from django.db import OperationalError, connections, transaction
    from django.db.utils import ProgrammingError
    from django.test import testcases

    flush = testcases.TransactionTestCase._fixture_teardown
    if getattr(flush, "ferry_fast", False):
        return

    def empty(db_name: str) -> bool:
        connection = connections[db_name]
        if connection.vendor != "postgresql":
            return False
        tables = [
            t
            for t in connection.introspection.django_table_names(only_existing=True, include_views=False)
            if t not in _KEPT_TABLES
        ]
        quote = connection.ops.quote_name
        for attempt in range(3):
            try:
                with transaction.atomic(using=db_name), connection.cursor() as cursor:
                    cursor.execute("SET LOCAL session_replication_role = replica")
                    cursor.execute("; ".join(f"DELETE FROM {quote(t)}" for t in tables))
                # As flush does: what post_migrate makes (the operators' groups) comes back.
                emit_post_migrate_signal(0, False, db_name)
                return True
            except ProgrammingError as exc:
                if "permission denied" in str(exc):
                    return False
                raise
            except OperationalError as exc:
                if "deadlock detected" not in str(exc) or attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return True

    def fixture_teardown(self) -> None:
        plain = self.available_apps is None and not self.serialized_rollback
        if plain and all(empty(db_name) for db_name in self._databases_names(include_mirrors=False)):
            return
        flush(self)

    fixture_teardown.ferry_fast = True  # type: ignore[attr-defined]
    testcases.TransactionTestCase._fixture_teardown = fixture_teardown  # type: ignore[method-assign]


_empty_tables_quickly()

ROOT = Path(__file__).resolve().parents[1]


def pytest_sessionfinish(session, exitstatus) -> None:
    # Whatever a failed fixture left running (a worker, a keeper, a server) ends with the run.
    services.stop_all_spawned()


def wait_until(
    predicate: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.1, message: str = "condition"
) -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def moto(logs_dir) -> Iterator[services.Moto]:
    from controlplane import aws
    from controlplane.bootstrap import bootstrap

    server = services.start_moto(log_path=logs_dir / "moto.log")
    os.environ.update(server.env())
    aws.reset_clients()
    bootstrap(create=True)
    yield server
    server.stop()
    os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # a closed port, never real AWS
    aws.reset_clients()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> Iterator[services.Sshd]:
    # Not under /tmp when root: a password user must be able to traverse to data/.
    server = services.start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def database_url() -> str:
    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{user}{password}@{host}{port}/{db['NAME']}"


# Session-wide processes (the single-region keeper and worker) that fault tests suspend.
SESSION_PROCESSES: list = []


class Worker:
    """A Celery worker process of one region; ``stop``/``start`` for fault tests."""

    def __init__(self, env: dict[str, str], log_path: Path, queues: list[str], concurrency: int = 2) -> None:
        self.env = env
        self.log_path = log_path
        self.queues = queues
        self.concurrency = concurrency
        self.process: services.Process | None = None

    def start(self, timeout: float = 60.0) -> None:
        name = f"w{uuid.uuid4().hex[:6]}@%h"
        self.log_path.write_text("")
        self.process = services.spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "controlplane.celery",
                "worker",
                "-Q",
                ",".join(self.queues),
                "-c",
                str(self.concurrency),
                "-n",
                name,
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            name="celery-worker",
            env=self.env,
            log_path=self.log_path,
        )
        deadline = time.monotonic() + timeout
        while "ready." not in self.log_path.read_text(errors="replace"):
            if self.process.proc.poll() is not None or time.monotonic() > deadline:
                output = self.log_path.read_text(errors="replace")[-3000:]
                self.stop()
                pytest.fail(f"celery worker did not start:\n{output}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture(scope="session")
def worker_env(moto, django_db_setup) -> dict[str, str]:
    return {
        **moto.env(),
        "FERRY_PROFILE": "test",
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        # The single-region stack: this region is home to every partition.
        "FERRY_REGIONS": settings.FERRY_REGION,
    }


@pytest.fixture(scope="session")
def celery_worker(worker_env, logs_dir) -> Iterator[Worker]:
    from controlplane.resources import queues

    q = queues()
    # This worker serves its metrics (multiprocess mode), so tests can scrape them.
    metrics_port = services.free_port()
    (logs_dir / "worker-metrics").mkdir()
    env = {
        **worker_env,
        "FERRY_METRICS_PORT": str(metrics_port),
        "PROMETHEUS_MULTIPROC_DIR": str(logs_dir / "worker-metrics"),
    }
    worker = Worker(env, logs_dir / "celery-worker.log", [q.transfers, q.control])
    worker.metrics_port = metrics_port
    worker.start()
    SESSION_PROCESSES.append(worker)
    yield worker
    SESSION_PROCESSES.remove(worker)
    worker.stop()


class KeeperProcess:
    """``manage.py run_keeper`` of one region in a child process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: services.Process | None = None

    def start(self) -> None:
        self.process = services.spawn(
            [sys.executable, str(ROOT / "manage.py"), "run_keeper"], name="keeper", env=self.env, log_path=self.log_path
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture(scope="session")
def keeper(worker_env, logs_dir) -> Iterator[KeeperProcess]:
    """This region's keeper, holding every partition (the single-region stack)."""

    process = KeeperProcess(worker_env, logs_dir / "keeper.log")
    process.start()
    _wait_for_single_region()
    SESSION_PROCESSES.append(process)
    yield process
    SESSION_PROCESSES.remove(process)
    process.stop()


class StepConsumerProcess:
    """``manage.py run_steps`` of one region (the Step Functions step consumer)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**env, "FERRY_ORCHESTRATOR": "stepfunctions"}
        self.log_path = log_path
        self.process: services.Process | None = None

    def start(self, timeout: float = 60.0, **extra_env: str) -> None:
        self.log_path.write_text("")
        self.process = services.spawn(
            [sys.executable, str(ROOT / "manage.py"), "run_steps"],
            name="step-consumer",
            env={**self.env, **extra_env},
            log_path=self.log_path,
        )
        deadline = time.monotonic() + timeout
        while "step consumer started" not in self.log_path.read_text(errors="replace"):
            if self.process.proc.poll() is not None or time.monotonic() > deadline:
                output = self.log_path.read_text(errors="replace")[-3000:]
                self.stop()
                pytest.fail(f"step consumer did not start:\n{output}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture(scope="session")
def step_consumer(worker_env, logs_dir) -> Iterator[StepConsumerProcess]:
    """This region's Step Functions step consumer (``manage.py run_steps``)."""
    process = StepConsumerProcess(worker_env, logs_dir / "step-consumer.log")
    process.start()
    SESSION_PROCESSES.append(process)
    yield process
    SESSION_PROCESSES.remove(process)
    process.stop()


def stop_processes(processes: list) -> None:
    """Stop these process wrappers (Worker, KeeperProcess, ...) at once: SIGTERM to all, then
    one wait, rather than one graceful stop after another."""
    services.stop_together([p.process for p in processes if p.process is not None])
    for p in processes:
        p.process = None


@contextlib.contextmanager
def session_processes_suspended(django_db_blocker) -> Iterator[list]:
    """The session's keeper, worker and step consumer stopped while a test runs processes of
    its own (they would hold every partition, or run its transfers); started again after,
    and, when the keeper was among them, its partitions waited for."""
    suspended = [p for p in SESSION_PROCESSES if p.process is not None]
    stop_processes(suspended)
    try:
        yield suspended
    finally:
        for process in suspended:
            process.start()
        if any(isinstance(p, KeeperProcess) for p in suspended):
            with django_db_blocker.unblock():
                _wait_for_single_region()


def _wait_for_single_region() -> None:
    from workers import context

    wait_until(
        lambda: len(context.held_partitions()) == settings.FERRY_PARTITIONS,
        timeout=30,
        message="the keeper to hold every partition",
    )


@pytest.fixture
def stack(keeper, celery_worker, purge_queues):
    """A keeper and a worker of this region, queues empty: transfers run end to end."""
    return {"keeper": keeper, "worker": celery_worker}


@pytest.fixture
def bucket(moto) -> str:
    """A fresh bucket in the emulator."""
    from controlplane import aws

    name = f"ferry-test-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def purge_queues(moto) -> Callable[[], None]:
    """Empty this region's queues; called before a worker test so nothing leaks in."""
    from controlplane import aws, awsguard
    from controlplane.resources import queues

    def purge() -> None:
        # Not PurgeQueue: SQS (and moto) allow one per queue per minute.
        sqs = aws.client("sqs")
        for region in settings.FERRY_REGIONS:
            with awsguard.acting_as(region):  # each region empties its own queues
                _purge(sqs, queues(region).all())

    purge()
    return purge


def _purge(sqs, names: list[str]) -> None:
    for name in names:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                break
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )


# --- the secondary region's database connection ------------------------------------------


@pytest.fixture
def forwarded_connection(transactional_db, settings):
    """This test's in-process code runs as the secondary region's does on AWS: its database
    connection refuses what Aurora write forwarding refuses (controlplane/dbforwarding.py).

    Transactional only: inside a test transaction every ``atomic()`` is a SAVEPOINT. Use it
    for a whole module with ``pytestmark = pytest.mark.usefixtures("forwarded_connection")``.
    """
    from django.db import connection

    from controlplane import dbforwarding

    if connection.in_atomic_block:
        pytest.fail("forwarded_connection needs django_db(transaction=True): a test transaction makes savepoints")
    settings.FERRY_DATABASE_WRITER_REGION = next(r for r in settings.FERRY_REGIONS if r != settings.FERRY_REGION)
    connection.ensure_connection()
    dbforwarding.install(connection)
    yield connection
    # Before transactional_db's teardown (its flush is a TRUNCATE); settings is restored
    # before that too, so a reconnection meanwhile is not guarded again.
    dbforwarding.uninstall(connection)


# --- tenants and API clients ------------------------------------------------------------


@pytest.fixture
def make_tenant(db) -> Callable:
    from controlplane import tenancy

    def make(name: str | None = None, scope: str = "write"):
        tenant = tenancy.create_tenant(name=name or f"tenant-{uuid.uuid4().hex[:8]}")
        issued = tenancy.issue_api_key(tenant=tenant, scope=scope)
        return tenant, issued.plaintext

    return make


@pytest.fixture
def api(make_tenant):
    """An API client authenticated as a fresh tenant with a write key."""
    from rest_framework.test import APIClient

    tenant, key = make_tenant()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.tenant = tenant
    client.key = key
    return client


def run_manage(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``manage.py`` in a child process (as an operator would)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


@contextlib.contextmanager
def scratch_table(prefix: str) -> Iterator[str]:
    """A fresh DynamoDB table keyed on ``pk`` (the key of all of Ferry's tables), deleted after."""
    from controlplane import aws

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ddb = aws.client("dynamodb")
    ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        yield name
    finally:
        ddb.delete_table(TableName=name)


@pytest.fixture
def config_table(moto):
    """A fresh config table per test (the emulator outlives each test's database)."""
    with scratch_table("ferry-config-test") as name, override_settings(FERRY_TABLE_CONFIG=name):
        yield name
