"""Step Functions' steps, run by the region's workers (the callback pattern).

Each Task state of the transfer state machine (deploy/aws/statemachine/transfer.asl.json)
sends one JSON message to the region's step queue — ``{step, transfer_id, generation,
task_token, execution}`` — and waits for its task token. ``manage.py run_steps`` reads the
queue and hands each message to :func:`handle`, which runs the step with the same runner
code as the Celery task (workers/runner.py) and answers:

- ``SendTaskSuccess`` with the next step, decided from the database (:func:`decide`):
  ``{"next": "stage" | "deliver" | "source_action" | "done"}``,
  ``{"next": "wait", "wait_until": <UTC, whole seconds>}`` (a retry's backoff, a breaker,
  a connection slot, a claim still live), or ``{"next": "dead", "error": <Ferry's error
  code>, "cause": <its message>}``, which the state machine's Fail state turns into the
  execution's error and cause;
- ``SendTaskFailure`` with ``not_our_partition`` (the lease is another region's, or this
  region drains: the holder's keeper starts its own execution) or ``superseded`` (a re-drive
  or a later start made a newer execution of this transfer). The execution fails there.

While a step runs, a heartbeat thread sends ``SendTaskHeartbeat``; a worker that dies
stops it, the Task times out (``HeartbeatSeconds``) and the state machine's ``Retry``
sends the step again. The database's claim keeps the copy from running twice: a step that
finds the claim live answers ``wait`` until it expires, and the step after it decides again.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from controlplane import logs
from controlplane.statemachine import STEPS
from transfers import lifecycle
from transfers.models import Transfer
from transfers.states import State
from workers import context, runner

log = logging.getLogger("ferry.steps")

# AWS: a task token is at most 1024 characters (docs/aws-constraints.md).
TASK_TOKEN_MAX = 1024
NOT_OUR_PARTITION = "not_our_partition"
SUPERSEDED = "superseded"
MISSING = "not_found"
# A claim seen live is waited out with this much to spare (clock steps, the UPDATE's time).
_CLAIM_SLACK = timedelta(seconds=1)
# A lease that is free or lapsed (not another region's): the step waits this long and decides again.
LEASE_LAPSE_WAIT = timedelta(seconds=2)


class InvalidStep(ValueError):
    """A message on the step queue that is not a step of Ferry's state machine."""


@dataclass(frozen=True)
class StepMessage:
    step: str
    transfer_id: str
    generation: int
    task_token: str
    execution: str


def parse(body: str) -> StepMessage:
    """Read and check one step message; raises :class:`InvalidStep`."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise InvalidStep("not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidStep("not a JSON object")
    step = document.get("step")
    if step not in STEPS:
        raise InvalidStep(f"unknown step {step!r}")
    token = document.get("task_token")
    if not isinstance(token, str) or not 1 <= len(token) <= TASK_TOKEN_MAX:
        raise InvalidStep("no task token")
    try:
        transfer_id = str(uuid.UUID(str(document.get("transfer_id"))))
    except ValueError as exc:
        raise InvalidStep("transfer_id is not a UUID") from exc
    generation = document.get("generation")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise InvalidStep("generation is not a counter")
    execution = document.get("execution")
    if not isinstance(execution, str) or not execution.startswith("arn:"):
        raise InvalidStep("execution is not an ARN")
    return StepMessage(step, transfer_id, generation, token, execution)


class StepFailed(Exception):
    """The step ends the execution (SendTaskFailure with ``error``)."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


def timestamp(moment: datetime) -> str:
    """A Wait state's timestamp: UTC, RFC 3339, rounded UP to the whole second (Step
    Functions waits to the second; rounding down would come back before the time)."""
    utc = moment.astimezone(UTC)
    whole = utc.replace(microsecond=0) + timedelta(seconds=math.ceil(utc.microsecond / 1_000_000))
    return whole.strftime("%Y-%m-%dT%H:%M:%SZ")


def decide(transfer_id: str, generation: int, *, now: datetime | None = None) -> dict[str, Any]:
    """The next step of a transfer's execution of ``generation``, from the database alone.
    Raises :class:`StepFailed` when the execution must end without the transfer ending."""
    now = now or timezone.now()
    transfer = Transfer.objects.select_related("source_endpoint", "destination_endpoint").filter(id=transfer_id).first()
    if transfer is None:
        return {"next": "dead", "error": MISSING, "cause": "The transfer no longer exists."}
    if generation < transfer.execution_generation:
        raise StepFailed(SUPERSEDED, f"execution generation {transfer.execution_generation} replaced {generation}")
    state = State(transfer.state)
    if state == State.SUCCEEDED:
        if transfer.source_action_state == Transfer.SourceAction.PENDING:
            return {"next": "source_action"}
        return {"next": "done"}  # a failed source action is retried by the scheduler tick
    if state == State.DEAD:
        return {
            "next": "dead",
            "error": transfer.last_error_code or "dead",
            "cause": transfer.last_error_message or "The transfer is dead.",
        }
    if state in (State.CANCELLED, State.SKIPPED):
        return {"next": "done"}
    if not context.region_takes_work():
        raise StepFailed(NOT_OUR_PARTITION, "this region drains or failed over: the next holder runs it")
    if context.region_lease(transfer.partition) is None:
        lease = context.lease_table().get(transfer.partition)
        if lease is not None and lease.owner_region != settings.FERRY_REGION and lease.live(now.timestamp()):
            raise StepFailed(NOT_OUR_PARTITION, f"partition {transfer.partition} is held by {lease.owner_region}")
        # Free, or ours but not renewed in time (a slow keeper): not another region's yet.
        # Ending the execution would cost a new one for a moment's lapse; look again shortly.
        return {"next": "wait", "wait_until": timestamp(now + LEASE_LAPSE_WAIT)}
    if transfer.claim_expires_at is not None and transfer.claim_expires_at > now:
        return {"next": "wait", "wait_until": timestamp(transfer.claim_expires_at + _CLAIM_SLACK)}
    if transfer.next_attempt_at is not None and transfer.next_attempt_at > now:
        return {"next": "wait", "wait_until": timestamp(transfer.next_attempt_at)}
    if runner.needs_staging(transfer) and not transfer.staging_key:
        return {"next": "stage"}
    return {"next": "deliver"}


