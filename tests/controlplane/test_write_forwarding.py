"""Aurora global write forwarding (controlplane/dbforwarding.py): the statements it refuses,
the guard that refuses them locally, and Ferry's own paths running on a guarded connection.

The common worker and API paths run here in-process on a forwarded-style connection; the
us-west-2 keepers and workers of tests/workers/test_faults.py run the same way as processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.utils import timezone

from controlplane import audit, dbforwarding, mirror, tenancy
from controlplane.dbforwarding import WriteForwardingRefused, refused_by
from controlplane.models import AuditEntry, Tenant
from controlplane.querysets import in_pk_order

ROOT = Path(__file__).resolve().parents[2]

# --- the classifier (pure) ----------------------------------------------------------------------

REFUSED = {
    'SAVEPOINT "s140245_x1"': "SAVEPOINT",
    'RELEASE SAVEPOINT "s140245_x1"': "SAVEPOINT",
    'ROLLBACK TO SAVEPOINT "s140245_x1"': "SAVEPOINT",
    "  /* nested atomic */ savepoint s1": "SAVEPOINT",
    "LOCK TABLE transfers_transfer IN EXCLUSIVE MODE": "LOCK",
    'DECLARE "_django_curs_1" NO SCROLL CURSOR WITH HOLD FOR SELECT 1': "cursors",
    'FETCH FORWARD 100 FROM "_django_curs_1"': "cursors",
    'CLOSE "_django_curs_1"': "cursors",
    "CREATE TABLE t (id int)": "DDL",
    "ALTER TABLE t ADD COLUMN lock int": "DDL",
    "DROP INDEX i": "DDL",
    "COMMENT ON TABLE t IS 'x'": "DDL",
    "TRUNCATE transfers_transfer": "TRUNCATE",
    "SELECT id INTO backup FROM transfers_transfer": "SELECT INTO",
    "WITH x AS (SELECT 1 AS a) SELECT a INTO y FROM x": "SELECT INTO",
    "SELECT nextval('transfers_transferevent_id_seq')": "sequence updates (nextval())",
    "select pg_catalog.setval('s', 1)": "sequence updates (setval())",
    "INSERT INTO t (id) VALUES (nextval('s'))": "sequence updates (nextval())",
    "SET CONSTRAINTS ALL IMMEDIATE": "SET CONSTRAINTS",
    "GRANT SELECT ON t TO reader": "GRANT/REVOKE",
    "REASSIGN OWNED BY a TO b": "REASSIGN OWNED",
    "LISTEN ferry": "LISTEN/NOTIFY",
    "NOTIFY ferry": "LISTEN/NOTIFY",
    "VACUUM": "VACUUM",
    "ANALYZE transfers_transfer": "ANALYZE",
    "CLUSTER t": "CLUSTER",
    "COPY t FROM STDIN": "COPY",
    "PREPARE TRANSACTION 'x'": "two-phase commit",
    "COMMIT PREPARED 'x'": "two-phase commit",
    "CALL ferry_proc()": "user-defined procedures",
    "SELECT 1; LOCK TABLE t": "LOCK",  # any statement of several
}

ALLOWED = [
    'SELECT "t"."lock", "t"."savepoint" FROM "t" WHERE "t"."id" = %s',  # columns named like rules
    "SELECT 'savepoint', 'LOCK TABLE t', 'nextval(1)' FROM t",  # the words inside literals
    "SELECT 1 -- SAVEPOINT s1",  # inside a comment
    "/* LOCK TABLE t */ SELECT 1",
    "UPDATE t SET lock = 1 WHERE id = %s",
    'SELECT "nextval" FROM t',  # a column, not a call
    'SELECT * FROM "endpoints_endpoint" WHERE "id" = %s LIMIT 1 FOR UPDATE',  # documented as allowed
    "SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED",
    'INSERT INTO "t" ("a") VALUES (%s) RETURNING "t"."id"',
    "INSERT INTO t SELECT a FROM b",
    "DELETE FROM t WHERE id IN (SELECT id FROM u)",
    "(SELECT 1) UNION (SELECT 2)",
    "PREPARE q AS SELECT 1",
    "EXECUTE q",
    "EXPLAIN SELECT 1",
    "SET TIME ZONE 'UTC'",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "",
]


@pytest.mark.parametrize(("sql", "rule"), REFUSED.items())
def test_the_classifier_names_the_rule_that_refuses(sql, rule):
    assert refused_by(sql) == rule


@pytest.mark.parametrize("sql", ALLOWED)
def test_the_classifier_lets_ordinary_sql_through(sql):
    assert refused_by(sql) is None


# --- the forwarded flag ---------------------------------------------------------------------------


def test_forwarded_means_not_in_the_writers_region(settings):
    settings.FERRY_REGION = "us-west-2"
    settings.FERRY_DATABASE_WRITER_REGION = "us-east-1"
    assert dbforwarding.is_forwarded()
    settings.FERRY_DATABASE_WRITER_REGION = "us-west-2"  # after a switchover
    assert not dbforwarding.is_forwarded()


def _fake_connection() -> SimpleNamespace:
    return SimpleNamespace(execute_wrappers=[])


@pytest.mark.parametrize(
    ("profile", "writer", "guarded"),
    [
        ("test", "us-east-1", True),
        ("local", "us-east-1", True),
        ("test", "us-west-2", False),
        ("production", "us-east-1", False),
    ],
)
def test_new_connections_are_guarded_only_when_forwarded_in_the_local_and_test_profiles(
    settings, profile, writer, guarded
):
    settings.FERRY_PROFILE = profile
    settings.FERRY_REGION = "us-west-2"
    settings.FERRY_DATABASE_WRITER_REGION = writer
    conn = _fake_connection()
    dbforwarding.on_connection_created(sender=None, connection=conn)
    dbforwarding.on_connection_created(sender=None, connection=conn)  # a reconnection
    assert conn.execute_wrappers == ([dbforwarding.guard] if guarded else [])
    assert ("chunked_cursor" in vars(conn)) is guarded


_PRINT = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({'writer': settings.FERRY_DATABASE_WRITER_REGION, "
    "'options': settings.DATABASES['default'].get('OPTIONS', {})}))"
)


# The production profile verifies a remote database's certificate (controlplane/dbtls.py),
# whatever the URL's sslmode says.
VERIFIED = {"sslmode": "verify-full", "sslrootcert": "/etc/ssl/certs/rds-global-bundle.pem"}


def _settings(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "DATABASE_", "SECRET_KEY"))}
    clean.update(
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        FERRY_PROFILE="production",
        SECRET_KEY="k" * 50,
        DATABASE_URL="postgres://ferry@db.internal:5432/ferry?sslmode=require",
        FERRY_REGIONS="us-east-1,us-west-2",
        **env,
    )
    done = subprocess.run(
        [sys.executable, "-c", _PRINT], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_asks_a_forwarded_session_to_read_its_own_writes():
    got = _settings(FERRY_REGION="us-west-2", FERRY_DATABASE_WRITER_REGION="us-east-1")
    assert got["options"] == {
        **VERIFIED,
        "options": "-c apg_write_forward.consistency_mode=session",
    }


def test_production_in_the_writers_region_sends_no_consistency_mode():
    got = _settings(FERRY_REGION="us-east-1")
    assert got["writer"] == "us-east-1"  # default: the first of FERRY_REGIONS
    assert got["options"] == VERIFIED


_PROBE = """
import json, django
django.setup()
from django.db import connection, transaction
from controlplane.dbforwarding import WriteForwardingRefused
from controlplane.models import AuditEntry, Tenant

