"""A big folder's intake (transfers.bulk): every file becomes exactly one transfer with one
timeline event, in a few statements, whatever races it; against PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from engine.listing import RemoteFile
from tests.transfers.conftest import route_spec
from transfers import bulk, intake, routes
from transfers.models import FileObservation, Transfer, TransferEvent
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
    assert {t.id for t in created} == set(rows.values_list("id", flat=True))
    # The returned objects are the rows as stored.
    stored = {t.id: t for t in rows}
    for transfer in created[:: FILES // 10]:
        row = stored[transfer.id]
        assert (transfer.source_path, transfer.source_version, transfer.bytes_total) == (
            row.source_path,
            row.source_version,
            row.bytes_total,
        )
        assert transfer.destination_path == row.destination_path == "/in/" + row.source_path.rsplit("/", 1)[1]
        assert row.state == State.PENDING and row.partition == route.partition and row.options == route.options
        assert row.created_at == transfer.created_at and row.batch_id == transfer.batch_id is not None
    assert TransferEvent.objects.filter(transfer__route=route, to_state=State.PENDING).count() == FILES
    assert FileObservation.objects.filter(route=route).count() == FILES
    # Statements, not rows: three kinds of bulk insert of three chunks each, and a handful more.
    assert len(queries) < 30, [q["sql"][:80] for q in queries]
    # The next poll of the same folder creates nothing.
    assert intake.observe_files(route, files, now=now, force=True, trigger="manual") == []
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
