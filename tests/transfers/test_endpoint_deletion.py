"""Deleting an endpoint that transfers name: refused while they run, kept as a deleted row
(history intact, 404 in the API, name free again) once they have finished."""

from __future__ import annotations

import pytest

from endpoints.models import Endpoint
from transfers.models import Transfer
from transfers.states import State

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


def test_an_endpoint_with_finished_transfers_is_deleted_but_its_history_stays(api, moto, make_route, make_transfer):
    route = make_route(api.tenant)
    source, destination = route.source_endpoint, route.destination_endpoint
    done = make_transfer(route=route, state=State.SUCCEEDED)
    dead = make_transfer(route=route, state=State.DEAD, attempt=5, last_error_code="auth")

    # A route still uses both endpoints.
    refused = api.delete(f"{V1}/endpoints/{source.id}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "endpoint_in_use"
    route.delete()

    assert api.delete(f"{V1}/endpoints/{source.id}").status_code == 204
    assert api.get(f"{V1}/endpoints/{source.id}").status_code == 404
    listed = [e["id"] for e in api.get(f"{V1}/endpoints").json()["results"]]
    assert str(source.id) not in listed and str(destination.id) in listed
    assert api.delete(f"{V1}/endpoints/{source.id}").status_code == 404

    kept = Endpoint.all_objects.get(pk=source.id)
    assert kept.deleted_at is not None and kept.version == source.version + 1
    # The transfers still name it and read as before.
    shown = api.get(f"{V1}/transfers/{done.id}")
    assert shown.status_code == 200 and shown.json()["state"] == "succeeded"
    assert Transfer.objects.get(pk=done.id).source_endpoint.deleted_at is not None

    # A dead transfer of a deleted endpoint cannot run again.
    redrive = api.post(f"{V1}/transfers/{dead.id}/redrive", {}, format="json")
    assert redrive.status_code == 409 and redrive.json()["error"]["code"] == "endpoint_deleted"
    assert Transfer.objects.get(pk=dead.id).state == State.DEAD

    # The name is free again.
    again = Endpoint.objects.create(tenant=api.tenant, name=source.name, kind=source.kind, config=source.config)
    assert again.pk != source.pk


def test_deletion_waits_for_unfinished_transfers(api, moto, make_route, make_transfer):
    route = make_route(api.tenant)
    destination = route.destination_endpoint
    running = make_transfer(route=route, state=State.FAILED, attempt=1)
    route.delete()

    refused = api.delete(f"{V1}/endpoints/{destination.id}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "endpoint_busy"
    assert Endpoint.objects.filter(pk=destination.id).exists()

    Transfer.objects.filter(pk=running.pk).update(state=State.CANCELLED)
    assert api.delete(f"{V1}/endpoints/{destination.id}").status_code == 204
    assert not Endpoint.objects.filter(pk=destination.id).exists()
    assert Endpoint.all_objects.filter(pk=destination.id).exists()


def test_an_endpoint_without_history_is_removed(api, moto, make_endpoint):
    endpoint = make_endpoint(api.tenant, "s3")
    assert api.delete(f"{V1}/endpoints/{endpoint.id}").status_code == 204
    assert not Endpoint.all_objects.filter(pk=endpoint.id).exists()
