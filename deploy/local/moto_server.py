"""The moto server, refusing a few things moto accepts and AWS refuses.

1. **Object keys in S3's EventBridge events**, encoded as AWS sends them (below).
2. **Bucket ownership and cross-account access** (:func:`enforce_bucket_owners`): moto
   ignores ``ExpectedBucketOwner`` and lets any account read any other account's bucket.
   AWS answers 403 ``AccessDenied`` when the bucket's owner is not the expected one, and
   to a request from another account unless the bucket policy grants that account.
3. **Role trust policies** (:func:`enforce_trust_policies`): moto assumes any role with
   any external id (it checks trust policies only with IAM authentication on, for the
   whole server). AWS refuses an ``AssumeRole`` the role's trust policy does not allow,
   which is what makes an external id mean something.
4. **A request counter**, opt-in (``FERRY_MOTO_COUNT_REQUESTS=1``; :func:`count_requests`):
   the requests answered per service and operation, at ``GET /_ferry/requests`` (``DELETE``
   resets), so the benchmarks can count the AWS requests Ferry makes per file.
5. **SendMessage in constant time** (:func:`constant_time_sends`): not a refusal but a cost
   AWS does not have. moto reads every attribute of the queue for each message it accepts
   (to learn whether content-based deduplication is on), message counts included, and
   counting walks every message in the queue: a send took 10 ms at 200 queued messages and
   90 ms at 1,400. The ``scale`` benchmark queues 10,000; it would measure moto.

Only the emulator knows which account owns a bucket and what a role's trust policy says,
so these rules live here rather than in ``controlplane.awsguard`` (which sees only a
client's own parameters). Roles that do not exist in the emulator's IAM stay assumable,
as moto allows (tests that need no trust policy create no role).

**Event keys.**
AWS URL-encodes the object key in S3 events the way HTML forms do (a space as ``+``, a
``+`` as ``%2B``, non-ASCII as UTF-8 ``%XX``): the notification format says so, and
EventBridge "Object Created" events carry the key the same way (docs/events.md, "Object
keys"). moto encodes keys in notifications sent to SQS, SNS and Lambda, but puts the raw
key in EventBridge events. This wrapper encodes that key on the way in, so that Ferry's
consumer reads locally exactly what it reads on AWS and decodes every kind one way. The
local stack only: nothing here runs on AWS.

Run as a script (``python deploy/local/moto_server.py -H 127.0.0.1 -p 8801``); it takes
moto_server's arguments.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlparse

from moto.s3 import notifications
from moto.server import main


class _EncodedKey:
    """An S3 key object seen through its URL-encoded name; every other attribute as is."""

    def __init__(self, key: Any) -> None:
        self._key = key
        # As moto encodes notification keys (and S3 does: "/" as %2F, ":" as %3A).
        self.name = quote_plus(key.name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._key, attribute)


def encode_eventbridge_keys() -> None:
    """Patch moto's S3 → EventBridge sender to URL-encode the object key (idempotent)."""
    send = notifications._send_event_bridge_message
    if getattr(send, "ferry_encodes_keys", False):
        return

    def encoded(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        send(account_id, bucket, event_name, _EncodedKey(key))

    encoded.ferry_encodes_keys = True  # type: ignore[attr-defined]
    notifications._send_event_bridge_message = encoded


# --- bucket owners and cross-account access -------------------------------------------

_ACCESS_DENIED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Access Denied</Message><RequestId>{}</RequestId></Error>"
)


def _statements(document: Any) -> list[Mapping[str, Any]]:
    try:
        parsed = json.loads(document) if isinstance(document, (str, bytes)) else document
    except ValueError:
        return []
    if not isinstance(parsed, Mapping):
        return []
    statements = parsed.get("Statement") or []
    if isinstance(statements, Mapping):
        statements = [statements]
    return [s for s in statements if isinstance(s, Mapping)]


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]


def principal_names(statement: Mapping[str, Any], account: str) -> bool:
    """Whether the statement's ``Principal`` covers a caller of ``account``: ``*``, the
    account id, its root ARN, or an IAM/STS ARN in the account (a role principal is taken
    to cover the account's callers: the emulator does not track which role signed)."""
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    for entry in _listed(principal.get("AWS")):
        if entry in ("*", account) or re.match(rf"arn:[a-z-]+:(iam|sts)::{account}:", entry):
            return True
    return False


def conditions_hold(condition: Any, values: Mapping[str, str | None]) -> bool:
    """``StringEquals`` / ``StringLike`` on the keys in ``values`` (lower-case); any other
    operator or key is not understood here and does not hold (never grant more than AWS)."""
    if not condition:
        return True
    if not isinstance(condition, Mapping):
        return False
    for operator, tests in condition.items():
        if operator not in ("StringEquals", "StringLike") or not isinstance(tests, Mapping):
            return False
        for key, expected in tests.items():
            actual = values.get(str(key).lower())
            if actual is None:
                return False
            wanted = _listed(expected)
            if operator == "StringEquals" and actual not in wanted:
                return False
            if operator == "StringLike" and not any(fnmatch.fnmatchcase(actual, w) for w in wanted):
                return False
    return True


