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

import contextvars
import dataclasses
import fnmatch
import json
import os
import random
import re
import threading
import uuid
import weakref
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse

FAULT_ENV = "FERRY_FAULT_DYNAMODB"
MRSC_REFUSED = frozenset({"TransactWriteItems", "TransactGetItems", "ExecuteTransaction", "UpdateTimeToLive"})
SECRET_READS = frozenset({"GetSecretValue", "BatchGetSecretValue"})
_CONTEXT_KEY = "ferry_awsguard_refusal"
_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:.+")


def _no_region(name: str) -> str | None:
    return None


@dataclass(frozen=True)
class Policy:
    """What this process may touch.

    ``region`` is the simulated region it serves (``FERRY_REGION``); ``queue_region`` and
    ``bucket_region`` name the region a Ferry queue or staging bucket belongs to (None for
    anything else, such as a customer's bucket); ``allow`` holds ``service:Operation:resource``
    patterns (fnmatch) of cross-region calls the deployment makes on purpose, for example
    ``sqs:SendMessage:ferry-us-west-2-transfers``.
    """

    region: str
    mrsc_tables: frozenset[str] = frozenset()
    queue_region: Callable[[str], str | None] = _no_region
    bucket_region: Callable[[str], str | None] = _no_region
    allow: tuple[str, ...] = ()

    def allows(self, service: str, operation: str, resource: str) -> bool:
        call = f"{service}:{operation}:{resource}"
        return any(fnmatch.fnmatchcase(call, pattern) for pattern in self.allow)


@dataclass(frozen=True)
class Refusal:
    """An error answer: the code, message and HTTP status AWS would send."""

    code: str
    message: str
    status: int = 400
    error_extra: Mapping[str, str] = field(default_factory=dict)


# --- acting for another region ----------------------------------------------------------

_acting: contextvars.ContextVar[str | None] = contextvars.ContextVar("ferry_awsguard_acting", default=None)


@contextmanager
def acting_as(region: str) -> Iterator[None]:
    """Within the block, this thread is a process of ``region``.

    For what stands in for both regions at once: ``bootstrap_aws`` (CloudFormation creates
    each region's resources in that region) and tests that drive both regions."""
    token = _acting.set(region)
    try:
        yield
    finally:
        _acting.reset(token)


def effective(policy: Policy) -> Policy:
    """``policy`` with the region :func:`acting_as` set, if any."""
    acting = _acting.get()
    return dataclasses.replace(policy, region=acting) if acting and acting != policy.region else policy


# --- the rules ----------------------------------------------------------------------------


def table_names(operation: str, params: Mapping[str, Any]) -> set[str]:
    """The DynamoDB tables a call's parameters name (PartiQL statements aside)."""
    names: set[str] = set()
    if isinstance(params.get("TableName"), str):
        names.add(params["TableName"])
    names.update(params.get("RequestItems") or {})  # BatchGetItem, BatchWriteItem
    for item in params.get("TransactItems") or []:
        for action in item.values():
            if isinstance(action, Mapping) and isinstance(action.get("TableName"), str):
                names.add(action["TableName"])
    return names


def _mrsc(operation: str, params: Mapping[str, Any], policy: Policy) -> Refusal | None:
    if operation not in MRSC_REFUSED:
        return None
    named = table_names(operation, params) & policy.mrsc_tables
    for statement in params.get("TransactStatements") or []:  # ExecuteTransaction (PartiQL)
        text = str(statement.get("Statement", ""))
        named |= {t for t in policy.mrsc_tables if re.search(rf"(?<![\w.-]){re.escape(t)}(?![\w.-])", text)}
    if not named:
        return None
    feature = "Time to Live" if operation == "UpdateTimeToLive" else "transactions"
    # AWS documents that these fail on an MRSC table, not with which code: ValidationException
    # is DynamoDB's answer to a request it refuses as unsupported for the table.
    return Refusal(
        "ValidationException",
        f"{operation}: multi-Region strong consistency (MRSC) global tables do not support {feature} "
        f"({', '.join(sorted(named))}; deploy/aws/global.yaml, MultiRegionConsistency: STRONG)",
    )


def _foreign(policy: Policy, service: str, operation: str, name: str, owner: str | None) -> bool:
    return owner is not None and owner != policy.region and not policy.allows(service, operation, name)


def _why(kind: str, name: str, owner: str, policy: Policy, service: str, operation: str) -> str:
    return (
        f"{name} is {owner}'s {kind} and this process serves {policy.region}: on AWS its clients and "
        f"task role reach only its own region's (Ferry's AWS guard; a deliberate cross-region call is "
        f"allowed by FERRY_AWS_GUARD_ALLOW={service}:{operation}:{name})"
    )


def check_queue(policy: Policy, operation: str, name: str) -> Refusal | None:
    """Refuse touching another region's Ferry queue: on AWS the region's SQS endpoint does
    not know it (the SDK takes the region from the client, not from the queue URL)."""
    owner = policy.queue_region(name)
    if not _foreign(policy, "sqs", operation, name, owner):
        return None
    return Refusal(
        "AWS.SimpleQueueService.NonExistentQueue",
        f"The specified queue does not exist. ({_why('queue', name, str(owner), policy, 'sqs', operation)})",
        error_extra={"QueryErrorCode": "QueueDoesNotExist", "Type": "Sender"},
    )


