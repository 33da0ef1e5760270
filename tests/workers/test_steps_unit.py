"""Pure functions of the Step Functions orchestration: the definition file, step messages,
execution names and inputs, Wait timestamps (no services)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from controlplane import statemachine
from workers import orchestrator, steps

TOKEN = "t" * 200
ARN = "arn:aws:states:us-east-1:123456789012:execution:ferry-us-east-1-transfer:x-0"


def message(**overrides) -> str:
    body = {
        "step": "deliver",
        "transfer_id": str(uuid.uuid4()),
        "generation": 2,
        "task_token": TOKEN,
        "execution": ARN,
    }
    return json.dumps({**body, **overrides})


def test_the_definition_substitutes_only_the_step_queue_and_stays_json():
    assert statemachine.PLACEHOLDER in statemachine.template()
    text = statemachine.definition("http://127.0.0.1:5000/123456789012/ferry-us-east-1-steps")
    asl = json.loads(text)
    assert "${" not in text
    tasks = {name: s for name, s in asl["States"].items() if s["Type"] == "Task"}
    assert {t["Parameters"]["MessageBody"]["step"] for t in tasks.values()} == set(statemachine.STEPS)
    for task in tasks.values():
        assert task["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
        assert task["Parameters"]["QueueUrl"].endswith("/ferry-us-east-1-steps")
        assert task["HeartbeatSecondsPath"] == "$.heartbeat_seconds"
        retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
        # Ferry's own errors are never retried by the state machine: the database decides.
        assert "States.ALL" not in retried and "States.TaskFailed" not in retried
    assert asl["States"]["Dead"] == {"Type": "Fail", "ErrorPath": "$.step.error", "CausePath": "$.step.cause"}
    with pytest.raises(ValueError):
        statemachine.definition('http://x/"q')


def test_a_step_message_is_parsed_and_checked():
    parsed = steps.parse(message())
    assert (parsed.step, parsed.generation, parsed.task_token, parsed.execution) == ("deliver", 2, TOKEN, ARN)
    for bad in (
        "not json",
        "[]",
        message(step="format_disk"),
        message(task_token=""),
        message(task_token="t" * 1025),
        message(transfer_id="../etc"),
        message(generation=-1),
        message(generation=True),
        message(generation="1"),
        message(execution="x"),
    ):
        with pytest.raises(steps.InvalidStep):
            steps.parse(bad)


def test_execution_names_follow_aws_rules():
    transfer_id = uuid.uuid4()
    assert orchestrator.execution_name(transfer_id, 0) == f"{transfer_id}-0"
    assert len(orchestrator.execution_name(transfer_id, 4_294_967_295)) <= orchestrator.NAME_MAX
    for bad in ("has space", "x" * 80, "a*b"):
        with pytest.raises(ValueError):
            orchestrator.execution_name(bad, 1)


def test_the_execution_input_is_deterministic(settings):
    settings.FERRY_STEP_HEARTBEAT_SECONDS = 7
    one = orchestrator.execution_input("abc", 3)
    assert one == orchestrator.execution_input("abc", 3)
    assert json.loads(one) == {
        "transfer_id": "abc",
        "generation": 3,
        "heartbeat_seconds": 7,
        "timeout_seconds": settings.FERRY_STEP_TIMEOUT_SECONDS,
    }
    assert " " not in one


def test_the_execution_arn_follows_from_the_machine_and_name():
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:ferry-us-east-1-transfer"
    assert orchestrator.execution_arn_for(machine, "n-1") == (
        "arn:aws:states:us-east-1:123456789012:execution:ferry-us-east-1-transfer:n-1"
    )


def test_wait_timestamps_are_utc_whole_seconds_rounded_up():
    assert steps.timestamp(datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC)) == "2026-01-02T03:04:06Z"
    assert steps.timestamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert steps.timestamp(datetime(2026, 1, 2, 3, 4, 59, 999_999, tzinfo=UTC)) == "2026-01-02T03:05:00Z"


def test_heartbeats_come_three_times_per_timeout():
    assert steps.heartbeat_interval(60) == 20
    assert steps.heartbeat_interval(3) == 1
