"""The local stack refuses what AWS refuses: botocore handlers on Ferry's own AWS clients.

Locally every simulated region talks to one moto server as one AWS region, and moto accepts
what AWS refuses. With the guard on (``FERRY_AWS_GUARD``: the local and test profiles), every
client that Ferry's factories build answers the way AWS would:

1. **MRSC tables.** ``TransactWriteItems``, ``TransactGetItems``, ``ExecuteTransaction`` and
   ``UpdateTimeToLive`` naming a multi-Region strong consistency table fail with
   ``ValidationException``: MRSC global tables support neither transactions nor TTL.
2. **Regional resources.** A process of simulated region A touching region B's Ferry queue
   (``AWS.SimpleQueueService.NonExistentQueue``) or staging bucket (``AccessDenied``), or
   reading a secret by an ARN that names B (``ResourceNotFoundException``), fails, unless the
   deployment allows that call (``Policy.allow``). Customers' buckets are never guarded.
3. **Faults.** :func:`inject` (tests, in process) and ``FERRY_FAULT_DYNAMODB`` (spawned
   processes) make DynamoDB answer ``ReplicatedWriteConflictException``, throttling, ...

How: a refusal is decided in ``before-parameter-build`` (where the call's own parameters
are) and answered in ``before-call``, which botocore lets return ``(http_response,
parsed)``: the client then raises its ClientError exactly as for a real answer (after-call
handlers included). Such an answer never reaches the HTTP layer, so botocore's retry
handler does not see it; that is faithful for refusals, which are all permanent errors that
AWS's SDKs do not retry either. Faults default to ``per="attempt"``: they are answered in
``before-send`` with the HTTP response DynamoDB would send, so botocore parses them and its
retry handler retries them as it would on AWS (``ReplicatedWriteConflictException`` is
modeled retryable, throttling engages the adaptive rate limiter). ``per="call"`` answers
in ``before-call`` instead: the call fails as a whole, as if every attempt had.

No Django here: the engine's client factory guards its clients too; the policy comes from
a provider that the caller passes to :func:`install`.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from botocore.awsrequest import AWSResponse

from controlplane.awsguard.faults import (
    FAULT_ENV,
    Body,
    Fault,
    arm,
    arm_from_env,
    disarm,
    fire,
    inject,
    parse_fault_env,
    send_fault,
)
from controlplane.awsguard.rules import (
    MRSC_REFUSED,
    SECRET_READS,
    Policy,
    Refusal,
    acting_as,
    check_queue,
    effective,
    judge,
    table_names,
)

__all__ = [
    "FAULT_ENV",
    "MRSC_REFUSED",
    "SECRET_READS",
    "Fault",
    "Policy",
    "Refusal",
    "acting_as",
    "arm",
    "check_queue",
    "disarm",
    "effective",
    "guarded",
    "inject",
    "install",
    "judge",
    "parse_fault_env",
    "table_names",
]

_CONTEXT_KEY = "ferry_awsguard_refusal"


def _answer(client: Any, refusal: Refusal) -> tuple[AWSResponse, dict[str, Any]]:
    request_id = uuid.uuid4().hex
    headers = {"x-amzn-requestid": request_id}
    parsed: dict[str, Any] = {
        "Error": {"Code": refusal.code, "Message": refusal.message, **refusal.error_extra},
        "ResponseMetadata": {
            "RequestId": request_id,
            "HTTPStatusCode": refusal.status,
            "HTTPHeaders": headers,
            "RetryAttempts": 0,
        },
    }
    # A modeled error carries its message as a member too (DynamoDB's "message").
    shape = client.meta.service_model.shape_for_error_code(refusal.code)
    for member in ("message", "Message"):
        if shape is not None and member in shape.members:
            parsed[member] = refusal.message
    return AWSResponse(client.meta.endpoint_url, refusal.status, headers, Body(b"")), parsed


_guarded: weakref.WeakSet[Any] = weakref.WeakSet()


def install(client: Any, policy: Callable[[], Policy]) -> Any:
    """Guard ``client``: refuse what AWS refuses under ``policy()`` (read at every call, so
    settings overridden in a test apply to cached clients) and answer armed faults.
    Installing twice is harmless. Returns the client."""
    service = client.meta.service_model.service_name
    service_id = client.meta.service_model.service_id.hyphenize()
    events = client.meta.events

    def decide(params: Mapping[str, Any], model: Any, context: dict[str, Any], **kwargs: Any) -> None:
        refusal = judge(service, model.name, params, effective(policy()))
        if refusal is None and service == "dynamodb":
            refusal = fire(model.name, table_names(model.name, params), "call")
        if refusal is not None:
            context[_CONTEXT_KEY] = refusal

    def answer(context: dict[str, Any], **kwargs: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        refusal = context.pop(_CONTEXT_KEY, None)
        return _answer(client, refusal) if refusal is not None else None

    events.register(f"before-parameter-build.{service_id}", decide, unique_id="ferry-awsguard-decide")
    events.register(f"before-call.{service_id}", answer, unique_id="ferry-awsguard-answer")
    if service == "dynamodb":
        arm_from_env()
        events.register(f"before-send.{service_id}", send_fault, unique_id="ferry-awsguard-fault")
    _guarded.add(client)
    return client


def guarded(client: Any) -> bool:
    """Whether :func:`install` guarded ``client``."""
    return client in _guarded