def outcome(action):
    try:
        action()
    except WriteForwardingRefused as exc:
        return exc.rule
    except Exception as exc:  # the probe's database has no tables
        return type(exc).__name__
    return "passed"

def nested():
    with transaction.atomic(), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")

def flat():
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")

print(json.dumps({
    "flat": outcome(flat),
    "nested": outcome(nested),
    "iterator": outcome(lambda: list(Tenant.objects.iterator())),
}))
"""


@pytest.mark.parametrize(("region", "expected"), [("us-west-2", "refused"), ("us-east-1", "passed")])
def test_the_local_stack_guards_a_forwarded_process_on_sqlite(tmp_path, region, expected):
    """``make run``'s default database: a us-west-2 process guards its connections from the
    first one on (the connection_created hook), a us-east-1 process does not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "DATABASE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        FERRY_PROFILE="local",
        DATABASE_URL=f"sqlite:///{tmp_path / 'ferry.sqlite3'}",
        FERRY_REGIONS="us-east-1,us-west-2",
        FERRY_DATABASE_WRITER_REGION="us-east-1",
        FERRY_REGION=region,
    )
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["flat"] == "passed"
    if expected == "refused":
        assert got == {"flat": "passed", "nested": "SAVEPOINT", "iterator": "cursors"}
    else:  # the writer's region may nest; its .iterator() reaches SQLite (which has no table here)
        assert got == {"flat": "passed", "nested": "passed", "iterator": "OperationalError"}


