"""Late files against PostgreSQL and the moto server's lease table: a late window fires
once (also with two evaluators at once, and with two regions' scheduler ticks, where only
the partition owner's evaluates), files coming afterwards fire ``file_arrived_late`` once and
are not counted again by the next window, and the route's status in the API."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY

from tests.operators import verified_login
from transfers import expectations, signals
from transfers.models import ExpectationWindow, Route, Transfer
from workers import context, scheduler

pytestmark = pytest.mark.django_db(transaction=True)

EXPECT = {"cron": "0 6 * * *", "grace_seconds": 1800, "min_files": 1}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def sent() -> Iterator[list[tuple[str, dict]]]:
    """(signal name, kwargs) of every late-file signal, with whether it came inside a transaction."""
    seen: list[tuple[str, dict]] = []

    def late(sender, **kwargs):
        seen.append(("late", {**kwargs, "in_transaction": connection.in_atomic_block}))

    def arrived(sender, **kwargs):
        seen.append(("arrived_late", {**kwargs, "in_transaction": connection.in_atomic_block}))

    signals.file_late.connect(late, weak=False)
    signals.file_arrived_late.connect(arrived, weak=False)
    yield seen
    signals.file_late.disconnect(late)
    signals.file_arrived_late.disconnect(arrived)


@pytest.fixture
def expecting(make_tenant, make_route):
    """A route expecting one file by 06:00 London time with 30 minutes' grace, since 1 Jan."""

    def make(**fields) -> Route:
        tenant, _ = make_tenant()
        values = {
            "options": {**Route._meta.get_field("options").default(), "expect": EXPECT},
            "timezone": "Europe/London",
            "expect_since": utc(2026, 1, 5),
            "metadata": {"partner": "acme"},
        }
        return make_route(tenant, **{**values, **fields})

    return make


def arrive(route: Route, at: datetime) -> Transfer:
    """A transfer of ``route`` created at ``at`` (a file the route took then)."""
    transfer = Transfer.objects.create(
        tenant_id=route.tenant_id,
        route=route,
        source_endpoint_id=route.source_endpoint_id,
        source_path=f"/out/{uuid.uuid4().hex[:6]}.csv",
        source_version="1:1",
        destination_endpoint_id=route.destination_endpoint_id,
        destination_path="/in/x.csv",
        partition=route.partition,
    )
    Transfer.objects.filter(pk=transfer.pk).update(created_at=at)  # auto_now_add ignores a given value
    return transfer


def late_total() -> float:
    return REGISTRY.get_sample_value("ferry_files_late_total") or 0.0


def test_a_late_window_fires_once_and_its_files_arriving_fire_once(expecting, sent):
    route = expecting()
    before = late_total()
    # 5 January: 06:00 GMT = 06:00Z, deadline 06:30Z. Nothing came.
    assert expectations.evaluate_route(route, now=utc(2026, 1, 5, 6, 29), region="r1").judged == []
    first = expectations.evaluate_route(route, now=utc(2026, 1, 5, 6, 31), region="r1")
    again = expectations.evaluate_route(route, now=utc(2026, 1, 5, 6, 40), region="r2")
    assert [w.window_end for w in first.late] == [utc(2026, 1, 5, 6)] and again.judged == again.late == []
    [(name, late)] = sent
    assert name == "late" and late["in_transaction"]
    assert late["key"] == f"file.late:{route.id}:2026-01-05T06:00:00Z"
    assert late["tenant_id"] == route.tenant_id and late["route_id"] == route.id
    assert late["data"] == {
        "route_id": str(route.id),
        "route_name": route.name,
        "window_start": "2026-01-05T00:00:00Z",
        "window_end": "2026-01-05T06:00:00Z",
        "deadline": "2026-01-05T06:30:00Z",
        "expected": 1,
        "seen": 0,
        "cron": "0 6 * * *",
        "timezone": "Europe/London",
        "grace_seconds": 1800,
        "metadata": {"partner": "acme"},
    }
    assert late_total() == before + 1
    row = ExpectationWindow.objects.get(route=route)
    assert (row.state, row.region, row.seen) == ("late", "r1", 0)

    # The file comes at 07:10: arrived late, once, whoever evaluates and however often.
    arrive(route, utc(2026, 1, 5, 7, 10))
    assert expectations.evaluate_route(route, now=utc(2026, 1, 5, 7, 15), region="r1").arrived == [row]
    assert expectations.evaluate_route(route, now=utc(2026, 1, 5, 7, 20), region="r2").arrived == []
    assert [name for name, _ in sent] == ["late", "arrived_late"]
    arrived = sent[1][1]
    assert arrived["in_transaction"]
    assert arrived["key"] == f"file.arrived_late:{route.id}:2026-01-05T06:00:00Z"
    assert arrived["data"]["arrived_at"] == "2026-01-05T07:10:00Z"
    assert arrived["data"]["late_by_seconds"] == 40 * 60 and arrived["data"]["arrived"] == 1
    row.refresh_from_db()
    assert (row.state, row.late_files) == ("arrived_late", 1)

    # 6 January: the 07:10 file was the 5th's; none came for the 6th, which is late too.
    sixth = expectations.evaluate_route(route, now=utc(2026, 1, 6, 6, 31), region="r1")
    assert [(w.window_end, w.seen, w.state) for w in sixth.judged] == [(utc(2026, 1, 6, 6), 0, "late")]
    # 7 January, 05:50 and 05:55: files are counted oldest window first, so the first is the
    # 6th's, arriving late, and the second is the 7th's, on time.
    arrive(route, utc(2026, 1, 7, 5, 50))
    arrive(route, utc(2026, 1, 7, 5, 55))
    seventh = expectations.evaluate_route(route, now=utc(2026, 1, 7, 6, 31), region="r1")
    assert [w.window_end for w in seventh.arrived] == [utc(2026, 1, 6, 6)]
    assert [(w.window_end, w.seen, w.state) for w in seventh.judged] == [(utc(2026, 1, 7, 6), 1, "on_time")]
    assert [name for name, _ in sent] == ["late", "arrived_late", "late", "arrived_late"]


