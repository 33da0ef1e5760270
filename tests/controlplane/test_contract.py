"""The API keeps the contract its OpenAPI schema states (issue 19).

schemathesis generates requests from the schema the server serves (``/api/schema/``) and
sends them over HTTP to pytest-django's live server: real sockets, headers, content
lengths and the whole middleware stack, as a client meets them (the WSGI transport would
skip the server and its framing). Every response must be a non-5xx answer whose status is
documented for the operation, whose content type is the documented one and whose body and
headers match the documented schema. The only 5xx allowed are the documented 502/503 of an
upstream failure (``POST /routes/{id}/run`` when the source cannot be listed).

Each operation is exercised as:

- the owner (tenant A's write key) with ids of A's real objects, valid and invalid input;
- the owner with generated ids (not found);
- tenant B's write key with A's ids: must be 404, and A's objects stay;
- a read-only key (writes are 403) and no key (401).

Bounded in time: few examples per operation, no shrinking (``FERRY_CONTRACT_EXAMPLES``
raises the count for a deeper run by hand). Rate limits: the test profile's are 100,000 a
minute, which this test never reaches (tests/controlplane/test_rate_limits.py tests them).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controlplane import oauth, tenancy
from tests.endpoints.conftest import s3_body, sftp_body

pytestmark = [pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("FERRY_CONTRACT_EXAMPLES", "6"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Host-key scans connect to whatever host and port the request names: generated ones would
# make the test wait on arbitrary connections. It runs against the test sshd instead (below).
GENERATED_EXCLUDED = {"POST /api/v1/host-keys/scan"}


@dataclass
class Run:
    """What the test found, across operations: reported together at the end."""

    base_url: str
    failures: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    statuses: dict[str, set[int]] = field(default_factory=dict)

    def fail(self, where: str, message: str) -> None:
        # One entry per operation and kind of failure (schemathesis titles start with "- ").
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        titles = [line for line in lines if line.startswith("- ")]
        kind = " ".join(titles[:1] + lines[lines.index(titles[0]) + 1 : lines.index(titles[0]) + 2]) if titles else ""
        self.failures.setdefault(f"{where}: {kind or lines[0][:60]}", message[:3000])


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _call(run: Run, case, headers: dict[str, str], where: str, expect: Callable[[int], bool] | None = None) -> int:
    run.calls += 1
    try:
        response = case.call(base_url=run.base_url, headers=headers, timeout=60)
    except requests.RequestException as exc:
        run.fail(where, f"no response: {exc}")
        return 0
    run.statuses.setdefault(case.operation.label, set()).add(response.status_code)
    checks = CHECKS
    if response.status_code in (502, 503) and str(response.status_code) in case.operation.definition.raw["responses"]:
        # A documented upstream failure (a route run whose source refuses the login that a
        # generated PATCH changed), not a server error: the other checks still apply.
        checks = [check for check in CHECKS if check is not not_a_server_error]
    try:
        case.validate_response(response, checks=checks, headers=headers)
    except FailureGroup as exc:
        run.fail(where, str(exc))
    if expect is not None and not expect(response.status_code):
        run.fail(where, f"unexpected status {response.status_code}\n{response.text[:300]}")
    return response.status_code


def explore(
    run: Run,
    operation,
    *,
    label: str,
    key: str | None,
    mode: GenerationMode = GenerationMode.POSITIVE,
    path_parameters: dict[str, str] | None = None,
    examples: int = EXAMPLES,
    expect: Callable[[int], bool] | None = None,
    also: tuple[str, Callable[[int], bool]] | None = None,
) -> None:
    """Send ``examples`` generated requests of ``operation`` and check each response.

    ``also``: a second key that sends the same request first (tenant B with A's ids) and
    the statuses it must get."""
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # no shrinking: every failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case) -> None:
        where = f"{operation.label} [{label}, {mode.value}]"
        if also is not None:
            _call(run, case, bearer(also[0]), f"{where} as another tenant", also[1])
        _call(run, case, bearer(key), where, expect)

    check()


def _create(base_url: str, key: str, path: str, body: dict, headers: dict | None = None) -> dict:
    response = requests.post(
        f"{base_url}/api/v1/{path}", json=body, headers={**bearer(key), **(headers or {})}, timeout=60
    )
    assert response.status_code == 201, response.text
    return response.json()


def happy_path(
    sshd, bucket: str, sftp: dict, s3: dict, rotatable: str, subscription: str
) -> list[tuple[str, str, dict, Any, dict, int]]:
    """Valid requests for the writes: (method, path, path parameters, body, headers, status)."""
    tag = uuid.uuid4().hex[:6]
    new_sftp = sftp_body(sshd, name=f"sftp-{tag}")
    new_s3 = s3_body(bucket, name=f"s3-{tag}", sse="AES256")
    route = {
        "name": f"route-{tag}",
        "source": {"endpoint": sftp["id"], "path": "/contract", "pattern": "*.txt"},
        "destination": {"endpoint": s3["id"], "path": "/out", "name": "{stem}-{date}{ext}"},
        "trigger": {"type": "schedule", "cron": "*/5 * * * *", "timezone": "Europe/Paris"},
        "options": {"after_delivery": {"move_to": "/done"}, "on_conflict": "overwrite", "verify": "reread"},
    }
    adhoc = {
        "source": {"endpoint": sftp["id"], "path": "/contract/a.txt"},
        "destination": {"endpoint": s3["id"], "path": f"/adhoc/{tag}.txt"},
        "options": {"max_attempts": 2},
    }
    idempotency = {"Idempotency-Key": f"contract-{tag}"}
    ep = {"endpoint_id": sftp["id"]}
    sub = {"subscription_id": subscription}
    return [
        ("POST", "/api/v1/api-keys", {}, {"scope": "read", "label": "contract"}, {}, 201),
        ("POST", "/api/v1/api-keys/{key_id}/rotate", {"key_id": rotatable}, {"overlap_hours": 1}, {}, 201),
        ("POST", "/api/v1/oauth-clients", {}, {"scope": "read", "label": "contract"}, {}, 201),
        ("GET", "/api/v1/oauth-clients", {}, None, {}, 200),
        ("POST", "/api/v1/endpoints", {}, new_sftp, {}, 201),
        ("POST", "/api/v1/endpoints", {}, new_s3, {}, 201),
        ("GET", "/api/v1/endpoints", {}, None, {}, 200),
        ("PATCH", "/api/v1/endpoints/{endpoint_id}", ep, {"name": f"renamed-{tag}"}, {}, 200),
        ("PATCH", "/api/v1/endpoints/{endpoint_id}", {"endpoint_id": s3["id"]}, {"config": {"prefix": "p/"}}, {}, 200),
        ("PUT", "/api/v1/endpoints/{endpoint_id}/credentials", ep, new_sftp["credentials"], {}, 200),
        ("POST", "/api/v1/endpoints/{endpoint_id}/test", ep, None, {}, 200),
        ("POST", "/api/v1/endpoints/{endpoint_id}/ssh-key", ep, {"overlap_hours": 24}, {}, 201),
        ("GET", "/api/v1/endpoints/{endpoint_id}/ssh-key", ep, None, {}, 200),
        ("GET", "/api/v1/network", {}, None, {}, 200),
        ("POST", "/api/v1/routes", {}, route, {}, 201),
        ("GET", "/api/v1/routes", {}, None, {}, 200),
        ("POST", "/api/v1/transfers", {}, adhoc, idempotency, 201),
        ("POST", "/api/v1/transfers", {}, adhoc, idempotency, 200),
        ("POST", "/api/v1/transfers", {}, {**adhoc, "options": {}}, idempotency, 409),
        ("GET", "/api/v1/transfers", {}, None, {}, 200),
        ("POST", "/api/v1/subscriptions", {}, {"target": "webhook", "url": "https://127.0.0.1:9/hooks"}, {}, 201),
        ("GET", "/api/v1/subscriptions", {}, None, {}, 200),
        ("PATCH", "/api/v1/subscriptions/{subscription_id}", sub, {"event_types": ["transfer.dead"]}, {}, 200),
        ("POST", "/api/v1/subscriptions/{subscription_id}/rotate-secret", sub, {"overlap_hours": 2}, {}, 200),
        ("GET", "/api/v1/subscriptions/{subscription_id}/deliveries", sub, None, {}, 200),
    ]


def test_the_api_keeps_its_schema(live_server, moto, sshd, bucket):
    base_url = live_server.url
    owner = tenancy.create_tenant(name=f"owner-{uuid.uuid4().hex[:6]}")
    other = tenancy.create_tenant(name=f"other-{uuid.uuid4().hex[:6]}")
    key_a = tenancy.issue_api_key(tenant=owner).plaintext
    read_a = tenancy.issue_api_key(tenant=owner, scope="read").plaintext
    key_b = tenancy.issue_api_key(tenant=other).plaintext
    spare_key = tenancy.issue_api_key(tenant=owner, label="spare").api_key

    # Tenant A's objects, made through the API: endpoints at the test sshd and the emulator's
    # bucket, a manual route between them, a file to move and an ad-hoc transfer.
    source = sshd.data_dir / "contract"
    source.mkdir(parents=True, exist_ok=True)
    source.chmod(0o777)
    (source / "a.txt").write_bytes(b"contract\n")
    sftp = _create(base_url, key_a, "endpoints", sftp_body(sshd))
    s3 = _create(base_url, key_a, "endpoints", s3_body(bucket))
    route = _create(
        base_url,
        key_a,
        "routes",
        {
            "name": "contract",
            "source": {"endpoint": sftp["id"], "path": "/contract"},
            "destination": {"endpoint": s3["id"], "path": "/in"},
            "trigger": {"type": "manual"},
            "options": {"stable_polls": False},
        },
    )
    transfer = _create(
        base_url,
        key_a,
        "transfers",
        {
            "source": {"endpoint": sftp["id"], "path": "/contract/a.txt"},
            "destination": {"endpoint": s3["id"], "path": "/in/a.txt"},
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    subscription = _create(
        base_url, key_a, "subscriptions", {"target": "webhook", "url": "https://127.0.0.1:9/contract"}
    )
    ids = {
        "subscription_id": subscription["id"],
        "endpoint_id": sftp["id"],
        "route_id": route["id"],
        "transfer_id": transfer["id"],
        "key_id": str(spare_key.id),
        "client_id": str(oauth.register_client(tenant=owner, label="spare").client.id),
    }

    document = requests.get(f"{base_url}/api/schema/?format=json", timeout=60).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 23
    # Deletions last, so the other operations meet A's objects while they exist.
    operations.sort(key=lambda op: op.method.lower() == "delete")
    run = Run(base_url=base_url)

    # The excluded scan, against a real server.
    scan = schema["/api/v1/host-keys/scan"]["POST"]
    case = scan.Case(body={"host": sshd.host, "port": sshd.port}, media_type="application/json")
    assert _call(run, case, bearer(key_a), "POST /api/v1/host-keys/scan [owner, the test sshd]") == 200

    # Generated bodies seldom pass every rule (a host that resolves, a real endpoint id), so
    # the successful answers of the writes are also checked with bodies that do (first,
    # while the generated deletions below have not removed anything).
    rotatable = str(tenancy.issue_api_key(tenant=owner, label="rotated").api_key.id)
    for method, path, params, body, headers, status in happy_path(
        sshd, bucket, sftp, s3, rotatable, subscription["id"]
    ):
        operation = schema[path][method]
        with_body = {"body": body, "media_type": "application/json"} if body is not None else {}
        case = operation.Case(path_parameters=params, headers=headers, **with_body)
        _call(run, case, bearer(key_a), f"{method} {path} [owner, a valid request]", lambda s, want=status: s == want)

    # The errors no generated request provokes: too large, not JSON, not accepting JSON.
    for method, path, kwargs, status in [
        ("POST", "/api/v1/routes", {"data": b"{" + b" " * 70_000 + b"}"}, 413),
        ("POST", "/api/v1/routes", {"data": b"name=x", "headers": {"Content-Type": "text/plain"}}, 415),
        ("GET", "/api/v1/routes", {"headers": {"Accept": "text/html"}}, 406),
    ]:
        headers = {"Content-Type": "application/json", **bearer(key_a), **kwargs.pop("headers", {})}
        response = requests.request(method, f"{base_url}{path}", headers=headers, timeout=60, **kwargs)
        run.calls += 1
        where = f"{method} {path} [owner, {status}]"
        if response.status_code != status:
            run.fail(where, f"unexpected status {response.status_code}\n{response.text[:300]}")
        try:
            media_type = None if method == "GET" else "application/json"
            schema[path][method].Case(media_type=media_type).validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            run.fail(where, str(exc))

    for operation in operations:
        label = operation.label
        if label in GENERATED_EXCLUDED:
            continue
        method = operation.method.lower()
        has_ids = "{" in operation.path
        mine = {name: ids[name] for name in ids if "{" + name + "}" in operation.path}
        writes = method != "get"
        not_found = (key_b, lambda status: status == 404) if has_ids else None

        explore(run, operation, label="owner", key=key_a, path_parameters=mine, also=not_found)
        explore(run, operation, label="owner", key=key_a, path_parameters=mine, mode=GenerationMode.NEGATIVE)
        if has_ids:
            explore(run, operation, label="owner, unknown ids", key=key_a, examples=3, expect=lambda s: s in (400, 404))
        explore(run, operation, label="no key", key=None, path_parameters=mine, examples=2, expect=lambda s: s == 401)
        if writes:
            explore(
                run,
                operation,
                label="read-only key",
                key=read_a,
                path_parameters=mine,
                examples=2,
                expect=lambda s: s == 403,
            )

    # Tenant B's lists show nothing of A's.
    for path in ("endpoints", "routes", "transfers", "api-keys", "subscriptions"):
        response = requests.get(f"{base_url}/api/v1/{path}", headers=bearer(key_b), timeout=60)
        assert response.status_code == 200
        seen = {item["id"] for item in response.json()["results"]}
        assert not seen & set(ids.values()) and not seen & {sftp["id"], s3["id"]}, path
    report = "\n\n".join(f"--- {title}\n{detail}" for title, detail in run.failures.items())
    assert not run.failures, f"{len(run.failures)} contract violation(s) in {run.calls} calls:\n{report}"
    # The run reached the API's answers, not only its refusals.
    reached = {label: codes for label, codes in run.statuses.items() if any(200 <= c < 300 for c in codes)}
    assert len(reached) >= 15, run.statuses