# --- the guard on a real connection ---------------------------------------------------------------

guarded = pytest.mark.usefixtures("forwarded_connection")


@guarded
def test_a_nested_atomic_is_refused_as_a_savepoint(caplog):
    with pytest.raises(WriteForwardingRefused, match="SAVEPOINT is not supported") as refused:  # noqa: SIM117
        with transaction.atomic():
            Tenant.objects.create(name=f"t-{uuid.uuid4().hex[:8]}")
            with transaction.atomic():
                Tenant.objects.create(name=f"t-{uuid.uuid4().hex[:8]}")
    assert refused.value.rule == "SAVEPOINT"
    assert not Tenant.objects.exists()  # the outer transaction rolled back
    # Logged too, for processes that catch database errors (the fault tests read this line).
    assert [r.rule for r in caplog.records if r.getMessage() == "write forwarding refuses this statement"] == [
        "SAVEPOINT"
    ]


@guarded
def test_one_level_of_atomic_and_joining_it_pass():
    with transaction.atomic():
        Tenant.objects.create(name="a")
        with transaction.atomic(savepoint=False):
            Tenant.objects.create(name="b")
    assert sorted(Tenant.objects.values_list("name", flat=True)) == ["a", "b"]


@guarded
def test_iterator_is_refused_and_keyset_pages_pass():
    for i in range(5):
        Tenant.objects.create(name=f"t{i}")
    with pytest.raises(WriteForwardingRefused) as refused:
        list(Tenant.objects.order_by("id").iterator())
    assert refused.value.rule == "cursors"
    assert [t.name for t in in_pk_order(Tenant.objects.all(), batch=2)] == [
        t.name for t in Tenant.objects.order_by("pk")
    ]


@guarded
@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("LOCK TABLE controlplane_tenant IN SHARE MODE", "LOCK"),
        ("CREATE TABLE ferry_forwarding_probe (id int)", "DDL"),
        ("SELECT nextval('controlplane_mirroroutbox_id_seq')", "sequence updates (nextval())"),
        ("TRUNCATE controlplane_tenant", "TRUNCATE"),
    ],
)
def test_raw_statements_forwarding_refuses_never_reach_the_server(sql, rule):
    with pytest.raises(WriteForwardingRefused) as refused, connection.cursor() as cursor:
        cursor.execute(sql)
    assert refused.value.rule == rule
    with connection.cursor() as cursor:  # the connection is still usable
        cursor.execute("SELECT count(*) FROM controlplane_tenant")
        assert cursor.fetchone() == (0,)


