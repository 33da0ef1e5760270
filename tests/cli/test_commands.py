"""Every command against the live test server (no worker: transfers stay pending here;
tests/cli/test_worker_end_to_end.py runs them with a real Celery worker)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.cli.conftest import access_key, folder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("moto", "no_workers")]


def as_json(result) -> object:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# --- endpoints ----------------------------------------------------------------------------


def test_scan_then_add_sftp_confirming_the_scanned_host_keys(ferry, sshd):
    scanned = as_json(ferry("endpoints", "scan", sshd.host, "--port", str(sshd.port), "--json"))
    assert sshd.pin in scanned["host_keys"]
    human = ferry("endpoints", "scan", sshd.host, "-p", str(sshd.port))
    assert sshd.pin in human.stdout

    base = ["endpoints", "add", "sftp", "--host", sshd.host, "--port", str(sshd.port), "--username", sshd.key_user,
            "--root", str(sshd.data_dir), "--private-key-file", str(sshd.client_key)]  # fmt: skip
    refused = ferry(*base, "refused-keys", input="n\n")
    assert refused.exit_code == 1
    assert sshd.pin in refused.stderr  # shown before the question
    assert as_json(ferry("endpoints", "list", "--json")) == []  # nothing was created

    created = ferry(*base, "trusted-keys", "--json", input="y\n")
    assert created.exit_code == 0, created.stderr
    # CliRunner echoes the typed answer on stdout (a terminal would show it itself).
    endpoint = json.loads(created.stdout[created.stdout.index("{") :])
    assert set(endpoint["config"]["host_keys"]) == set(scanned["host_keys"])
    assert endpoint["credentials"]["kinds"] == ["private_key"]
    assert "BEGIN" not in created.stdout  # the key went to the secret store, not back out


def test_add_s3_asks_for_the_secret_hidden_when_not_in_the_environment(ferry, bucket):
    key_id, secret = access_key()
    result = ferry("endpoints", "add", "s3", "asked", "--bucket", bucket, "--region", "us-east-1",
                   "--access-key-id", key_id, input=f"{secret}\n", env={"FERRY_S3_SECRET_ACCESS_KEY": None})  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "Secret access key" in result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr  # hidden input is not echoed
    assert "asked" in result.stdout


def test_list_and_test_endpoints(ferry, sftp_endpoint, s3_endpoint):
    rows = as_json(ferry("endpoints", "list", "--json"))
    assert {r["name"] for r in rows} == {sftp_endpoint, s3_endpoint}
    assert [r["name"] for r in as_json(ferry("endpoints", "list", "--kind", "s3", "--json"))] == [s3_endpoint]
    table = ferry("endpoints", "list")
    assert sftp_endpoint in table.stdout and "s3://" in table.stdout

    checked = ferry("endpoints", "test", sftp_endpoint)
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    assert "write_probe" in checked.stdout and "FAILED" not in checked.stdout
    report = as_json(ferry("endpoints", "test", s3_endpoint, "--json"))
    assert report["ok"] is True


def test_a_failing_connection_test_exits_1(ferry, sshd):
    name = "wrong-pin"
    wrong_pin = "ssh-ed25519 SHA256:" + "A" * 43
    created = ferry("endpoints", "add", "sftp", name, "--host", sshd.host, "--port", str(sshd.port),
                    "--username", sshd.key_user, "--root", str(sshd.data_dir), "--host-key", wrong_pin,
                    "--private-key-file", str(sshd.client_key))  # fmt: skip
    assert created.exit_code == 0, created.stderr
    result = ferry("endpoints", "test", name)
    assert result.exit_code == 1
    assert "host_key" in result.stdout and "FAILED" in result.stdout


# --- routes and transfers -----------------------------------------------------------------


def test_route_create_run_list_and_the_transfer_it_made(ferry, sshd, sftp_endpoint, s3_endpoint):
    source = folder(sshd, f"cli-{uuid.uuid4().hex[:6]}")
    (source / "report.csv").write_text("id,amount\n1,2\n")
    created = as_json(ferry("routes", "create", "daily", "--from", f"{sftp_endpoint}:/{source.name}",
                            "--to", f"{s3_endpoint}:/inbound", "--pattern", "*.csv",
                            "-o", "min_age_seconds=0", "-o", "verify=reread", "--json"))  # fmt: skip
    assert created["trigger"]["type"] == "manual"
    assert created["options"]["verify"] == "reread" and created["options"]["min_age_seconds"] == 0
    listed = ferry("routes", "list")
    assert "daily" in listed.stdout and f"{sftp_endpoint}:/{source.name}/*.csv" in listed.stdout
    assert [r["id"] for r in as_json(ferry("routes", "list", "--json"))] == [created["id"]]

    # The first run without --force only records the file (stable_polls) and says why.
    first = ferry("routes", "run", "daily")
    assert first.exit_code == 0, first.stderr
    assert "No new transfers" in first.stdout and "Waiting: 1 file(s)" in first.stdout
    run = as_json(ferry("routes", "run", created["id"], "--force", "--json"))
    [transfer] = run["results"]
    assert transfer["source"]["path"] == f"/{source.name}/report.csv"

    rows = as_json(ferry("transfers", "list", "--json"))
    assert [t["id"] for t in rows] == [transfer["id"]]
    assert (
        as_json(ferry("transfers", "list", "--route", "daily", "--state", "pending,failed", "--json"))[0]["id"]
        == transfer["id"]
    )
    assert as_json(ferry("transfers", "list", "--state", "dead", "--json")) == []
    table = ferry("transfers", "list", "--path-prefix", f"/{source.name}")
    assert transfer["id"] in table.stdout and "pending" in table.stdout

    shown = ferry("transfers", "show", transfer["id"])
    assert shown.exit_code == 0, shown.stderr
    assert "Timeline" in shown.stdout and "created" in shown.stdout.lower()
    assert f"{sftp_endpoint}:/{source.name}/report.csv" in shown.stdout  # endpoint names, not ids
    detail = as_json(ferry("transfers", "show", transfer["id"], "--json"))
    assert detail["timeline"][0]["to_state"] == "pending"

    cancelled = ferry("transfers", "cancel", transfer["id"])
    assert cancelled.exit_code == 0, cancelled.stderr
    assert f"{transfer['id']}: cancelled" in cancelled.stdout

    # A re-drive of a cancelled transfer is refused: the API's error, cleanly, exit 1.
    refused = ferry("transfers", "redrive", transfer["id"])
    assert refused.exit_code == 1
    assert "invalid_state" in refused.stderr and "HTTP 409" in refused.stderr
    assert "request id: " in refused.stderr
    refused_json = ferry("transfers", "redrive", transfer["id"], "--json")
    assert refused_json.exit_code == 1 and refused_json.stdout == ""
    assert json.loads(refused_json.stderr)["error"]["code"] == "invalid_state"


def test_schedule_route_and_field_errors(ferry, sftp_endpoint, s3_endpoint):
    made = as_json(ferry("routes", "create", "every-5", "--from", f"{sftp_endpoint}:/out",
                         "--to", f"{s3_endpoint}:/in", "--cron", "*/5 * * * *", "--timezone", "Europe/Paris",
                         "--json"))  # fmt: skip
    assert made["trigger"]["type"] == "schedule" and made["trigger"]["next_run_at"]

    bad = ferry("routes", "create", "bad-cron", "--from", f"{sftp_endpoint}:/out", "--to", f"{s3_endpoint}:/in",
                "--cron", "not a cron")  # fmt: skip
    assert bad.exit_code == 1
    assert "validation_error" in bad.stderr and "trigger.cron" in bad.stderr

    unknown = ferry("routes", "create", "x", "--from", "no-such-endpoint:/out", "--to", f"{s3_endpoint}:/in")
    assert unknown.exit_code == 1 and "No endpoint named 'no-such-endpoint'" in unknown.stderr

    usage = ferry("routes", "create", "x", "--from", "missing-colon", "--to", f"{s3_endpoint}:/in")
    assert usage.exit_code == 2 and "ENDPOINT:PATH" in usage.stderr


def test_send_creates_one_adhoc_transfer_and_replays_its_idempotency_key(ferry, sftp_endpoint, s3_endpoint):
    args = ["send", "--from", f"{sftp_endpoint}:/outbound/a.csv", "--to", f"{s3_endpoint}:/inbound/"]
    result = ferry(*args)
    assert result.exit_code == 0, result.stderr
    transfer_id = result.stdout.strip()
    assert uuid.UUID(transfer_id)
    assert as_json(ferry("transfers", "show", transfer_id, "--json"))["destination"]["path"] == "/inbound/a.csv"

    first = as_json(ferry(*args, "--idempotency-key", "order-42", "-o", "max_attempts=2", "--json"))
    again = as_json(ferry(*args, "--idempotency-key", "order-42", "-o", "max_attempts=2", "--json"))
    assert first["id"] == again["id"] != transfer_id
    assert first["max_attempts"] == 2
    conflict = ferry(*args, "--idempotency-key", "order-42", "-o", "max_attempts=3")
    assert conflict.exit_code == 1 and "idempotency_conflict" in conflict.stderr


# --- keys, config and errors ----------------------------------------------------------------


def test_a_wrong_key_is_a_clean_error_with_exit_1(ferry):
    result = ferry("transfers", "list", env={"FERRY_API_KEY": "fy_nope_nope"})
    assert result.exit_code == 1
    assert "not_authenticated" in result.stderr and "HTTP 401" in result.stderr
    assert "request id: " in result.stderr
    assert result.stdout == ""


def test_another_tenants_transfer_is_not_found(ferry, make_tenant, sftp_endpoint, s3_endpoint):
    made = as_json(ferry("send", "--from", f"{sftp_endpoint}:/a.csv", "--to", f"{s3_endpoint}:/b.csv", "--json"))
    _, other_key = make_tenant()
    result = ferry("transfers", "show", made["id"], env={"FERRY_API_KEY": other_key})
    assert result.exit_code == 1 and "not_found" in result.stderr


def test_the_key_is_never_taken_from_the_command_line(ferry):
    result = ferry("--api-key", "fy_abc_def", "transfers", "list")
    assert result.exit_code == 2
    assert "never taken from the command line" in result.stderr
    for command in (["transfers", "list"], ["send"], ["endpoints", "list"], ["login"]):
        help_text = ferry(*command, "--help").stdout
        assert "--api-key" not in help_text and "--key" not in help_text


def test_unreachable_api_and_missing_key(ferry):
    down = ferry("endpoints", "list", env={"FERRY_API_URL": "http://127.0.0.1:9"})
    assert down.exit_code == 1 and "Cannot reach Ferry at http://127.0.0.1:9" in down.stderr
    no_key = ferry("endpoints", "list", env={"FERRY_API_KEY": None})
    assert no_key.exit_code == 1 and "ferry login" in no_key.stderr


def test_login_writes_a_private_config_that_later_commands_use(ferry, cli_env, live_server):
    path = cli_env["FERRY_CONFIG"]
    key = cli_env["FERRY_API_KEY"]
    result = ferry("login", input=f"{live_server.url}\n{key}\n", env={"FERRY_API_KEY": None, "FERRY_API_URL": None})
    assert result.exit_code == 0, result.stderr
    assert key not in result.stdout + result.stderr  # hidden prompt
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700

    whoami = ferry("whoami", "--json", env={"FERRY_API_KEY": None, "FERRY_API_URL": None})
    assert as_json(whoami)["id"] == cli_env["FERRY_TENANT_ID"]

    os.chmod(path, 0o644)  # readable by others: refused, as ssh refuses such a key
    refused = ferry("whoami", env={"FERRY_API_KEY": None, "FERRY_API_URL": None})
    assert refused.exit_code == 1 and "chmod 600" in refused.stderr

    wrong = ferry("login", "--url", live_server.url, input="fy_bad_key\n", env={"FERRY_API_KEY": None})
    assert wrong.exit_code == 1 and "not_authenticated" in wrong.stderr


def test_ctrl_c_stops_watching_not_the_transfer(ferry, cli_env, sftp_endpoint, s3_endpoint):
    # No worker here: the transfer stays pending, so the watch runs until interrupted.
    transfer_id = ferry("send", "--from", f"{sftp_endpoint}:/a.csv", "--to", f"{s3_endpoint}:/b/").stdout.strip()
    script = Path(sys.executable).parent / "ferry"
    watching = subprocess.Popen(
        [script, "transfers", "watch", transfer_id, "--interval", "0.2"],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    watching.send_signal(signal.SIGINT)
    _, stderr = watching.communicate(timeout=20)
    assert watching.returncode == 130, stderr
    assert f"Stopped watching; transfer {transfer_id} goes on" in stderr
    assert "Traceback" not in stderr
    assert "· → pending" in stderr  # the timeline so far was shown


def test_keys_rotate_prints_the_new_key_once_and_the_old_works_through_the_overlap(ferry, cli_env):
    old = cli_env["FERRY_API_KEY"]
    prefix = old.split("_")[1]
    listed = as_json(ferry("keys", "list", "--json"))
    assert [k["prefix"] for k in listed] == [prefix]
    rotated = ferry("keys", "rotate", prefix, "--overlap-hours", "2")
    assert rotated.exit_code == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert new.startswith("fry_") and new != old and "works until" in rotated.stderr
    for key in (old, new):  # both work during the overlap
        assert ferry("whoami", env={"FERRY_API_KEY": key}).exit_code == 0
    missing = ferry("keys", "rotate", "nosuchkey")
    assert missing.exit_code == 1 and "No active API key" in missing.stderr


def test_endpoints_ssh_key_issues_and_shows_the_public_key(ferry, sftp_endpoint):
    none_yet = ferry("endpoints", "ssh-key", sftp_endpoint)
    assert none_yet.exit_code == 1 and "not_found" in none_yet.stderr
    issued = ferry("endpoints", "ssh-key", sftp_endpoint, "--issue", "--overlap-hours", "1")
    assert issued.exit_code == 0, issued.stderr
    public = issued.stdout.strip()
    assert public.startswith("ssh-ed25519 ") and "PRIVATE" not in issued.stdout + issued.stderr
    assert "still offered until" in issued.stderr  # the key the endpoint had before
    shown = as_json(ferry("endpoints", "ssh-key", sftp_endpoint, "--json"))
    assert shown["public_key"] == public
