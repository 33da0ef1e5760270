"""The state transitions a transfer costs, measured on real executions of the repository's
definition in the emulator (the test plays the workers: it answers each step with what
``workers.steps.decide`` would), and held equal to the cost table of docs/orchestration.md.

Step Functions bills every state entered (Task, Choice, Wait, Succeed, Fail): the count of
``*StateEntered`` events in an execution's history.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controlplane import aws
from tests.deploy.tools import AWS_DIR

ASL = AWS_DIR / "statemachine" / "transfer.asl.json"
DOC = Path(__file__).resolve().parents[2] / "docs" / "orchestration.md"
PAST = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

# Each path: the answers to its Task states, in order (intake's first).
PATHS: dict[str, list[dict[str, Any]]] = {
    "plain": [{"next": "deliver"}, {"next": "done"}],
    "staged": [{"next": "stage"}, {"next": "deliver"}, {"next": "done"}],
    "source action": [{"next": "deliver"}, {"next": "source_action"}, {"next": "done"}],
    "one retry": [{"next": "deliver"}, {"next": "wait", "wait_until": PAST}, {"next": "deliver"}, {"next": "done"}],
    "dead": [
        {"next": "deliver"},
        {"next": "dead", "error": "authentication_failed", "cause": "The server refused the key."},
    ],
}
# docs/orchestration.md's cost table: row label → (measured path, relative to "plain"?).
DOC_ROWS = {
    "SFTP to S3 (not staged)": ("plain", False),
    "S3 to SFTP (not staged)": ("plain", False),
    "SFTP to SFTP (staged)": ("staged", False),
    "Any of them with a source action (delete or move)": ("source action", True),
    "One database retry (transient failure, backoff)": ("one retry", True),
}


def _execute_state_machines(url: str) -> None:
    # The emulator's global switch (a no-op when the local stack turned it on already).
    request = urllib.request.Request(
        f"{url}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=5).read()


@pytest.fixture(scope="module")
def transitions(moto) -> dict[str, tuple[int, dict[str, Any]]]:
    """Path → (states entered, DescribeExecution) of one execution per path, run at once."""
    _execute_state_machines(moto.url)
    sqs, sfn = aws.client("sqs"), aws.client("stepfunctions")
    name = f"ferry-cost-{uuid.uuid4().hex[:8]}"
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    definition = ASL.read_text().replace("${StepQueueUrl}", queue)
    machine = sfn.create_state_machine(
        name=name, definition=definition, roleArn=f"arn:aws:iam::123456789012:role/{name}"
    )["stateMachineArn"]
    try:
        pending = {}
        for path, answers in PATHS.items():
            document = {
                "transfer_id": str(uuid.uuid4()),
                "generation": 0,
                "heartbeat_seconds": 60,
                "timeout_seconds": 600,
            }
            arn = sfn.start_execution(stateMachineArn=machine, name=path.replace(" ", "-"), input=json.dumps(document))[
                "executionArn"
            ]
            pending[arn] = (path, list(answers))
        deadline = time.monotonic() + 60
        while any(answers for _, answers in pending.values()):
            assert time.monotonic() < deadline, f"steps not sent: {pending}"
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            ):
                body = json.loads(message["Body"])
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                _, answers = pending[body["execution"]]
                sfn.send_task_success(taskToken=body["task_token"], output=json.dumps(answers.pop(0)))
        measured = {}
        for arn, (path, _) in pending.items():
            while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
                assert time.monotonic() < deadline, f"{path} did not end"
                time.sleep(0.05)
            events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            measured[path] = (sum(e["type"].endswith("StateEntered") for e in events), described)
        return measured
    finally:
        sfn.delete_state_machine(stateMachineArn=machine)
        sqs.delete_queue(QueueUrl=queue)


def test_transitions_per_path(transitions):
    assert {path: count for path, (count, _) in transitions.items()} == {
        "plain": 5,
        "staged": 7,
        "source action": 7,
        "one retry": 10,
        "dead": 5,
    }
    assert {path: d["status"] for path, (_, d) in transitions.items()} == {
        "plain": "SUCCEEDED",
        "staged": "SUCCEEDED",
        "source action": "SUCCEEDED",
        "one retry": "SUCCEEDED",
        "dead": "FAILED",
    }


def test_a_dead_transfer_fails_its_execution_with_ferrys_error(transitions):
    _, described = transitions["dead"]
    assert (described.get("error"), described.get("cause")) == ("authentication_failed", "The server refused the key.")


def test_the_documented_cost_table_is_what_executions_cost(transitions):
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in DOC_ROWS:
            rows[cells[0]] = cells[2]
    assert set(rows) == set(DOC_ROWS), f"docs/orchestration.md's cost table lacks {set(DOC_ROWS) - set(rows)}"
    plain = transitions["plain"][0]
    for label, (path, relative) in DOC_ROWS.items():
        count = transitions[path][0]
        expected = f"+{count - plain}" if relative else str(count)
        assert re.match(rf"{re.escape(expected)}\b", rows[label]), (
            f"{label}: the doc says {rows[label]}, measured {expected}"
        )