def _queue(operation: str, params: Mapping[str, Any], policy: Policy) -> Refusal | None:
    name = params.get("QueueName") or str(params.get("QueueUrl") or "").rstrip("/").rpartition("/")[2]
    return check_queue(policy, operation, name) if name else None


def _copy_source_bucket(source: Any) -> str | None:
    if isinstance(source, Mapping):
        return source.get("Bucket")
    if isinstance(source, str):
        return source.lstrip("/").partition("/")[0] or None
    return None


def _bucket(operation: str, params: Mapping[str, Any], policy: Policy) -> Refusal | None:
    # Bucket names are global and botocore follows S3's region redirect by itself, so what
    # stops a call to the other region's staging bucket on AWS is the task role
    # (region.yaml grants only the region's own staging bucket): 403 AccessDenied.
    for name in (params.get("Bucket"), _copy_source_bucket(params.get("CopySource"))):
        if not name:
            continue
        owner = policy.bucket_region(name)
        if _foreign(policy, "s3", operation, name, owner):
            why = _why("staging bucket", name, str(owner), policy, "s3", operation)
            if operation.startswith("Head"):  # no body: botocore names the error by its status
                return Refusal("403", f"Forbidden ({why})", status=403)
            return Refusal("AccessDenied", f"Access Denied ({why})", status=403)
    return None


def _secret(operation: str, params: Mapping[str, Any], policy: Policy) -> Refusal | None:
    # A read goes to this region's copy: by name (a replica has the primary's name) or by
    # the ARN of this region's copy (a replica's ARN is the primary's with its own region).
    # An ARN naming another region is refused, as AWS does at this region's endpoint (and
    # the worker role may read only its own region's secrets). Writes are not guarded: they
    # go to the primary's region on purpose (a replica refuses them, which moto enforces by
    # itself since it keeps a Secrets Manager per region, as AWS does).
    if operation not in SECRET_READS:
        return None
    for secret_id in [params.get("SecretId"), *(params.get("SecretIdList") or [])]:
        match = _ARN.fullmatch(str(secret_id or ""))
        if match and _foreign(policy, "secretsmanager", operation, str(secret_id), match["region"]):
            why = (
                f"the ARN names {match['region']} and this process serves {policy.region}: read "
                f"this region's copy, by name or by its own ARN (Ferry's AWS guard)"
            )
            return Refusal("ResourceNotFoundException", f"Secrets Manager can't find the specified secret. ({why})")
    return None


_RULES: dict[str, Callable[[str, Mapping[str, Any], Policy], Refusal | None]] = {
    "dynamodb": _mrsc,
    "sqs": _queue,
    "s3": _bucket,
    "secretsmanager": _secret,
}


def judge(service: str, operation: str, params: Mapping[str, Any], policy: Policy) -> Refusal | None:
    """What AWS would answer instead of doing the call, or None when AWS would do it.

    ``service`` is botocore's service name (``dynamodb``, ``sqs``, ``s3``, ``secretsmanager``)."""
    rule = _RULES.get(service)
    return rule(operation, params, policy) if rule else None


# --- faults -------------------------------------------------------------------------------


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


def _fire(operation: str, tables: set[str], per: str) -> Refusal | None:
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


def _arm_from_env() -> None:
    global _env_loaded
    with _faults_lock:
        if _env_loaded:
            return
        _env_loaded = True
    for kwargs in parse_fault_env(os.environ.get(FAULT_ENV, "")):
        arm(kwargs.pop("code"), **kwargs)


# --- wiring into clients ------------------------------------------------------------------


class _Body:
    """The raw body of an answer made here, as botocore reads a urllib3 response."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        if self._data:
            yield self._data

    def read(self, *args: Any) -> bytes:
        return self._data


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
    return AWSResponse(client.meta.endpoint_url, refusal.status, headers, _Body(b"")), parsed


def _send_fault(request: Any, event_name: str, **kwargs: Any) -> AWSResponse | None:
    operation = event_name.rpartition(".")[2]
    body = request.body or b"{}"
    try:
        params = json.loads(body.decode() if isinstance(body, bytes) else body)
    except ValueError:
        return None
    refusal = _fire(operation, table_names(operation, params), "attempt")
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
    return AWSResponse(request.url, refusal.status, headers, _Body(data))


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
            refusal = _fire(model.name, table_names(model.name, params), "call")
        if refusal is not None:
            context[_CONTEXT_KEY] = refusal

    def answer(context: dict[str, Any], **kwargs: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        refusal = context.pop(_CONTEXT_KEY, None)
        return _answer(client, refusal) if refusal is not None else None

    events.register(f"before-parameter-build.{service_id}", decide, unique_id="ferry-awsguard-decide")
    events.register(f"before-call.{service_id}", answer, unique_id="ferry-awsguard-answer")
    if service == "dynamodb":
        _arm_from_env()
        events.register(f"before-send.{service_id}", _send_fault, unique_id="ferry-awsguard-fault")
    _guarded.add(client)
    return client


def guarded(client: Any) -> bool:
    """Whether :func:`install` guarded ``client``."""
    return client in _guarded
