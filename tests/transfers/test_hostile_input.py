"""Bodies and queries that gave a 500 (issue 13, item 3): JSON nested 2,000 deep, a lone
surrogate in an object key (which the 400 then tried to echo), an impossible ``since``.
Every endpoint that parses a body or a query answers a 4xx in the one error shape."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from rest_framework import exceptions

from controlplane.parsers import MAX_JSON_DEPTH, JSONParser, RequestTooLarge, parse_time
from tests.transfers.test_api_input import _body

pytestmark = pytest.mark.django_db
V1 = "/api/v1"

HOSTILE = {
    "array nested 2000 deep": "[" * 2000 + "]" * 2000,
    "object nested 2000 deep": '{"a":' * 2000 + "1" + "}" * 2000,
    "nested one level past the cap": '{"name": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}",
    "lone surrogate in a key": '{"\\ud800": 1}',
    "lone surrogate in a value": '{"name": "\\udfff"}',
    "NaN": '{"name": NaN}',
    "not UTF-8": b'{"name": "\xff"}',
}


@pytest.fixture
def targets(api, make_endpoint) -> list[tuple[str, str]]:
    """(method, path) of every view that parses a body."""
    src, dst = make_endpoint(api.tenant, "sftp"), make_endpoint(api.tenant, "s3")
    route = api.post(f"{V1}/routes", _body(src, dst), format="json")
    assert route.status_code == 201, route.content
    adhoc = {
        "source": {"endpoint": str(src.id), "path": "/out/a"},
        "destination": {"endpoint": str(dst.id), "path": "/in/"},
    }
    transfer = api.post(f"{V1}/transfers", adhoc, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
    assert transfer.status_code in (201, 202), transfer.content
    route_id, transfer_id = route.json()["id"], transfer.json()["id"]
    return [
        ("post", f"{V1}/endpoints"),
        ("patch", f"{V1}/endpoints/{src.id}"),
        ("put", f"{V1}/endpoints/{src.id}/credentials"),
        ("post", f"{V1}/endpoints/{src.id}/test"),
        ("post", f"{V1}/host-keys/scan"),
        ("post", f"{V1}/routes"),
        ("patch", f"{V1}/routes/{route_id}"),
        ("post", f"{V1}/routes/{route_id}/run"),
        ("post", f"{V1}/transfers"),
        ("post", f"{V1}/transfers/{transfer_id}/redrive"),
        ("post", f"{V1}/transfers/{transfer_id}/cancel"),
        ("post", f"{V1}/api-keys"),
    ]


def assert_error_shape(response, status: int) -> dict:
    assert response.status_code == status, response.content
    error = json.loads(response.content.decode("utf-8"))["error"]
    assert set(error) == {"code", "message", "fields", "request_id"}
    return error


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_bodies_get_a_400_in_the_error_shape_on_every_endpoint(api, targets, name):
    api.raise_request_exception = False
    for method, path in targets:
        response = getattr(api, method)(
            path, HOSTILE[name], content_type="application/json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex
        )
        error = assert_error_shape(response, 400)
        assert error["code"] == "bad_request", (method, path, error)
        # Nothing of the input is echoed: no field names, and a message of our own.
        assert error["fields"] == {}, (method, path, error)
        assert "\\ud800" not in error["message"] and "\\udfff" not in error["message"]


def test_the_error_shape_never_echoes_unencodable_text():
    from controlplane.errors import body

    shaped = body(status=400, message="bad \ud800", fields={"\ud800": ["Unknown field \udfff."]})
    json.dumps(shaped, ensure_ascii=False).encode("utf-8")  # would raise before the fix
    assert shaped["error"]["fields"] == {"?": ["Unknown field ?."]}


@pytest.mark.parametrize("path", [f"{V1}/transfers", f"{V1}/endpoints"])
@pytest.mark.parametrize("since", ["2026-13-45T99:99:99Z", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00+00:00"])
def test_an_impossible_since_is_a_400(api, path, since):
    api.raise_request_exception = False
    error = assert_error_shape(api.get(path, {"since": since}), 400)
    assert list(error["fields"]) == ["since"]


def test_parse_time_refuses_impossible_times_and_keeps_good_ones():
    assert parse_time("2026-13-45T99:99:99Z") is None
    assert parse_time("yesterday") is None
    assert parse_time("2026-01-31T00:00:00Z").isoformat() == "2026-01-31T00:00:00+00:00"


def test_the_parser_caps_a_body_without_a_content_length(settings):
    # A chunked body declares no length, so the middleware cannot refuse it: the parser does.
    settings.FERRY_MAX_BODY_BYTES = 100
    with pytest.raises(RequestTooLarge):
        JSONParser().parse(io.BytesIO(b'{"name": "' + b"x" * 200 + b'"}'), "application/json", {})
    assert JSONParser().parse(io.BytesIO(b'{"name": "x"}'), "application/json", {}) == {"name": "x"}


def test_nesting_up_to_the_cap_is_accepted():
    doc = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert JSONParser().parse(io.BytesIO(doc.encode()), "application/json", {}) is not None
    with pytest.raises(exceptions.ParseError):
        JSONParser().parse(io.BytesIO(("[" + doc + "]").encode()), "application/json", {})