def test_two_evaluators_at_once_fire_one_late_signal(expecting, sent):
    route = expecting(options={**Route._meta.get_field("options").default(), "expect": {**EXPECT, "min_files": 2}})
    arrive(route, utc(2026, 1, 5, 5))  # one of the two
    barrier = threading.Barrier(2)
    results: list[expectations.Evaluation] = []
    errors: list[BaseException] = []

    def evaluate(region: str) -> None:
        try:
            mine = Route.objects.get(pk=route.pk)
            barrier.wait(timeout=10)
            results.append(expectations.evaluate_route(mine, now=utc(2026, 1, 5, 6, 45), region=region))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate, args=(r,)) for r in ("us-east-1", "us-west-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert sorted(len(r.late) for r in results) == [0, 1]
    assert [name for name, _ in sent] == ["late"]
    assert sent[0][1]["data"]["seen"] == 1 and sent[0][1]["data"]["expected"] == 2
    assert ExpectationWindow.objects.filter(route=route).count() == 1


@pytest.fixture
def lease():
    """Lease a fresh partition to a region of the test's own; yields a function that moves
    it to another region. Released afterwards."""
    table = context.lease_table()
    number = 23_000_000 + uuid.uuid4().int % 1_000_000
    held: dict[str, object] = {}

    def give(region: str) -> int:
        if held:
            table.release(number, owner=held["owner"], fence=held["fence"])
        owner = f"{region}/test-late/{uuid.uuid4().hex[:6]}"
        fence = table.acquire(number, region=region, owner=owner, ttl=120, now=time.time())
        assert fence is not None
        held.update(owner=owner, fence=fence)
        return number

    yield give
    if held:
        table.release(number, owner=held["owner"], fence=held["fence"])


def test_only_the_partition_owners_scheduler_tick_evaluates(expecting, sent, lease, settings, moto):
    regions = [f"late-a-{uuid.uuid4().hex[:4]}", f"late-b-{uuid.uuid4().hex[:4]}"]
    partition = lease(regions[0])
    now = timezone.now()
    route = expecting(
        partition=partition,
        timezone="UTC",
        expect_since=now - timedelta(days=2, hours=1),
        options={**Route._meta.get_field("options").default(), "expect": {**EXPECT, "grace_seconds": 0}},
    )
    settings.FERRY_REGION = regions[1]  # not the owner: judges nothing
    scheduler.scheduler_tick()
    assert sent == [] and not ExpectationWindow.objects.filter(route=route).exists()

    settings.FERRY_REGION = regions[0]  # the owner: the two daily windows since, both late
    scheduler.scheduler_tick()
    scheduler.scheduler_tick()
    assert [name for name, _ in sent] == ["late", "late"]
    assert set(ExpectationWindow.objects.filter(route=route).values_list("region", flat=True)) == {regions[0]}

    # A failover: the other region now holds the partition and evaluates again; the windows
    # are recorded, so nothing fires twice.
    lease(regions[1])
    settings.FERRY_REGION = regions[1]
    scheduler.scheduler_tick()
    assert len(sent) == 2 and ExpectationWindow.objects.filter(route=route).count() == 2


def test_the_route_shows_its_expectation(api, make_route, settings):
    route = make_route(
        api.tenant,
        options={**Route._meta.get_field("options").default(), "expect": {**EXPECT, "grace_seconds": 0}},
        timezone="UTC",
        expect_since=timezone.now() - timedelta(days=1, hours=1),
    )
    shown = api.get(f"/api/v1/routes/{route.id}").json()["expectation"]
    assert shown["state"] == "late" and shown["seen"] == 0 and shown["expected"] == 1  # not judged yet
    expectations.evaluate_route(route, region="r1")
    shown = api.get(f"/api/v1/routes/{route.id}").json()["expectation"]
    assert (shown["state"], shown["last"]["state"]) == ("late", "late")
    arrive(route, timezone.now() - timedelta(seconds=5))
    expectations.evaluate_route(route, region="r1")
    shown = api.get(f"/api/v1/routes/{route.id}").json()["expectation"]
    # The file went to the late window: the open one is still waiting for its own.
    assert (shown["state"], shown["seen"], shown["last"]["state"]) == ("waiting", 0, "arrived_late")
    arrive(route, timezone.now() - timedelta(seconds=1))
    shown = api.get(f"/api/v1/routes/{route.id}").json()["expectation"]
    assert (shown["state"], shown["seen"]) == ("on_time", 1)
    plain = make_route(api.tenant)
    assert api.get(f"/api/v1/routes/{plain.id}").json()["expectation"] is None


def test_the_admin_lists_judged_windows_read_only(expecting):
    route = expecting()
    expectations.evaluate_route(route, now=utc(2026, 1, 5, 6, 31), region="r1")
    user = User.objects.create_user(username="late-op", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_expectationwindow"))
    client = Client()
    verified_login(client, user)
    listing = client.get(reverse("admin:transfers_expectationwindow_changelist") + "?state__exact=late")
    assert listing.status_code == 200 and route.name in listing.content.decode()
    assert client.get(reverse("admin:transfers_expectationwindow_add")).status_code == 403


def test_an_expectation_set_through_the_api_opens_its_first_window_then(api, make_endpoint):
    src, dst = make_endpoint(api.tenant, "sftp"), make_endpoint(api.tenant, "s3")
    body = {
        "name": "expects",
        "source": {"endpoint": str(src.id), "path": "/out"},
        "destination": {"endpoint": str(dst.id), "path": "/in"},
        "trigger": {"type": "manual", "timezone": "Europe/London"},
        "options": {"expect": {"cron": "0 6 * * *", "grace_seconds": 700000}},
    }
    refused = api.post("/api/v1/routes", body, format="json")
    assert refused.status_code == 400 and "options.expect.grace_seconds" in refused.json()["error"]["fields"]
    assert not Route.objects.exists()

    body["options"]["expect"]["grace_seconds"] = 1800
    created = api.post("/api/v1/routes", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["options"]["expect"] == {"cron": "0 6 * * *", "grace_seconds": 1800, "min_files": 1}
    assert created.json()["expectation"]["state"] in ("waiting", "late")
    route = Route.objects.get(id=created.json()["id"])
    assert route.expect_since is not None
    since = route.expect_since

    # Changing another option keeps the windows; changing the expectation starts them again.
    api.patch(f"/api/v1/routes/{route.id}", {"options": {"max_attempts": 3}}, format="json")
    route.refresh_from_db()
    assert route.expect_since == since
    changed = api.patch(
        f"/api/v1/routes/{route.id}", {"options": {"expect": {"cron": "0 7 * * *", "min_files": 2}}}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["expectation"]["expected"] == 2
    route.refresh_from_db()
    assert route.expect_since > since
    bad = api.patch(f"/api/v1/routes/{route.id}", {"options": {"expect": {"cron": "* * * * *"}}}, format="json")
    assert bad.status_code == 400 and "options.expect.cron" in bad.json()["error"]["fields"]
    removed = api.patch(f"/api/v1/routes/{route.id}", {"options": {"expect": None}}, format="json")
    assert removed.status_code == 200 and removed.json()["expectation"] is None


def test_the_evaluation_works_through_aurora_write_forwarding(expecting, sent, request):
    route = expecting()  # made before the guard: factories are not the code under test
    request.getfixturevalue("forwarded_connection")
    expectations.evaluate_route(route, now=utc(2026, 1, 5, 6, 31), region="us-west-2")
    arrive(route, utc(2026, 1, 5, 7))
    expectations.evaluate_route(route, now=utc(2026, 1, 5, 7, 5), region="us-west-2")
    assert [name for name, _ in sent] == ["late", "arrived_late"]
    assert expectations.status_of(route, now=utc(2026, 1, 5, 7, 5))["last"]["state"] == "arrived_late"
