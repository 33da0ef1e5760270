"""Faults the AWS guard injects into DynamoDB calls: what an MRSC table raises under
concurrent writes from two regions (``ReplicatedWriteConflictException``), throttling.

:func:`inject` arms a fault for a block (tests, in process); ``FERRY_FAULT_DYNAMODB`` arms
one for a whole spawned process. See :mod:`controlplane.awsguard` for how the answers
reach the client.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import uuid
import zlib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse

from controlplane.awsguard.rules import Refusal, table_names

FAULT_ENV = "FERRY_FAULT_DYNAMODB"


@cache
def _dynamodb_model() -> Any:
    return botocore.session.get_session().get_service_model("dynamodb")


def modeled_errors(operation: str) -> set[str]:
    """The error codes botocore's DynamoDB model lists for ``operation``."""
    return {shape.error_code for shape in _dynamodb_model().operation_model(operation).error_shapes}


@dataclass(eq=False)
class Fault:
    """An armed fault; ``seen`` counts the matching calls (or attempts), ``raised`` the errors."""

    code: str
    operations: frozenset[str]
    tables: frozenset[str] | None
    times: int | None
    every: int | None
    probability: float | None
    per: str
    status: int
    seen: int = 0
    raised: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def _fires(self, operation: str, tables: set[str]) -> bool:
        if operation not in self.operations or (self.tables is not None and not tables & self.tables):
            return False
        if self.times is not None and self.raised >= self.times:
            return False
        self.seen += 1
        if self.every is not None and self.seen % self.every:
            return False
        if self.probability is not None and self.rng.random() >= self.probability:
            return False
        self.raised += 1
        return True

    def refusal(self) -> Refusal:
        return Refusal(self.code, f"Injected by Ferry's AWS guard: {self.code} ({self.per})", status=self.status)


_faults_lock = threading.Lock()
_faults: list[Fault] = []


def arm(
    code: str,
    *,
    operations: Collection[str] | None = None,
    tables: Collection[str] | None = None,
    times: int | None = None,
    every: int | None = None,
    probability: float | None = None,
    per: str = "attempt",
    status: int | None = None,
    seed: int | None = None,
) -> Fault:
    """Make guarded DynamoDB clients of this process answer ``code``; see :func:`inject`."""
    if per not in {"attempt", "call"}:
        raise ValueError(f"per is 'attempt' or 'call', not {per!r}")
    model = _dynamodb_model()
    if operations is None:
        operations = [op for op in model.operation_names if code in modeled_errors(op)]
        if not operations:
            raise ValueError(f"no DynamoDB operation answers {code} (botocore's model)")
    for operation in operations:
        if code not in modeled_errors(operation):
            raise ValueError(
                f"AWS never answers {operation} with {code}; botocore's model lists {sorted(modeled_errors(operation))}"
            )
    fault = Fault(
        code=code,
        operations=frozenset(operations),
        tables=frozenset(tables) if tables is not None else None,
        times=times,
        every=every,
        probability=probability,
        per=per,
        status=status or (500 if code == "InternalServerError" else 400),
        rng=random.Random(seed),
    )
    with _faults_lock:
        _faults.append(fault)
    return fault


def disarm(fault: Fault) -> None:
    with _faults_lock:
        if fault in _faults:
            _faults.remove(fault)


@contextmanager
def inject(
    code: str,
    *,
    operations: Collection[str] | None = None,
    tables: Collection[str] | None = None,
    times: int | None = None,
    every: int | None = None,
    probability: float | None = None,
    per: str = "attempt",
    status: int | None = None,
    seed: int | None = None,
) -> Iterator[Fault]:
    """Within the block, guarded DynamoDB clients of this process (every thread) answer ``code``.

    A call fires when it is one of ``operations`` (default: every operation whose modeled
    errors include ``code``; naming one whose model does not is a ValueError, since AWS would
    never send it) on one of ``tables`` (default: any), and every condition given holds: at
    most ``times`` errors, only every ``every``-th matching call, with ``probability``.
    ``per="attempt"`` (default) fails HTTP attempts, which botocore retries as on AWS;
    ``per="call"`` fails the call as a whole. The status is 400 (500 for InternalServerError),
    as DynamoDB sends them. Yields the :class:`Fault`, whose counters tests may assert."""
    fault = arm(
        code,
        operations=operations,
        tables=tables,
        times=times,
        every=every,
        probability=probability,
        per=per,
        status=status,
        seed=seed,
    )
    try:
        yield fault
    finally:
        disarm(fault)


def fire(operation: str, tables: set[str], per: str) -> Refusal | None:
    with _faults_lock:
        for fault in _faults:
            if fault.per == per and fault._fires(operation, tables):
                return fault.refusal()
    return None


_ENV_FAULT = re.compile(r"(?P<code>[A-Za-z]+)(?::(?P<p>[0-9.]+))?(?::(?P<per>attempt|call))?(?:@(?P<tables>[\w.+-]+))?")


def parse_fault_env(value: str) -> list[dict[str, Any]]:
    """``FERRY_FAULT_DYNAMODB``: comma-separated ``CODE[:PROBABILITY][:attempt|call][@TABLE+TABLE]``,
    e.g. ``ReplicatedWriteConflictException:0.2`` or ``ThrottlingException:0.1:call@ferry-leases``."""
    faults = []
    for entry in filter(None, (part.strip() for part in value.split(","))):
        match = _ENV_FAULT.fullmatch(entry)
        if not match:
            raise ValueError(f"{FAULT_ENV}: cannot read {entry!r}")
        kwargs: dict[str, Any] = {"code": match["code"], "per": match["per"] or "attempt"}
        if match["p"] is not None:
            kwargs["probability"] = float(match["p"])
        if match["tables"]:
            kwargs["tables"] = match["tables"].split("+")
        faults.append(kwargs)
    return faults


_env_loaded = False


def arm_from_env() -> None:
    global _env_loaded
    with _faults_lock:
        if _env_loaded:
            return
        _env_loaded = True
    for kwargs in parse_fault_env(os.environ.get(FAULT_ENV, "")):
        arm(kwargs.pop("code"), **kwargs)


class Body:
    """The raw body of an answer made here, as botocore reads a urllib3 response."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        if self._data:
            yield self._data

    def read(self, *args: Any) -> bytes:
        return self._data


def send_fault(request: Any, event_name: str, **kwargs: Any) -> AWSResponse | None:
    operation = event_name.rpartition(".")[2]
    body = request.body or b"{}"
    try:
        params = json.loads(body.decode() if isinstance(body, bytes) else body)
    except ValueError:
        return None
    refusal = fire(operation, table_names(operation, params), "attempt")
    if refusal is None:
        return None
    payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{refusal.code}", "message": refusal.message})
    data = payload.encode()
    headers = {
        "x-amzn-RequestId": uuid.uuid4().hex,
        "Content-Type": "application/x-amz-json-1.0",
        "Content-Length": str(len(data)),
        "x-amz-crc32": str(zlib.crc32(data)),
    }
    return AWSResponse(request.url, refusal.status, headers, Body(data))