@guarded
def test_select_for_update_passes():
    tenant = Tenant.objects.create(name="locked")
    with transaction.atomic():
        assert Tenant.objects.select_for_update().get(pk=tenant.pk) == tenant


# --- Ferry's paths on the guarded connection -------------------------------------------------------


@pytest.fixture
def source_bucket(bucket) -> str:
    from controlplane import aws

    s3 = aws.client("s3")
    for name in ("a.csv", "b.csv", "skip.txt"):
        s3.put_object(Bucket=bucket, Key=f"incoming/out/{name}", Body=b"x" * 10)
    return bucket


@guarded
def test_the_common_paths_run_on_a_forwarded_connection(moto, source_bucket, bucket):
    from rest_framework.test import APIClient

    from endpoints import services as endpoint_services
    from tests.endpoints.conftest import s3_body
    from transfers import intake, lifecycle, routes, states
    from transfers import services as transfer_services
    from transfers.models import Transfer
    from transfers.states import State
    from workers.scheduler import poll_route

    # The API's writes: tenant, key, endpoints (secrets in Secrets Manager), a route, a change.
    tenant = tenancy.create_tenant(name=f"fw-{uuid.uuid4().hex[:8]}")
    key = tenancy.issue_api_key(tenant=tenant)

    def endpoint(body: dict):
        return endpoint_services.create_endpoint(
            tenant=tenant, name=body["name"], kind=body["kind"], config=body["config"], credentials=body["credentials"]
        )

    source, destination = endpoint(s3_body(source_bucket)), endpoint(s3_body(bucket))
    endpoint_services.update_endpoint(endpoint=destination, expected_version=destination.version, name="renamed")
    route = routes.create_route(
        tenant=tenant,
        name="fw-route",
        source_endpoint=source,
        source_path="/out",
        pattern="*.csv",
        destination_endpoint=destination,
        destination_path="/in",
        trigger_type="manual",
        options={"min_age_seconds": 0},
    )
    route = routes.update_route(route=route, expected_version=route.version, enabled=True)

    # Intake: a poll of the source (the scheduler's path), an S3 event, an ad-hoc request.
    polled = poll_route(route, force=True).transfers()
    assert sorted(t.source_path for t in polled) == ["/out/a.csv", "/out/b.csv"]
    assert len(poll_route(route, force=True)) == 0  # idempotent
    from_event = intake.create_from_s3_event(
        bucket=source_bucket, key="incoming/out/c.csv", version="v1", size=3, region="us-east-1"
    )
    assert from_event == []  # a manual route does not watch events
    adhoc, created = intake.create_adhoc_transfer(
        tenant,
        source_endpoint=source,
        source_path="/out/a.csv",
        destination_endpoint=destination,
        destination_path="/adhoc/",
        options=None,
        idempotency_key=f"k-{uuid.uuid4().hex}",
    )
    assert created

    # A worker's lifecycle: claim, heartbeat, staged, success; a failure and a re-drive; skip.
    now = timezone.now()
    first, second = polled
    token = states.claim(first.id, worker="w/1", ttl=30, to=State.STAGING, frm=[State.PENDING])
    assert token is not None
    assert states.heartbeat(first.id, claim_token=token, ttl=30, bytes_done=5)
    assert lifecycle.record_staged(first.id, token, staging_key="s/k", sha256="0" * 64, bytes_total=10)
    assert states.transition(first.id, to=State.DELIVERING, frm=[State.STAGED], claim_token=token)
    assert lifecycle.record_success(first.id, token, sha256="0" * 64, bytes_total=10, now=now)
    token = states.claim(second.id, worker="w/2", ttl=30, to=State.DELIVERING, frm=[State.PENDING])
    failed = lifecycle.record_failure(second.id, token, RuntimeError("boom"), now=now)
    assert failed == State.FAILED
    Transfer.objects.filter(id=second.id).update(state=State.DEAD)
    transfer_services.redrive(Transfer.objects.get(id=second.id), by="test")
    token = states.claim(second.id, worker="w/2", ttl=30, to=State.DELIVERING, frm=[State.PENDING])
    assert lifecycle.record_skipped(second.id, token, reason="already delivered")
    transfer_services.cancel(Transfer.objects.get(id=adhoc.id), by="test")
    assert Transfer.objects.get(id=adhoc.id).state == State.CANCELLED

    # The API reads through the guarded connection (auth writes last_used_at).
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.plaintext}")
    listed = client.get("/api/v1/transfers")
    assert listed.status_code == 200 and len(listed.json()["results"]) == 3
    assert client.get(f"/api/v1/transfers/{first.id}").json()["state"] == "succeeded"

    # The config mirror: drain, check (keyset pages, no cursor), prune.
    mirror.drain_all()
    report = mirror.check()
    assert report.pending == 0
    assert not [d for d in report.drift if str(tenant.id) in d.pk or str(route.id) in d.pk]
    mirror.prune(older_than=timedelta(0))

    # Deletions: the route (its transfers finished), then an endpoint.
    routes.delete_route(route=route)
    endpoint_services.delete_endpoint(endpoint=destination)

    # The audit log: every change above was recorded in its own transaction, serialised on the
    # chain head's row lock (FOR UPDATE; no LOCK, no savepoint), and the chain verifies.
    rotated = tenancy.rotate_api_key(key=key.api_key, overlap=timedelta(hours=1))
    assert tenancy.revoke_api_key(prefix=rotated.issued.api_key.prefix)
    actions = list(AuditEntry.objects.filter(tenant_id=tenant.id).order_by("seq").values_list("action", flat=True))
    assert actions == [
        "tenant.create",
        "api_key.issue",
        "endpoint.create",
        "endpoint.create",
        "endpoint.update",
        "route.create",
        "route.update",
        "transfer.redrive",
        "transfer.cancel",
        "route.delete",
        "endpoint.delete",
        "api_key.issue",
        "api_key.rotate",
        "api_key.revoke",
    ]
    assert audit.verify()[1] is None
    assert client.get("/api/v1/audit?kind=route").json()["results"][0]["action"] == "route.delete"


