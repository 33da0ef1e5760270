"""The CLI against a real running API: pytest-django's ``live_server`` (the test database),
the moto server and the test sshd. Commands run in-process through typer's CliRunner, over
real HTTP to the live server; tests/cli/test_isolation.py also runs the installed script."""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from ferry_cli.app import app


def access_key() -> tuple[str, str]:
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    secret = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    return key_id, secret


@pytest.fixture
def cli_env(live_server, make_tenant, tmp_path) -> dict[str, str]:
    """Environment for a tenant's CLI: the live server's URL and a write key; a config
    path of its own (absent) so no real ~/.config is ever read."""
    tenant, key = make_tenant()
    return {
        "FERRY_API_URL": live_server.url,
        "FERRY_API_KEY": key,
        "FERRY_CONFIG": str(tmp_path / "ferry" / "config.toml"),
        "FERRY_TENANT_ID": str(tenant.id),
        "COLUMNS": "250",  # wide tables: cells are not cut in the assertions
    }


@pytest.fixture
def ferry(cli_env) -> Callable[..., Result]:
    """Run ``ferry <args>`` in-process; ``env`` adds or overrides variables (None unsets)."""

    def run(*args: str, input: str | None = None, env: dict[str, str | None] | None = None) -> Result:
        result = CliRunner().invoke(
            app, list(args), input=input, env={**cli_env, **(env or {})}, catch_exceptions=False
        )
        assert "Traceback" not in result.stdout + result.stderr
        return result

    return run


@pytest.fixture(scope="module")
def no_workers(django_db_blocker):
    """No keeper or Celery worker runs during the module's tests, so their transfers stay
    where the API put them (a live_server test commits: a worker would see and run them).
    The session's processes, if an earlier test started them, are stopped meanwhile."""
    from tests.conftest import session_processes_suspended

    with session_processes_suspended(django_db_blocker):
        yield


@pytest.fixture(scope="module")
def cli_stack(worker_env, logs_dir, django_db_blocker):
    """A keeper and a Celery worker of this region for one module, stopped after it.

    Not the session's ``stack``: that keeper would hold every partition for the rest of the
    run (tests/cli runs early), and later tests that create transfers without a keeper
    expect them to stay put (tests/controlplane/test_write_forwarding.py claims its own).
    The session's processes, if running, are stopped meanwhile and started again after."""
    from controlplane.resources import queues
    from tests.conftest import (
        KeeperProcess,
        Worker,
        _wait_for_single_region,
        session_processes_suspended,
        stop_processes,
    )

    q = queues()
    keeper = KeeperProcess(worker_env, logs_dir / "cli-keeper.log")
    worker = Worker(worker_env, logs_dir / "cli-worker.log", [q.transfers, q.control])
    with session_processes_suspended(django_db_blocker):
        keeper.start()
        try:
            worker.start()
            _wait_for_single_region()
            yield
        finally:
            stop_processes([worker, keeper])


def folder(sshd, name: str) -> Path:
    path = sshd.data_dir / name
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


@pytest.fixture
def sftp_endpoint(ferry, sshd) -> str:
    """An SFTP endpoint on the test sshd, added through the CLI with a pinned host key."""
    name = f"sftp-{uuid.uuid4().hex[:8]}"
    result = ferry(
        "endpoints", "add", "sftp", name,
        "--host", sshd.host, "--port", str(sshd.port), "--username", sshd.key_user,
        "--root", str(sshd.data_dir), "--host-key", sshd.pin, "--private-key-file", str(sshd.client_key),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return name


@pytest.fixture
def s3_endpoint(ferry, bucket) -> str:
    """An S3 endpoint on a fresh moto bucket, its secret key from the environment."""
    name = f"s3-{uuid.uuid4().hex[:8]}"
    key_id, secret = access_key()
    result = ferry(
        "endpoints", "add", "s3", name, "--bucket", bucket, "--region", "us-east-1", "--prefix", "in/",
        "--access-key-id", key_id, env={"FERRY_S3_SECRET_ACCESS_KEY": secret},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return name
