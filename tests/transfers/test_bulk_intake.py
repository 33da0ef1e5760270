"""A big folder's intake (transfers.bulk): every file becomes exactly one transfer with one
timeline event, in a few statements, whatever races it; against PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from engine.listing import RemoteFile
from tests.transfers.conftest import route_spec
from transfers import bulk, intake, routes, stability
from transfers.models import Batch, FileObservation, Route, Transfer, TransferEvent
from transfers.states import State

pytestmark = pytest.mark.django_db

FILES = 1200


@pytest.fixture
def route(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    return routes.create_route(tenant=tenant, **route_spec(src, dst, options={"min_age_seconds": 0}))


def listing(count: int, *, mtime: float) -> list[RemoteFile]:
    return [RemoteFile(f"/out/f-{i:05d}.csv", 100 + i, mtime) for i in range(count)]


def test_a_big_folder_becomes_each_transfer_once_in_a_few_statements(route, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", 500)  # several chunks per statement kind
    now = timezone.now()
    files = listing(FILES, mtime=now.timestamp() - 100)
    with CaptureQueriesContext(connection) as queries:
        created = intake.observe_files(route, files, now=now, force=True, trigger="manual")
    assert len(created) == FILES
    rows = Transfer.objects.filter(route=route)
    assert rows.count() == FILES
    # The ids of the rows as stored, in the listing's order, and their one batch.
    stored = {t.id: t for t in rows}
    assert set(created.ids) == set(stored) and len(created.ids) == FILES
    assert [stored[i].source_path for i in created.ids] == [f.path for f in files]
    assert created.batch_id is not None
    for transfer_id in created.ids[:: FILES // 10]:
        row = stored[transfer_id]
        assert row.bytes_total == row.source_size == 100 + int(row.source_path[-9:-4])
        assert row.source_version == f"{row.source_size}:{int(files[0].mtime)}"
        assert row.destination_path == "/in/" + row.source_path.rsplit("/", 1)[1]
        assert row.state == State.PENDING and row.partition == route.partition and row.options == route.options
        assert row.batch_id == created.batch_id
    assert TransferEvent.objects.filter(transfer__route=route, to_state=State.PENDING).count() == FILES
    assert FileObservation.objects.filter(route=route).count() == FILES
    # Statements, not rows: three kinds of bulk insert of three chunks each, and a handful more.
    assert len(queries) < 30, [q["sql"][:80] for q in queries]
    # The next poll of the same folder creates nothing.
    again = intake.observe_files(route, files, now=now, force=True, trigger="manual")
    assert len(again) == 0 and again.batch_id is None
    assert Transfer.objects.filter(route=route).count() == FILES


def test_rows_a_concurrent_poll_inserted_are_skipped_and_not_returned(route):
    """ON CONFLICT DO NOTHING RETURNING: only this statement's rows come back, so a race
    between two polls creates (and dispatches) each transfer once."""
    prototype = Transfer(
        tenant_id=route.tenant_id,
        route=route,
        source_endpoint_id=route.source_endpoint_id,
        destination_endpoint_id=route.destination_endpoint_id,
        partition=route.partition,
        state=State.PENDING,
    )
    first = [uuid.uuid4() for _ in range(3)]
    paths = ["/out/a", "/out/b", "/out/c"]

    def rows(ids, names):
        return {
            "id": ids,
            "source_path": names,
            "source_version": ["1:1"] * len(ids),
            "destination_path": [p.replace("/out", "/in") for p in names],
        }

    assert set(bulk.insert_ignoring_conflicts(prototype, rows(first, paths), returning="id")) == set(first)
    second = [uuid.uuid4() for _ in range(4)]
    won = bulk.insert_ignoring_conflicts(prototype, rows(second, [*paths, "/out/d"]), returning="id")
    assert won == [second[3]]
    assert Transfer.objects.filter(route=route).count() == 4


def test_varying_columns_must_be_columns_of_the_same_length(route):
    prototype = FileObservation(route=route, first_seen_at=timezone.now(), last_seen_at=timezone.now())
    with pytest.raises(ValueError, match="one value a row"):
        bulk.insert_ignoring_conflicts(prototype, {"path": ["/a"], "size": []})
    with pytest.raises(ValueError, match="not columns"):
        bulk.insert_ignoring_conflicts(prototype, {"nonsense": [1]})
    assert bulk.insert_ignoring_conflicts(prototype, {"path": []}) == []


def test_a_poll_bigger_than_a_chunk_reconciles_every_observation(
    route, monkeypatch, django_capture_on_commit_callbacks
):
    """The listing is handled intake.CHUNK files at a time: observations created, updated and
    forgotten across the chunks' edges, stable files taken in one batch, dispatched once."""
    monkeypatch.setattr(intake, "CHUNK", 7)
    Route.objects.filter(id=route.id).update(options={**route.options, "stable_polls": True})
    route.refresh_from_db()
    t0 = timezone.now()
    mtime = t0.timestamp() - 100
    first = [RemoteFile(f"/out/f-{i:02d}.csv", 10, mtime) for i in range(30)]
    assert not intake.observe_files(route, first, now=t0)  # only recorded: 5 chunks
    assert FileObservation.objects.filter(route=route, polls=1).count() == 30
    # The next poll: f-00…f-04 gone, f-10…f-14 grew, f-30…f-34 new; the rest unchanged.
    later = t0 + timedelta(seconds=stability.MIN_INTERVAL_SECONDS)
    second = [
        RemoteFile(f.path, 20 if 10 <= i < 15 else 10, mtime + (1 if 10 <= i < 15 else 0))
        for i, f in enumerate(first)
        if i >= 5
    ] + [RemoteFile(f"/out/f-{i:02d}.csv", 10, mtime) for i in range(30, 35)]
    waiting: Counter[str] = Counter()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        created = intake.observe_files(route, second, now=later, waiting=waiting)
    assert len(callbacks) == 1  # one dispatch after the commit, whatever the chunks
    taken = {f"/out/f-{i:02d}.csv" for i in [*range(5, 10), *range(15, 30)]}
    rows = {t.source_path: t for t in Transfer.objects.filter(route=route)}
    assert set(rows) == taken and len(created) == 20
    assert {rows[p].id for p in taken} == set(created.ids)
    assert {t.batch_id for t in rows.values()} == {created.batch_id}
    assert Batch.objects.get(id=created.batch_id).size == 20
    assert sum(waiting.values()) == 10  # the grown and the new ones wait
    observed = {o.path: o for o in FileObservation.objects.filter(route=route)}
    assert set(observed) == {f.path for f in second}  # f-00…f-04 forgotten
    for i in range(5, 35):
        o = observed[f"/out/f-{i:02d}.csv"]
        assert o.last_seen_at == later
        if 10 <= i < 15:  # changed: the interval starts again at this poll
            assert (o.size, o.polls, o.first_seen_at) == (20, 1, later)
        elif i >= 30:  # new
            assert (o.polls, o.first_seen_at) == (1, later)
        else:
            assert (o.size, o.polls, o.first_seen_at) == (10, 2, t0)
    # A listing of none forgets them all, however many chunks they fill.
    assert not intake.observe_files(route, [], now=later)
    assert not FileObservation.objects.filter(route=route).exists()


def test_a_big_runs_dispatch_is_handed_over_in_whole_batches(route, monkeypatch, django_capture_on_commit_callbacks):
    """After the commit the created ids go to the dispatcher a slice at a time, each slice a
    whole number of run_batch messages (FERRY_BATCH_SIZE)."""
    monkeypatch.setattr(intake, "CHUNK", 100)
    handed: list[list[str]] = []
    monkeypatch.setattr(intake, "_dispatcher", handed.append)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        created = intake.observe_files(route, listing(250, mtime=now.timestamp() - 100), now=now, force=True)
        assert handed == []  # not before the commit
    step = (100 // settings.FERRY_BATCH_SIZE) * settings.FERRY_BATCH_SIZE
    assert [len(h) for h in handed[:-1]] == [step] * (len(handed) - 1) and 0 < len(handed[-1]) <= step
    assert [uuid.UUID(i) for h in handed for i in h] == created.ids