def _matches(patterns: Any, value: str, *, fold: bool = False) -> bool:
    if fold:
        return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in _listed(patterns))
    return any(fnmatch.fnmatchcase(value, p) for p in _listed(patterns))


def policy_allows(document: Any, *, action: str, resource: str, account: str) -> bool:
    """A bucket policy's answer for a caller of another account: an explicit Deny wins, an
    Allow without conditions grants; nothing else does."""
    allowed = False
    for statement in _statements(document):
        if not principal_names(statement, account):
            continue
        if not _matches(statement.get("Action"), action, fold=True):
            continue
        if not _matches(statement.get("Resource"), resource):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow" and not statement.get("Condition"):
            allowed = True
    return allowed


_KEY_ACTIONS = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject", "POST": "s3:PutObject"}


def s3_action(method: str, *, key: str | None, query: Mapping[str, Any]) -> str:
    """The IAM action of an S3 request, as precisely as cross-account grants need it."""
    if key:
        if method == "DELETE":
            return "s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject"
        return _KEY_ACTIONS.get(method, f"s3:{method.title()}Object")
    if method in ("GET", "HEAD") and not set(query) - {
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "marker",
        "continuation-token",
        "start-after",
        "encoding-type",
        "fetch-owner",
    }:
        return "s3:ListBucket"
    if "uploads" in query:
        return "s3:ListBucketMultipartUploads"
    return f"s3:{method.title()}BucketConfiguration"  # only a policy granting s3:* covers these


def bucket_refusal(
    *, bucket: str, key: str | None, method: str, query: Mapping[str, Any], headers: Mapping[str, str], caller: str
) -> str | None:
    """Why AWS would answer 403 to this request, or None (the bucket's owner and policy
    come from moto's own S3 state)."""
    from moto.s3.models import s3_backends

    owner = s3_backends.bucket_accounts.get(bucket)
    if owner is None:
        return None  # no such bucket: moto answers NoSuchBucket (or creates it) itself
    partition, account = owner
    expected = headers.get("x-amz-expected-bucket-owner")
    if expected is not None and expected != account:
        return f"expected bucket owner {expected}, owner is {account}"
    if caller == account:
        return None
    found = s3_backends[account][partition].buckets.get(bucket)
    policy = getattr(found, "policy", None)
    action = s3_action(method, key=key, query=query)
    resource = f"arn:{partition}:s3:::{bucket}" + (f"/{key}" if key else "")
    if policy_allows(policy, action=action, resource=resource, account=caller):
        return None
    return f"{caller} is not {account} and the bucket policy does not grant it {action}"


def _denied(reason: str) -> tuple[int, dict[str, str], bytes]:
    request_id = uuid.uuid4().hex
    headers = {"x-amz-request-id": request_id, "content-type": "application/xml", "x-ferry-refusal": reason[:200]}
    return 403, headers, _ACCESS_DENIED.format(request_id).encode()


def _guarded(original: Callable[..., Any], *, key_level: bool) -> Callable[..., Any]:
    def guarded(self: Any, request: Any, full_url: str) -> Any:
        bucket = self.parse_bucket_name_from_url(request, full_url)
        if bucket:
            key = (self.parse_key_name() or None) if key_level else None
            query = parse_qs(urlparse(full_url).query, keep_blank_values=True)
            reason = bucket_refusal(
                bucket=bucket,
                key=key,
                method=request.method,
                query=query,
                headers={k.lower(): v for k, v in request.headers.items()},
                caller=self.current_account,
            )
            if reason is not None:
                return _denied(reason)
        return original(self, request, full_url)

    guarded.ferry_guarded = True  # type: ignore[attr-defined]
    return guarded


def enforce_bucket_owners() -> None:
    """Patch moto's S3 responses to refuse what AWS refuses on ownership (idempotent)."""
    from moto.s3.responses import S3Response

    if getattr(S3Response._key_response, "ferry_guarded", False):
        return
    S3Response._bucket_response = _guarded(S3Response._bucket_response, key_level=False)  # type: ignore[method-assign]
    S3Response._key_response = _guarded(S3Response._key_response, key_level=True)  # type: ignore[method-assign]


# --- role trust policies -------------------------------------------------------------------


