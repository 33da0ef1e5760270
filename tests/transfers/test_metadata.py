"""Business metadata (issue 16): limits, the API on routes and ad-hoc transfers, and the copy
onto the transfers a route creates. Delivery onto an S3 object: tests/workers/test_metadata_delivery.py."""

from __future__ import annotations

import pytest
from django.utils import timezone

from engine.listing import RemoteFile
from transfers import intake
from transfers import metadata as business_metadata
from transfers.models import Route, Transfer

V1 = "/api/v1"


def post(api, path, body, **extra):
    return api.post(f"{V1}{path}", body, format="json", **extra)


# --- pure -----------------------------------------------------------------------------------


def test_a_map_within_the_limits_is_kept_as_is():
    value = {"invoice-batch": "2026-12-04", "cost_centre": "FIN 042", "a": ""}
    assert business_metadata.normalize(value) == value
    assert business_metadata.normalize(None) == {}
    full = {f"k{i}": "v" * 90 for i in range(business_metadata.MAX_KEYS)}  # 10 * 92 = 920 < 1024
    assert business_metadata.normalize(full) == full


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (["a"], "metadata"),
        ({f"k{i}": "v" for i in range(11)}, "metadata"),
        ({"Upper": "x"}, "metadata.Upper"),
        ({"has space": "x"}, "metadata.has space"),
        ({"-lead": "x"}, "metadata.-lead"),
        ({"k" * 65: "x"}, "metadata." + "k" * 64),
        ({"ferry-transfer-id": "x"}, "metadata.ferry-transfer-id"),
        ({"k": 5}, "metadata.k"),
        ({"k": "v" * 257}, "metadata.k"),
        ({"k": "caf\u00e9"}, "metadata.k"),
        ({"k": "a\r\nx-amz-acl: public-read"}, "metadata.k"),
        ({f"k{i}": "v" * 200 for i in range(6)}, "metadata"),  # 6 * 202 > 1024
    ],
)
def test_maps_s3_would_refuse_or_change_are_refused(value, field):
    with pytest.raises(business_metadata.InvalidMetadata) as caught:
        business_metadata.normalize(value)
    assert field in caught.value.fields


# --- API --------------------------------------------------------------------------------------


@pytest.fixture
def endpoints(api, make_endpoint):
    return make_endpoint(api.tenant, "sftp"), make_endpoint(api.tenant, "s3")


def route_body(src, dst, **overrides):
    body = {
        "name": "with-metadata",
        "source": {"endpoint": str(src.id), "path": "/outbound", "pattern": "*.csv"},
        "destination": {"endpoint": str(dst.id), "path": "/inbound"},
        "trigger": {"type": "manual"},
    }
    body.update(overrides)
    return body


@pytest.mark.django_db
def test_route_metadata_round_trips_and_is_copied_onto_its_transfers(api, endpoints):
    src, dst = endpoints
    created = post(api, "/routes", route_body(src, dst, metadata={"partner": "acme", "feed": "daily-gl"}))
    assert created.status_code == 201, created.content
    route_id = created.json()["id"]
    assert created.json()["metadata"] == {"partner": "acme", "feed": "daily-gl"}
    assert api.get(f"{V1}/routes/{route_id}").json()["metadata"] == {"partner": "acme", "feed": "daily-gl"}

    route = Route.objects.get(id=route_id)
    [transfer] = intake.observe_files(
        route, [RemoteFile("/outbound/a.csv", 5, 1.0)], now=timezone.now(), force=True
    ).transfers()
    assert transfer.metadata == {"partner": "acme", "feed": "daily-gl"}
    assert api.get(f"{V1}/transfers/{transfer.id}").json()["metadata"] == {"partner": "acme", "feed": "daily-gl"}
    listed = api.get(f"{V1}/transfers", {"route": route_id}).json()["results"]
    assert [t["metadata"] for t in listed] == [{"partner": "acme", "feed": "daily-gl"}]

    # PATCH replaces the map; the transfer already made keeps the one it was made with.
    changed = api.patch(f"{V1}/routes/{route_id}", {"metadata": {"partner": "globex"}}, format="json")
    assert changed.status_code == 200 and changed.json()["metadata"] == {"partner": "globex"}
    transfer.refresh_from_db()
    assert transfer.metadata == {"partner": "acme", "feed": "daily-gl"}


@pytest.mark.django_db
def test_bad_metadata_is_a_400_naming_the_key_and_changes_nothing(api, endpoints):
    src, dst = endpoints
    response = post(api, "/routes", route_body(src, dst, metadata={"Partner": "acme"}))
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["metadata.Partner"]
    assert not Route.objects.exists()

    route_id = post(api, "/routes", route_body(src, dst, metadata={"partner": "acme"})).json()["id"]
    refused = api.patch(f"{V1}/routes/{route_id}", {"metadata": {"k": "v" * 300}}, format="json")
    assert refused.status_code == 400 and "metadata.k" in refused.json()["error"]["fields"]
    assert Route.objects.get(id=route_id).metadata == {"partner": "acme"}

    adhoc = {
        "source": {"endpoint": str(src.id), "path": "/outbound/a.csv"},
        "destination": {"endpoint": str(dst.id), "path": "/in/"},
        "metadata": {"ferry-transfer-id": "forged"},
    }
    refused = post(api, "/transfers", adhoc, HTTP_IDEMPOTENCY_KEY="meta-1")
    assert refused.status_code == 400 and "metadata.ferry-transfer-id" in refused.json()["error"]["fields"]
    not_a_map = post(api, "/transfers", {**adhoc, "metadata": "x"}, HTTP_IDEMPOTENCY_KEY="meta-2")
    assert not_a_map.status_code == 400
    assert not Transfer.objects.exists()


@pytest.mark.django_db
def test_adhoc_metadata_is_part_of_the_idempotent_request(api, endpoints):
    src, dst = endpoints
    body = {
        "source": {"endpoint": str(src.id), "path": "/outbound/a.csv"},
        "destination": {"endpoint": str(dst.id), "path": "/in/"},
        "metadata": {"order": "po-1"},
    }
    first = post(api, "/transfers", body, HTTP_IDEMPOTENCY_KEY="meta-k")
    assert first.status_code == 201 and first.json()["metadata"] == {"order": "po-1"}
    again = post(api, "/transfers", body, HTTP_IDEMPOTENCY_KEY="meta-k")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = post(api, "/transfers", {**body, "metadata": {"order": "po-2"}}, HTTP_IDEMPOTENCY_KEY="meta-k")
    assert other.status_code == 409
