"""Calling DynamoDB tables that are MRSC global tables on AWS: which errors are transient.

On a multi-Region strong consistency table a write that races another Region's write to
the same item is rejected with ``ReplicatedWriteConflictException``: the write was not
applied, and AWS documents it as retryable. Throttling and 5xx answers are the same kind:
nothing was decided. :func:`retry_transient` retries such a call a few times with full
jitter, so one conflict costs milliseconds, not a transfer's attempt or a keeper's tick.
Every Ferry write to these tables is a conditional write that is safe to repeat (the
condition still holds for the same caller, or refuses it), so a retry never does twice
what once would not.

Botocore's standard and adaptive retry modes retry these codes too (with
``FERRY_AWS_MAX_ATTEMPTS``); this layer adds a few more tries with full jitter on top,
and covers a conflict that outlasted botocore's budget or that
``controlplane.awsguard`` injects per call, so Ferry's own code is proven to handle it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import ClientError

T = TypeVar("T")

TRANSIENT_CODES = frozenset(
    {
        "ReplicatedWriteConflictException",
        "TransactionConflictException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
CONDITION_FAILED = "ConditionalCheckFailedException"

# Four more tries, at most ~0.05 + 0.1 + 0.2 + 0.4 s: a conflict clears in milliseconds
# (the other Region's write finishes); longer trouble is an outage, left to the caller.
ATTEMPTS = 5
BASE_DELAY = 0.05
MAX_DELAY = 1.0


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_transient(exc: BaseException) -> bool:
    """A DynamoDB answer that decided nothing and may be retried."""
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
    return error_code(exc) in TRANSIENT_CODES or status >= 500


def is_condition_failed(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) == CONDITION_FAILED


def backoff(attempt: int, *, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """Full jitter: a uniform delay up to ``base * 2**attempt``, never above ``cap``."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def retry_transient(
    call: Callable[[], T], *, attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Run ``call``; on a transient DynamoDB error try again (``attempts`` in all), then re-raise.

    Condition failures and every other error go to the caller at once."""
    for attempt in range(attempts):
        try:
            return call()
        except ClientError as exc:
            if not is_transient(exc) or attempt == attempts - 1:
                raise
            sleep(backoff(attempt))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