def trust_allows(document: Any, *, account: str, external_id: str | None) -> bool:
    """A role's trust policy lets a caller of ``account`` assume it with ``external_id``."""
    allowed = False
    values = {"sts:externalid": external_id}
    for statement in _statements(document):
        if not principal_names(statement, account) or not _matches(
            statement.get("Action"), "sts:AssumeRole", fold=True
        ):
            continue
        if not conditions_hold(statement.get("Condition"), values):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def enforce_trust_policies() -> None:
    """Patch moto's STS AssumeRole to honour the role's trust policy (idempotent)."""
    from moto.iam.models import iam_backends
    from moto.sts.exceptions import STSClientError
    from moto.sts.models import STSBackend

    original = STSBackend.assume_role
    if getattr(original, "ferry_guarded", False):
        return

    def assume_role(self: Any, **kwargs: Any) -> Any:
        role_arn = str(kwargs.get("role_arn") or "")
        match = re.match(r"arn:([a-z-]+):iam::(\d{12}):role/", role_arn)
        if match:
            role = next((r for r in iam_backends[match[2]][match[1]].get_roles() if r.arn == role_arn), None)
            if role is not None and not trust_allows(
                role.assume_role_policy_document, account=self.account_id, external_id=kwargs.get("external_id")
            ):
                raise STSClientError(
                    "AccessDenied",
                    f"User in account {self.account_id} is not authorized to perform: sts:AssumeRole on "
                    f"resource: {role_arn} (the role's trust policy, enforced by deploy/local/moto_server.py)",
                )
        return original(self, **kwargs)

    assume_role.ferry_guarded = True  # type: ignore[attr-defined]
    STSBackend.assume_role = assume_role  # type: ignore[method-assign]


def constant_time_sends() -> None:
    """While moto accepts a message, the queue's message counts read 0 (SendMessage never
    uses them: it reads the queue's attributes for its deduplication setting only)."""
    import threading

    from moto.sqs.models import Queue, SQSBackend

    if getattr(SQSBackend.send_message, "ferry_guarded", False):
        return
    sending = threading.local()
    original = SQSBackend.send_message

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        sending.active = True
        try:
            return original(self, *args, **kwargs)
        finally:
            sending.active = False

    for name in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        counted = getattr(Queue, name)

        def count(self: Any, _counted: Any = counted) -> int:
            return 0 if getattr(sending, "active", False) else _counted.fget(self)

        setattr(Queue, name, property(count))
    send_message.ferry_guarded = True  # type: ignore[attr-defined]
    SQSBackend.send_message = send_message  # type: ignore[method-assign]


# --- request counter (opt-in: FERRY_MOTO_COUNT_REQUESTS=1) ---------------------------------
#
# The benchmarks count the AWS requests Ferry makes per file (issue 14: "≤ 5 AWS requests per
# file"). The server counts what it answers, per service and operation, and serves the
# counts at ``GET /_ferry/requests`` (``DELETE`` resets them). No S3 bucket name can start
# with "_", so the path never shadows a path-style S3 request. Off unless asked for.

COUNT_ENV = "FERRY_MOTO_COUNT_REQUESTS"
COUNTER_PATH = "/_ferry/requests"

_BUCKET_LISTS = {"list-type", "prefix", "delimiter", "max-keys", "marker", "continuation-token", "start-after"}
_BUCKET_LISTS |= {"encoding-type", "fetch-owner"}
_SUBRESOURCE_NAMES = {
    "acl": "Acl",
    "cors": "Cors",
    "encryption": "Encryption",
    "lifecycle": "LifecycleConfiguration",
    "location": "Location",
    "logging": "Logging",
    "notification": "NotificationConfiguration",
    "object-lock": "ObjectLockConfiguration",
    "ownershipControls": "OwnershipControls",
    "policy": "Policy",
    "publicAccessBlock": "PublicAccessBlock",
    "replication": "Replication",
    "tagging": "Tagging",
    "versioning": "Versioning",
    "website": "Website",
}


def s3_operation(method: str, *, key: bool, query: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """The S3 API operation of a REST request (as CloudTrail names it), from its method,
    whether it names a key, its query and its (lower-case) headers."""
    copy = "x-amz-copy-source" in headers
    if key:
        if "uploadId" in query:
            return {
                "PUT": "UploadPartCopy" if copy else "UploadPart",
                "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload",
                "GET": "ListParts",
            }.get(method, f"{method}MultipartUpload")
        if "uploads" in query and method == "POST":
            return "CreateMultipartUpload"
        for sub, name in (
            ("tagging", "Tagging"),
            ("acl", "Acl"),
            ("retention", "Retention"),
            ("attributes", "Attributes"),
        ):
            if sub in query:
                verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method.title())
                return f"{verb}Object{name}"
        return {
            "GET": "GetObject",
            "HEAD": "HeadObject",
            "PUT": "CopyObject" if copy else "PutObject",
            "DELETE": "DeleteObject",
        }.get(method, f"{method}Object")
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if "uploads" in query and method == "GET":
        return "ListMultipartUploads"
    if "versions" in query and method == "GET":
        return "ListObjectVersions"
    for sub, name in _SUBRESOURCE_NAMES.items():
        if sub in query:
            verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method.title())
            return f"{verb}Bucket{name}"
    if method == "GET":
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, f"{method}Bucket")