@guarded
def test_a_nested_atomic_put_back_into_a_service_path_is_refused(monkeypatch):
    """The guard is what keeps the flattening: give the poll intake its savepoints back
    (``atomic(savepoint=False)`` ignored) and it fails on the forwarded connection."""
    from endpoints.models import Endpoint
    from engine.listing import RemoteFile
    from transfers import intake, routes
    from transfers.models import Transfer

    tenant = tenancy.create_tenant(name=f"fw-{uuid.uuid4().hex[:8]}")
    source, destination = (
        Endpoint.objects.create(tenant=tenant, name=name, kind="s3", config={"bucket": "b", "prefix": ""})
        for name in ("src", "dst")
    )
    route = routes.create_route(
        tenant=tenant,
        name="nested",
        source_endpoint=source,
        source_path="/out",
        destination_endpoint=destination,
        destination_path="/in",
        options={"min_age_seconds": 0},
    )
    files = [RemoteFile(path="/out/a.csv", size=10, mtime=1.0)]
    real_atomic = transaction.atomic

    def atomic_with_savepoints(*args, savepoint=True, **kwargs):
        return real_atomic(*args, **kwargs)

    monkeypatch.setattr(transaction, "atomic", atomic_with_savepoints)
    with pytest.raises(WriteForwardingRefused) as refused:
        intake.observe_files(route, files, now=timezone.now(), force=True)
    assert refused.value.rule == "SAVEPOINT"
    assert not Transfer.objects.filter(route=route).exists()
    monkeypatch.undo()
    assert len(intake.observe_files(route, files, now=timezone.now(), force=True)) == 1
