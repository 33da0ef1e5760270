"""Bad input gets a 4xx in the one error shape, never a 500, and changes nothing."""

from __future__ import annotations

import copy
import uuid

import pytest

from transfers.models import Route, Transfer

pytestmark = pytest.mark.django_db
V1 = "/api/v1"
NASTY = ["\x00", "a\x00b", "../..", "\u202e", "x" * 5000, "", " ", "{", "%00"]
NASTY_VALUES = [None, 1, -1, True, [], {}, "x", 10**30]


def _body(src, dst):
    return {
        "name": "r1",
        "source": {"endpoint": str(src.id), "path": "/out", "pattern": "*.csv", "recursive": False},
        "destination": {"endpoint": str(dst.id), "path": "/in", "name": "{name}"},
        "trigger": {"type": "schedule", "cron": "*/5 * * * *", "timezone": "UTC"},
        "options": {"max_attempts": 3},
    }


def _leaves(body, prefix=()):
    for key, value in body.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key)


def _set(body, path, value):
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def test_no_route_body_field_gives_a_500(api, make_endpoint):
    src, dst = make_endpoint(api.tenant, "sftp"), make_endpoint(api.tenant, "s3")
    base = _body(src, dst)
    statuses = set()
    for path in _leaves(base):
        for value in [*NASTY, *NASTY_VALUES]:
            response = api.post(f"{V1}/routes", _set(base, path, value), format="json")
            assert response.status_code < 500, (path, value, response.content)
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message", "fields", "request_id"}
            else:
                Route.objects.all().delete()
            statuses.add(response.status_code)
    assert 400 in statuses
    for body in ([], "x", None, {"name": "x"}, {**base, "options": {"max_attempts": "\x00"}}):
        assert api.post(f"{V1}/routes", body, format="json").status_code == 400


def test_no_query_or_adhoc_input_gives_a_500(api, make_endpoint):
    src, dst = make_endpoint(api.tenant, "sftp"), make_endpoint(api.tenant, "s3")
    for name in ("route", "state", "since", "path_prefix", "cursor", "limit"):
        for value in NASTY:
            response = api.get(f"{V1}/transfers", {name: value})
            assert response.status_code < 500, (name, value, response.content)
    base = {
        "source": {"endpoint": str(src.id), "path": "/out/a"},
        "destination": {"endpoint": str(dst.id), "path": "/in/"},
    }
    for path in _leaves(base):
        for value in [*NASTY, *NASTY_VALUES]:
            key = uuid.uuid4().hex
            response = api.post(f"{V1}/transfers", _set(base, path, value), format="json", HTTP_IDEMPOTENCY_KEY=key)
            assert response.status_code < 500, (path, value, response.content)
    for key in ("\x00", "k" * 300, " "):
        response = api.post(f"{V1}/transfers", base, format="json", HTTP_IDEMPOTENCY_KEY=key)
        assert response.status_code == 400, key
    stored = list(Transfer.objects.values_list("source_path", "destination_path"))
    assert stored and not any("\x00" in a or "\x00" in b or ".." in a or ".." in b for a, b in stored)
