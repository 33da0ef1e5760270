"""The audit log (controlplane/audit.py, docs/audit.md): entries for every change path of the
control plane, who/where/request id, secrets masked, append-only, the hash chain and its
verification, the tenant's read API."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane import audit, tenancy
from controlplane.models import AuditAppendOnly, AuditChainHead, AuditEntry
from tests.endpoints.conftest import patch, post, put, random_access_key, s3_body

pytestmark = pytest.mark.django_db


def entries(tenant_id=None, **filters) -> list[AuditEntry]:
    found = AuditEntry.objects.all() if tenant_id is None else AuditEntry.objects.filter(tenant_id=tenant_id)
    return list(found.filter(**filters).order_by("seq"))


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


# --- the chain (pure) ---------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_and_stable():
    assert audit.canonical({"b": 1, "a": {"d": [1, "é"], "c": None}}) == '{"a":{"c":null,"d":[1,"é"]},"b":1}'


def test_masking_reuses_the_log_redaction():
    masked = audit.masked({"name": "x", "password": "hunter22", "config": {"private_key": "-----BEGIN", "port": 22}})
    assert masked == {"name": "x", "password": "[redacted]", "config": {"private_key": "[redacted]", "port": 22}}


# --- the control plane's change paths -----------------------------------------------------


def test_key_changes_through_the_api_are_audited_with_actor_address_and_request_id(make_tenant):
    tenant, plaintext = make_tenant()
    acting = tenancy.authenticate_key(plaintext)
    client = client_with(plaintext)

    issued = client.post("/api/v1/api-keys", {"scope": "read", "label": "ci"}, format="json", HTTP_X_REQUEST_ID="r-1")
    assert issued.status_code == 201
    rotated = client.post(f"/api/v1/api-keys/{issued.json()['id']}/rotate", {}, format="json", HTTP_X_REQUEST_ID="r-2")
    assert rotated.status_code == 201
    new_id = rotated.json()["id"]
    assert client.delete(f"/api/v1/api-keys/{new_id}", HTTP_X_REQUEST_ID="r-3").status_code == 204

    made = entries(tenant.id, request_id__startswith="r-")
    assert [(e.action, e.request_id) for e in made] == [
        ("api_key.issue", "r-1"),
        ("api_key.issue", "r-2"),  # the successor
        ("api_key.rotate", "r-2"),
        ("api_key.revoke", "r-3"),
    ]
    for entry in made:
        assert (entry.actor_kind, entry.actor) == ("api_key", acting.prefix)
        assert entry.source_address == "127.0.0.1"
    rotate, revoke = made[2], made[3]
    assert rotate.object_id == issued.json()["id"]
    assert rotate.before["expires_at"] != rotate.after["expires_at"]
    assert rotate.after["successor"] == rotated.json()["prefix"]
    assert revoke.before["revoked_at"] is None and revoke.after["revoked_at"] is not None
    # Never the key or its hash.
    text = json.dumps([[e.before, e.after] for e in made])
    assert issued.json()["key"] not in text and rotated.json()["key"] not in text
    assert "key_hash" not in text


def test_an_ipv6_source_is_kept_as_written_and_verifies(make_tenant):
    _, plaintext = make_tenant()
    client = APIClient(REMOTE_ADDR="2001:DB8:0:0::1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert client.post("/api/v1/api-keys", {}, format="json").status_code == 201
    assert AuditEntry.objects.order_by("-seq").first().source_address == "2001:db8::1"
    assert audit.verify()[1] is None


def test_commands_are_audited_as_commands(capsys):
    name = f"cmd-{uuid.uuid4().hex[:8]}"
    call_command("create_tenant", name)
    call_command("create_api_key", name)
    prefix = capsys.readouterr().out.strip().splitlines()[-1].split("_")[1]
    call_command("revoke_api_key", prefix)
    tenant_id = AuditEntry.objects.get(action="tenant.create", after__name=name).tenant_id
    made = entries(tenant_id)
    assert [(e.action, e.actor_kind, e.actor) for e in made] == [
        ("tenant.create", "command", "create_tenant"),
        ("api_key.issue", "command", "create_api_key"),
        ("api_key.revoke", "command", "revoke_api_key"),
    ]
    assert all(e.source_address == "" for e in made)


def test_endpoint_changes_are_audited_without_secrets(api, moto, bucket):
    body = s3_body(bucket)
    created = post(api, "/endpoints", body).json()
    path = f"/endpoints/{created['id']}"
    assert patch(api, path, {"name": "renamed"}).status_code == 200
    key_id, secret = random_access_key()
    assert put(api, f"{path}/credentials", {"access_key_id": key_id, "secret_access_key": secret}).status_code == 200
    assert api.delete(f"/api/v1{path}").status_code == 204

    made = entries(api.tenant.id, object_kind="endpoint")
    assert [e.action for e in made] == [
        "endpoint.create",
        "endpoint.update",
        "endpoint.rotate_credentials",
        "endpoint.delete",
    ]
    create, update, rotate, delete = made
    assert create.before is None and create.after["name"] == body["name"]
    assert (update.before["name"], update.after["name"]) == (body["name"], "renamed")
    assert rotate.after["credential_kinds"] == ["access_key_id", "secret_access_key"]
    assert delete.after is None and delete.before["name"] == "renamed"
    assert all(e.object_id == created["id"] and e.actor_kind == "api_key" for e in made)
    text = json.dumps([[e.before, e.after] for e in made])
    assert body["credentials"]["secret_access_key"] not in text and secret not in text


def test_a_failed_change_leaves_no_entry(api):
    before = AuditEntry.objects.count()
    response = client_with(api.key).post("/api/v1/api-keys", {"scope": "nope"}, format="json")
    assert response.status_code == 400
    assert AuditEntry.objects.count() == before


# --- the tenant's read API ----------------------------------------------------------------


def test_tenants_read_their_own_entries_filtered_and_paged(make_tenant):
    tenant_a, key_a = make_tenant()
    _, key_b = make_tenant()
    a, b = client_with(key_a), client_with(key_b)
    for label in ("one", "two", "three"):
        assert a.post("/api/v1/api-keys", {"label": label}, format="json").status_code == 201

    page = a.get("/api/v1/audit?limit=3")
    assert page.status_code == 200
    body = page.json()
    assert len(body["results"]) == 3 and body["next"]
    first = body["results"][0]
    assert first["action"] == "api_key.issue" and first["after"]["label"] == "three"
    assert first["actor"]["kind"] == "api_key" and first["request_id"]
    rest = a.get(body["next"]).json()["results"]
    assert len(rest) == 2
    seqs = [e["seq"] for e in body["results"] + rest]
    assert seqs == sorted(seqs, reverse=True)
    assert {e["object_kind"] for e in body["results"] + rest} == {"tenant", "api_key"}

    creations = a.get("/api/v1/audit?kind=tenant").json()["results"]
    assert [e["action"] for e in creations] == ["tenant.create"]
    assert a.get("/api/v1/audit", {"since": (timezone.now() + timedelta(hours=1)).isoformat()}).json() == {
        "results": [],
        "next": None,
    }
    assert len(a.get("/api/v1/audit", {"until": timezone.now().isoformat()}).json()["results"]) == 5

    # Tenant B sees only its own two entries (its creation and its key).
    theirs = b.get("/api/v1/audit").json()["results"]
    assert [e["action"] for e in theirs] == ["api_key.issue", "tenant.create"]
    assert str(tenant_a.id) not in json.dumps(theirs)


@pytest.mark.parametrize(
    "query,field",
    [("kind=DROP%20TABLE", "kind"), ("since=yesterday", "since"), ("until=2026-13-45T99:99:99Z", "until")],
)
def test_bad_filters_are_a_400(api, query, field):
    response = api.get(f"/api/v1/audit?{query}")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


# --- append-only and the chain ------------------------------------------------------------


def test_entries_cannot_be_changed_or_deleted_through_django(make_tenant):
    make_tenant()
    entry = AuditEntry.objects.order_by("-seq").first()
    entry.action = "edited"
    with pytest.raises(AuditAppendOnly):
        entry.save()
    with pytest.raises(AuditAppendOnly):
        entry.delete()
    with pytest.raises(AuditAppendOnly):
        AuditEntry.objects.filter(seq=entry.seq).update(action="edited")
    with pytest.raises(AuditAppendOnly):
        AuditEntry.objects.filter(seq=entry.seq).delete()


def _raw(sql: str, *params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_verify_passes_on_an_intact_chain_and_finds_an_edited_entry(make_tenant, capsys):
    make_tenant()
    make_tenant()
    call_command("audit", "verify")
    assert "audit chain intact" in capsys.readouterr().out
    victim = AuditEntry.objects.order_by("seq")[1]
    _raw(
        "UPDATE controlplane_auditentry SET after = %s WHERE seq = %s",
        json.dumps({"name": "someone else"}),
        victim.seq,
    )
    with pytest.raises(CommandError, match=f"broken at entry {victim.seq}: its content does not match"):
        call_command("audit", "verify")


def test_verify_finds_a_deleted_entry_and_a_deleted_tail(make_tenant):
    make_tenant()
    make_tenant()
    seqs = list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))
    _raw("DELETE FROM controlplane_auditentry WHERE seq = %s", seqs[-1])
    checked, broken = audit.verify()
    assert broken is not None and broken.seq == seqs[-1] and "missing" in broken.reason
    _raw("DELETE FROM controlplane_auditentry WHERE seq = %s", seqs[1])
    checked, broken = audit.verify()
    assert broken is not None and broken.seq == seqs[1] and checked == seqs[1] - 1


def test_a_recomputed_entry_still_breaks_the_next_link(make_tenant):
    # Someone who edits an entry and recomputes its hash must rewrite every later one too.
    make_tenant()
    make_tenant()
    first, second = AuditEntry.objects.order_by("seq")[:2]
    first.actor = "someone else"
    _raw(
        "UPDATE controlplane_auditentry SET actor = %s, hash = %s WHERE seq = %s",
        first.actor,
        audit.chain_hash(first.previous_hash, first),
        first.seq,
    )
    _, broken = audit.verify()
    assert broken is not None and broken.seq == second.seq and "previous_hash" in broken.reason


def test_a_small_page_walks_the_whole_chain(make_tenant):
    for _ in range(3):
        make_tenant()
    assert audit.verify(page=2) == (AuditEntry.objects.count(), None)
    assert AuditEntry.objects.count() >= 6


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_take_turns_on_the_chain_head():
    # Real PostgreSQL, one connection per thread: the head's row lock serialises them.
    tenant = tenancy.create_tenant(name=f"race-{uuid.uuid4().hex[:8]}")
    start = AuditChainHead.objects.get().seq
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(8):
                with transaction.atomic():
                    audit.record(action="test.write", object_kind="test", object_id=f"{n}-{i}", tenant_id=tenant.id)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert audit.verify() == (start + 24, None)
    assert AuditChainHead.objects.get().seq == start + 24
    assert AuditEntry.objects.filter(action="test.write").count() == 24