def _credential_service(environ: Mapping[str, Any], query: Mapping[str, list[str]]) -> str | None:
    """The service a SigV4 request was signed for (header or presigned URL)."""
    auth = environ.get("HTTP_AUTHORIZATION") or ""
    credential = ""
    if "Credential=" in auth:
        credential = auth.split("Credential=", 1)[1].split(",", 1)[0]
    elif query.get("X-Amz-Credential"):
        credential = query["X-Amz-Credential"][0]
    parts = credential.split("/")
    return parts[3].lower() if len(parts) >= 5 else None


def _form_action(environ: dict[str, Any]) -> str | None:
    """``Action=`` of a query-protocol request's form body; the body is put back for moto."""
    if not str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not length:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    actions = parse_qs(body.decode("utf-8", "replace")).get("Action")
    return actions[0] if actions else None


def classify(environ: dict[str, Any]) -> tuple[str, str]:
    """``(service, operation)`` of one request to the emulator, e.g. ``("s3", "PutObject")``,
    ``("sqs", "ReceiveMessage")``, ``("dynamodb", "PutItem")``. Unsigned requests (moto
    talking to itself) are service ``"unsigned"``."""
    path = environ.get("PATH_INFO", "") or "/"
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    service = _credential_service(environ, query) or "unsigned"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:  # JSON protocols: "DynamoDB_20120810.PutItem", "AmazonSQS.ReceiveMessage"
        return service, target.rsplit(".", 1)[-1]
    action = (query.get("Action") or [None])[0] or _form_action(environ)
    if action:  # query protocol: STS, and SQS from older clients
        return service, action
    if service == "s3":
        segments = [s for s in path.split("/") if s]
        host = str(environ.get("HTTP_HOST", "")).split(":")[0]
        virtual = bool(re.match(r"^[^.]+\.s3[.-]", host))  # bucket.s3.region.amazonaws.com
        if not segments and not virtual:
            return service, "ListBuckets"
        has_key = len(segments) >= (1 if virtual else 2)
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        return service, s3_operation(environ.get("REQUEST_METHOD", "GET"), key=has_key, query=query, headers=headers)
    return service, f"{environ.get('REQUEST_METHOD', 'GET')} {path.split('?')[0][:40]}"


class RequestCounter:
    """Requests answered, per ``"service:Operation"`` (thread-safe: the server is threaded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, service: str, operation: str) -> None:
        with self._lock:
            self._counts[f"{service}:{operation}"] += 1

    def snapshot(self, *, reset: bool = False) -> dict[str, Any]:
        """``{"total": n, "services": {"s3": n, …}, "operations": {"s3:PutObject": n, …}}``;
        with ``reset``, the counts start again from zero."""
        with self._lock:
            operations = dict(sorted(self._counts.items()))
            if reset:
                self._counts.clear()
        services: Counter[str] = Counter()
        for name, n in operations.items():
            services[name.split(":", 1)[0]] += n
        return {"total": sum(operations.values()), "services": dict(sorted(services.items())), "operations": operations}


def counting(app: Callable[..., Any], counter: RequestCounter) -> Callable[..., Any]:
    """A WSGI middleware around moto's dispatcher: counts each request, answers the counter's
    own path. moto's dashboard and API (``/moto-api``) are not AWS requests and not counted."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == COUNTER_PATH:
            # DELETE answers the counts as they were and zeroes them (one step: none lost).
            counts = counter.snapshot(reset=environ.get("REQUEST_METHOD") == "DELETE")
            body = json.dumps(counts).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if not path.startswith("/moto-api"):
            counter.add(*classify(environ))
        return app(environ, start_response)

    return wsgi


def count_requests() -> None:
    """Make ``moto.server.main`` serve its dispatcher behind :func:`counting` (idempotent)."""
    import moto.server

    dispatcher = moto.server.DomainDispatcherApplication
    if getattr(dispatcher, "ferry_counted", False):
        return
    counter = RequestCounter()

    class Counted(dispatcher):  # type: ignore[misc, valid-type]
        ferry_counted = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._counted = counting(super().__call__, counter)

        def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
            return self._counted(environ, start_response)

    moto.server.DomainDispatcherApplication = Counted  # type: ignore[misc]


if __name__ == "__main__":
    encode_eventbridge_keys()
    constant_time_sends()
    enforce_bucket_owners()
    enforce_trust_policies()
    if os.environ.get(COUNT_ENV) == "1":
        count_requests()
    sys.argv[0] = "moto_server"
    main()
