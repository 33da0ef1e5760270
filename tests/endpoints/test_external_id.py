"""Ferry issues the external id of every S3 endpoint; a tenant cannot choose it
(issue 13, item 2: the confused deputy in role assumption).

The emulator honours role trust policies and their ``sts:ExternalId`` condition as AWS
does (deploy/local/moto_server.py), so the tests assume real roles in other accounts.
"""

from __future__ import annotations

import importlib
import re
import uuid

import pytest
from django.apps import apps
from rest_framework.test import APIClient

from controlplane.models import MirrorOutbox
from endpoints import specs
from endpoints.models import Endpoint
from engine import s3client
from tests import accounts
from tests.endpoints.conftest import patch, post, put, random_access_key, s3_body
from tests.endpoints.test_validation import _refused_and_nothing_written
from tests.transfers.conftest import route_spec
from transfers import intake, routes

pytestmark = pytest.mark.django_db

A = "111111111111"
ISSUED = re.compile(r"^ferry-[0-9a-f]{32}$")


def client_of(make_tenant) -> APIClient:
    tenant, key = make_tenant()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.tenant = tenant
    return client


def test_a_tenant_supplied_external_id_is_refused_and_nothing_is_written(api, moto, secret_names, bucket):
    body = s3_body(bucket, credentials={}, role_arn=accounts.role_arn(A, "r"), external_id="tenant-a-ext-1")
    _refused_and_nothing_written(api, secret_names, body, "config.external_id")
    response = post(api, "/endpoints", body)
    assert "Ferry issues the external id" in response.json()["error"]["fields"]["config.external_id"][0]

    created = post(api, "/endpoints", s3_body(bucket)).json()
    for value in ("tenant-a-ext-1", created["config"]["external_id"]):  # not even its own value back
        refused = patch(api, f"/endpoints/{created['id']}", {"config": {"external_id": value}})
        assert refused.status_code == 400, refused.content
        assert list(refused.json()["error"]["fields"]) == ["config.external_id"]
    assert Endpoint.objects.get(pk=created["id"]).version == created["version"]


def test_the_issued_external_id_is_shown_stable_across_changes_and_unique(api, moto, bucket, make_tenant):
    first = post(api, "/endpoints", s3_body(bucket)).json()
    issued = first["config"]["external_id"]
    assert ISSUED.match(issued)
    path = f"/endpoints/{first['id']}"
    changed = patch(api, path, {"config": {"prefix": "other/", "role_arn": accounts.role_arn(A, "r")}}).json()
    assert changed["config"]["external_id"] == issued
    key_id, secret = random_access_key()
    rotated = put(api, f"{path}/credentials", {"access_key_id": key_id, "secret_access_key": secret}).json()
    assert rotated["config"]["external_id"] == issued
    assert api.get(f"/api/v1{path}").json()["config"]["external_id"] == issued
    assert specs.to_spec(Endpoint.objects.get(pk=first["id"])).external_id == issued

    second = post(api, "/endpoints", s3_body(bucket)).json()["config"]["external_id"]
    other_tenant = post(client_of(make_tenant), "/endpoints", s3_body(bucket)).json()["config"]["external_id"]
    assert len({issued, second, other_tenant}) == 3


def sftp_destination(tenant) -> Endpoint:
    config = {"host": "127.0.0.1", "port": 22, "username": "u", "root": "/", "host_keys": [], "max_connections": 1}
    return Endpoint.objects.create(tenant=tenant, name=f"sftp-{uuid.uuid4().hex[:8]}", kind="sftp", config=config)


def test_the_role_is_assumed_with_the_issued_id_and_another_tenant_naming_it_gets_nothing(api, moto, make_tenant):
    key = "in/payroll.csv"
    bucket = accounts.bucket_of(A, key)
    role_name = f"tenant-a-reader-{uuid.uuid4().hex[:6]}"
    role = accounts.role_arn(A, role_name)
    mine = post(api, "/endpoints", s3_body(bucket, credentials={}, prefix="in/", role_arn=role)).json()
    # The customer writes the trust policy with the id the endpoint shows (docs/endpoints.md).
    accounts.role_trusting(A, role_name, [mine["config"]["external_id"]])

    result = post(api, f"/endpoints/{mine['id']}/test", {}).json()
    assert result["ok"] is True, result
    assert result["checks"][0] == {**result["checks"][0], "name": "assume_role", "ok": True}
    engine_client = s3client.build(specs.to_spec(Endpoint.objects.get(pk=mine["id"])))
    assert engine_client.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0

    # Tenant B names A's role: Ferry assumes it with B's endpoint's own id, which the trust
    # policy does not list. B has no way to send A's.
    other = client_of(make_tenant)
    theirs = post(other, "/endpoints", s3_body(bucket, credentials={}, prefix="in/", role_arn=role)).json()
    result = post(other, f"/endpoints/{theirs['id']}/test", {}).json()
    assert result["ok"] is False
    assert result["checks"][-1]["name"] == "assume_role"
    assert "AccessDenied" in result["checks"][-1]["detail"]

    # And an event for A's object is A's alone.
    made = []
    for client, endpoint in ((api, mine), (other, theirs)):
        source = Endpoint.objects.get(pk=endpoint["id"])
        spec = route_spec(source, sftp_destination(client.tenant), trigger_type="event", cron="", source_path="/")
        made.append(routes.create_route(tenant=client.tenant, **spec))
    created = intake.create_from_s3_event(bucket=bucket, key=key, version="v1", size=8, region="us-east-1")
    assert [t.route_id for t in created] == [made[0].id]


def test_the_migration_replaces_tenant_chosen_ids_and_mirrors_the_change(make_tenant):
    migration = importlib.import_module("endpoints.migrations.0003_ferry_issued_external_ids")
    tenant, _ = make_tenant()
    chosen = Endpoint.objects.create(
        tenant=tenant,
        name="chosen",
        kind="s3",
        config={
            "bucket": "b-chosen",
            "region": "us-east-1",
            "role_arn": accounts.role_arn(A, "r"),
            "external_id": "acme",
        },
    )
    sftp = Endpoint.objects.create(tenant=tenant, name="sftp", kind="sftp", config={"host": "h"})

    migration.issue_external_ids(apps, None)

    chosen.refresh_from_db()
    assert ISSUED.match(chosen.config["external_id"])
    assert chosen.version == 2
    row = MirrorOutbox.objects.get(object_id=str(chosen.id), version=2)
    assert row.document["config"]["external_id"] == chosen.config["external_id"]
    sftp.refresh_from_db()
    assert "external_id" not in sftp.config and sftp.version == 1


def test_the_tenant_shows_the_principals_its_trust_policies_name(api, settings):
    roles = [
        "arn:aws:iam::999999999999:role/ferry-us-east-1-ApiTaskRole-X",
        "arn:aws:iam::999999999999:role/ferry-us-west-2-WorkerTaskRole-Y",
    ]
    settings.FERRY_TASK_ROLE_ARNS = roles
    assert api.get("/api/v1/tenant").json()["role_trust_principals"] == roles
