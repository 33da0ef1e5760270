"""Operator views of regions: `manage.py regions` and the admin page (DynamoDB on moto)."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from controlplane.models import AuditEntry
from tests.conftest import run_manage
from tests.operators import verified_login
from workers import context
from workers.regions import RegionState

pytestmark = pytest.mark.django_db


@pytest.fixture
def restore_regions(moto):
    yield
    table = context.region_table()
    for name in ("us-east-1", "us-west-2"):
        table.set_state(name, RegionState.ACTIVE)


# Transactional: the commands (child processes) commit audit entries; the flush removes them.
@pytest.mark.django_db(transaction=True)
def test_regions_commands_change_state_and_status_shows_it(moto, worker_env, restore_regions):
    out = run_manage("regions", "drain", "us-west-2", env=worker_env | {"FERRY_REGIONS": "us-east-1,us-west-2"}).stdout
    assert "us-west-2: draining" in out
    assert context.region_table().all(["us-west-2"])["us-west-2"].state == RegionState.DRAINING
    out = run_manage(
        "regions",
        "failover",
        "--from",
        "us-west-2",
        "--to",
        "us-east-1",
        env=worker_env | {"FERRY_REGIONS": "us-east-1,us-west-2"},
    ).stdout
    region = context.region_table().all(["us-west-2"])["us-west-2"]
    assert (region.state, region.moved_to) == (RegionState.FAILED_OVER, "us-east-1")
    assert "partition  home" in out
    run_manage("regions", "restore", "us-west-2", env=worker_env | {"FERRY_REGIONS": "us-east-1,us-west-2"})
    assert context.region_table().all(["us-west-2"])["us-west-2"].state == RegionState.ACTIVE
    bad = run_manage("regions", "drain", "eu-west-9", env=worker_env, check=False)
    assert bad.returncode != 0 and "unknown region" in bad.stderr
    # Each change is in the audit log, as the command's (docs/audit.md); the refused one is not.
    made = AuditEntry.objects.filter(object_kind="region").order_by("seq")
    assert [(e.action, e.actor_kind, e.actor, e.object_id, e.after["state"]) for e in made] == [
        ("region.drain", "command", "regions drain", "us-west-2", "draining"),
        ("region.failover", "command", "regions failover", "us-west-2", "failed_over"),
        ("region.restore", "command", "regions restore", "us-west-2", "active"),
    ]
    assert made[1].before["state"] == "draining" and made[1].after["moved_to"] == "us-east-1"
    assert made[0].tenant_id is None


def test_admin_shows_regions_and_leases_read_only(moto):
    user = get_user_model().objects.create_user("ops", password="pw", is_staff=True, is_superuser=True)
    client = Client()
    verified_login(client, user)  # password + TOTP
    response = client.get("/admin/workers/partitionlease/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Regions and partition leases" in body
    assert "us-east-1" in body and "us-west-2" in body
    assert client.get("/admin/workers/partitionlease/add/").status_code == 403
