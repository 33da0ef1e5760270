"""Who coordinates a transfer's steps: the seam between dispatch and the orchestrator.

``FERRY_ORCHESTRATOR=celery``: a transfer is a Celery task on the region's transfer queue
(workers/dispatch.py, as it always was). ``stepfunctions``: a transfer is an AWS Step
Functions execution of the region's state machine (deploy/aws/statemachine/transfer.asl.json),
whose Task states the region's step consumer runs (workers/steps.py, ``manage.py run_steps``).

:func:`start` is idempotent, so every path that dispatches (right after the commit, the
hand-off sweep, the keeper's safety net) may call it again for the same transfer:

- the execution's name is ``<transfer id>-<generation>`` and its input is a pure function of
  the transfer and the settings, so a start while that execution runs returns the same
  execution (Step Functions' own idempotency for a RUNNING execution with the same name
  and input). Ferry checks the returned ARN is the one that name gives;
- a name taken by a CLOSED execution (``ExecutionAlreadyExists``: it ended in
  ``HandedOver`` on ``not_our_partition`` before a restore, or timed out) makes the generation grow by one
  compare-and-set UPDATE, and the start is made again under the new name. A Standard
  execution name cannot be reused for 90 days, so the counter never goes back.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable
from functools import cache

from botocore.exceptions import ClientError
from django.conf import settings

from controlplane import aws
from controlplane.bootstrap import state_machine_arn
from transfers.models import Transfer
from transfers.states import TERMINAL

log = logging.getLogger(__name__)

# AWS: an execution name is 1-80 characters of letters, digits, "-" and "_" (no spaces,
# wildcards, brackets or control characters), and an execution's input is at most 256 KiB
# (docs/aws-constraints.md). The emulator checks neither.
NAME_MAX = 80
_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
INPUT_MAX_BYTES = 256 * 1024
_STARTS_PER_TRANSFER = 5


class OrchestratorError(RuntimeError):
    """An execution could not be started or was not the one expected."""


def enabled() -> bool:
    """Whether transfers run as Step Functions executions (FERRY_ORCHESTRATOR)."""
    return settings.FERRY_ORCHESTRATOR == "stepfunctions"


def execution_name(transfer_id: uuid.UUID | str, generation: int) -> str:
    """``<transfer id>-<generation>``; refused when AWS would refuse it."""
    name = f"{transfer_id}-{int(generation)}"
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a valid execution name: {name!r}")
    return name


def execution_input(transfer_id: uuid.UUID | str, generation: int) -> str:
    """The execution's input: deterministic (sorted keys, no spaces), so a second start of
    the same name is recognised as the same execution. The step timers travel in it
    (``HeartbeatSecondsPath`` / ``TimeoutSecondsPath``), so one definition serves every
    profile."""
    document = {
        "transfer_id": str(transfer_id),
        "generation": int(generation),
        "heartbeat_seconds": settings.FERRY_STEP_HEARTBEAT_SECONDS,
        "timeout_seconds": settings.FERRY_STEP_TIMEOUT_SECONDS,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > INPUT_MAX_BYTES:
        raise ValueError("execution input over 256 KiB")
    return text


def execution_arn_for(machine_arn: str, name: str) -> str:
    """The ARN Step Functions gives the execution ``name`` of ``machine_arn``."""
    return f"{machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


@cache
def _machine_arn(region: str) -> str:
    arn = state_machine_arn(region)
    if arn is None:
        raise OrchestratorError(f"no state machine for region {region}")
    return arn


def client():
    return aws.client("stepfunctions")


def start(transfer_ids: Iterable[str], *, region: str | None = None) -> int:
    """Start (or find running) one execution per transfer in ``region``'s state machine and
    record its ARN on the row; returns how many are running. Finished transfers are
    skipped. A transfer whose start fails is logged and left to the keeper's next sweep."""
    region = region or settings.FERRY_REGION
    ids = [str(i) for i in transfer_ids]
    if not ids:
        return 0
    machine = _machine_arn(region)
    rows = (
        Transfer.objects.filter(id__in=ids)
        .exclude(state__in=sorted(TERMINAL))
        .values_list("id", "execution_generation")
    )
    started = 0
    for transfer_id, generation in rows:
        try:
            start_one(str(transfer_id), generation, machine=machine)
            started += 1
        except Exception:
            log.warning("starting the execution failed; the keeper tries again", exc_info=True)
    return started


def start_one(transfer_id: str, generation: int, *, machine: str) -> str:
    """Start the transfer's execution of ``generation`` (or the next free one); its ARN."""
    sfn = client()
    for _ in range(_STARTS_PER_TRANSFER):
        name = execution_name(transfer_id, generation)
        expected = execution_arn_for(machine, name)
        try:
            answer = sfn.start_execution(
                stateMachineArn=machine, name=name, input=execution_input(transfer_id, generation)
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            # Closed under this name (or, never in Ferry, running with another input): the
            # next name. Compare-and-set: a concurrent start that bumped it first wins.
            Transfer.objects.filter(id=transfer_id, execution_generation=generation).update(
                execution_generation=generation + 1
            )
            generation = Transfer.objects.values_list("execution_generation", flat=True).get(id=transfer_id)
            continue
        arn = answer["executionArn"]
        if arn != expected:
            raise OrchestratorError(f"StartExecution answered {arn}, not {expected}")
        Transfer.objects.filter(id=transfer_id, execution_generation=generation).exclude(execution_arn=arn).update(
            execution_arn=arn
        )
        return arn
    raise OrchestratorError(f"no free execution name for transfer {transfer_id}")


def stop(arn: str, cause: str) -> None:
    """Stop an execution (a cancel, or a re-drive superseding it); one already closed is fine."""
    try:
        client().stop_execution(executionArn=arn, error="ferry.stopped", cause=cause[:32768])
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in {"ExecutionDoesNotExist", "ExecutionNotRunning"}:
            raise


def stop_if_enabled(arn: str, cause: str) -> None:
    """The hook ``transfers.services`` calls after a cancel or re-drive commits."""
    if enabled():
        stop(arn, cause)