def run(message: StepMessage) -> tuple[str, dict[str, Any]]:
    """Run one step; (the runner's word for it, the next step)."""
    outcome = "decided"
    if message.step in ("stage", "deliver"):
        # Checked before the copy too: a superseded execution must not run a step.
        decide(message.transfer_id, message.generation)
        outcome = runner.run_transfer(message.transfer_id, mode=message.step)
    elif message.step == "source_action":
        transfer = Transfer.objects.select_related("source_endpoint").filter(id=message.transfer_id).first()
        pending = Transfer.SourceAction.PENDING
        if transfer is not None and transfer.state == State.SUCCEEDED and transfer.source_action_state == pending:
            outcome = "source_action_done" if runner.run_source_action(transfer) else "source_action_failed"
    # The runner's guard refused (lease or region): decide says whether that ends the execution.
    return outcome, decide(message.transfer_id, message.generation)


class _TaskHeartbeat:
    """Sends SendTaskHeartbeat every ``interval`` seconds while a step runs."""

    def __init__(self, send: Callable[[], None], interval: float) -> None:
        self._send = send
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._run,), name="step-heartbeat", daemon=True
        )

    def __enter__(self) -> _TaskHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._send()
            except ClientError as exc:
                if exc.response["Error"]["Code"] in DEAD_TOKEN_ERRORS:
                    # Timed out (a pause longer than HeartbeatSeconds): the Retry runs it again
                    # elsewhere; this copy finishes or loses its claim, and its report is refused.
                    log.warning("task timed out while its step ran", extra={"error": exc.response["Error"]["Code"]})
                    return
                log.warning("task heartbeat failed", exc_info=True)
            except Exception:
                # The task timed out already (its retry runs elsewhere) or the API hiccuped.
                log.warning("task heartbeat failed", exc_info=True)


def heartbeat_interval(heartbeat_seconds: int) -> float:
    """Three heartbeats per HeartbeatSeconds: one lost call does not time the task out."""
    return max(0.2, heartbeat_seconds / 3)


def handle(body: str, *, sfn: Any, heartbeat_seconds: int) -> str:
    """Run the step a message asks for and report to Step Functions; returns a word for
    logs and tests. Never raises for the step's own outcome."""
    try:
        message = parse(body)
    except InvalidStep as exc:
        log.warning("not a step message; dropped", extra={"reason": str(exc)})
        return "invalid"
    close_old_connections()
    with logs.bound(transfer=message.transfer_id, step=message.step, execution=message.execution):
        if not _still_waited_for(sfn, message):
            # It waited in the queue past HeartbeatSeconds: the Task timed out and its Retry
            # sent a newer message (or the execution ended). Running it would only race that one.
            log.info("stale step message (its task is no longer waiting); dropped")
            return "stale"
        attempt_state = _timeline(message, "started")
        try:
            with _TaskHeartbeat(
                lambda: sfn.send_task_heartbeat(taskToken=message.task_token),
                heartbeat_interval(heartbeat_seconds),
            ):
                outcome, following = run(message)
        except StepFailed as exc:
            _timeline(message, "ended the execution", detail=exc.error, known=attempt_state)
            sfn.send_task_failure(taskToken=message.task_token, error=exc.error, cause=exc.cause[:32768])
            log.info("step ended the execution", extra={"error": exc.error})
            return exc.error
        except Exception:
            # Not answered: the task times out and the state machine's Retry sends it again.
            log.exception("step failed unexpectedly; Step Functions sends it again")
            return "error"
        finally:
            connection.close()
        close_old_connections()
        _timeline(message, "finished", detail=f"{outcome}, next {following['next']}", known=attempt_state)
        try:
            sfn.send_task_success(taskToken=message.task_token, output=json.dumps(following))
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in DEAD_TOKEN_ERRORS:
                raise
            # Timed out meanwhile: the step sent again decides from the database, as this one did.
            log.info("step finished after its task timed out; the retry decides", extra={"outcome": outcome})
            return "timed_out"
        log.info("step finished", extra={"outcome": outcome, "next": following["next"]})
        return following["next"]


# What Step Functions answers for a token whose task no longer waits.
DEAD_TOKEN_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


def _still_waited_for(sfn: Any, message: StepMessage) -> bool:
    """One heartbeat before any work: False when the token is dead. Any other error is the
    API's, not the token's: run the step (its report tells)."""
    try:
        sfn.send_task_heartbeat(taskToken=message.task_token)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in DEAD_TOKEN_ERRORS:
            return False
        log.warning("task heartbeat failed before the step; running it anyway", exc_info=True)
    return True


def _timeline(
    message: StepMessage, phase: str, *, detail: str = "", known: tuple[str, int] | None = None
) -> tuple[str, int] | None:
    """Write the step's line in the transfer's timeline (skipped for a missing transfer)."""
    row = Transfer.objects.filter(id=message.transfer_id).values_list("state", "attempt").first()
    if row is None:
        return known
    lifecycle.record_step(
        message.transfer_id,
        step=message.step,
        phase=phase,
        execution=message.execution,
        state=row[0],
        attempt=row[1],
        detail=detail,
    )
    return row
