"""The README's operator commands, run as the README shows them: in a shell that sourced
the stack's `.local/stack.env` and has nothing else of Ferry's."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from controlplane import emulator
from deploy.local.stack import command_env, write_stack_env
from tests.conftest import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def readme_commands(section: str) -> list[str]:
    """The `manage.py` lines of the first shell block under ``## section`` in README.md."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", body, re.S)
    assert block, f"no shell block under {section}"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if "manage.py" in line]


def shell(stack_env: Path, command: str) -> subprocess.CompletedProcess:
    # Only what a fresh login shell has: no FERRY_*, no AWS_* of the developer's.
    bare = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return subprocess.run(
        ["bash", "-c", f"source {stack_env} && {command}"],
        cwd=ROOT,
        env=bare,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_readmes_tenant_and_key_commands_work_after_sourcing_stack_env(moto, tmp_path):
    stack_like = {**moto.env(), "FERRY_PROFILE": "local", "DATABASE_URL": database_url(), "FERRY_REGIONS": "us-east-1"}
    stack_env = tmp_path / "stack.env"
    write_stack_env(stack_env, command_env(stack_like, "us-east-1"))
    commands = readme_commands("API in one minute")
    assert [c.split()[2] for c in commands] == ["create_tenant", "create_api_key", "revoke_api_key"]
    created = shell(stack_env, commands[0])
    assert created.returncode == 0, created.stderr
    issued = shell(stack_env, commands[1])
    assert issued.returncode == 0, issued.stderr
    prefix = issued.stdout.strip().splitlines()[-1].split("_")[1]
    revoked = shell(stack_env, commands[2].replace("<prefix>", prefix))
    assert revoked.returncode == 0, revoked.stderr
    status = shell(stack_env, ".venv/bin/python manage.py regions status")
    assert status.returncode == 0, status.stderr
    assert "us-east-1" in status.stdout


def test_without_stack_env_the_local_profile_refuses_to_start(tmp_path):
    empty = tmp_path / "empty.env"
    write_stack_env(empty, {"FERRY_PROFILE": "local"})
    refused = shell(empty, ".venv/bin/python manage.py regions status")
    assert refused.returncode == 1
    assert "AWS_ENDPOINT_URL is not set" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("environ", "refused"),
    [
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:8801"}, False),
        ({"AWS_ENDPOINT_URL": "http://localhost:8801"}, False),
        ({"AWS_ENDPOINT_URL": "http://[::1]:8801"}, False),
        ({}, True),
        ({"AWS_ENDPOINT_URL": "https://sqs.us-east-1.amazonaws.com"}, True),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": "https://s3.amazonaws.com"}, True),
        ({"AWS_ENDPOINT_URL": "https://sqs.us-east-1.amazonaws.com", "FERRY_ALLOW_REAL_AWS": "1"}, False),
        ({"FERRY_ALLOW_REAL_AWS": "1"}, False),
    ],
)
def test_the_emulator_rule(environ, refused):
    assert (emulator.refusal(environ, "local") is not None) is refused
