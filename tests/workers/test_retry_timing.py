"""Retries arrive on time (issue 13, item 16), with a real keeper and worker.

A transfer whose destination refuses every connection fails each attempt. The keeper runs
with a 5 s interval, longer than any of the test's backoff delays (base 0.5 s, cap 2 s:
ceilings 0.5, 1, 2, 2 s), so only the quick sweep between ticks can send a retry on time. Each
observed gap between a failure and the next claim must stay inside its backoff ceiling plus
the dispatch's allowance, and no retry may start more than that allowance after its
``next_attempt_at`` (docs/transfers.md, "Backoff").
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.conf import settings

from deploy.local import services
from tests.conftest import KeeperProcess, _wait_for_single_region
from tests.transfers.test_flow import create, folder, route_body, run_route, sftp_endpoint, wait_state
from transfers.backoff import ceiling
from transfers.models import TransferEvent
from transfers.states import State

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

DISPATCH_ALLOWANCE = 1.5  # seconds: the quick sweep's interval, the send, the worker's receive


@pytest.fixture
def slow_keeper(worker_env, logs_dir, keeper, celery_worker, purge_queues, django_db_blocker):
    """This region's keeper with a 5 s tick instead of the session's 0.5 s one (a lease long
    enough to stay usable between such ticks)."""
    keeper.stop()
    slow = KeeperProcess(
        {**worker_env, "FERRY_KEEPER_INTERVAL": "5", "FERRY_LEASE_TTL": "30", "FERRY_LEASE_GRACE": "5"},
        logs_dir / "slow-keeper.log",
    )
    slow.start()
    try:
        _wait_for_single_region()
        yield slow
    finally:
        slow.stop()
        keeper.start()
        with django_db_blocker.unblock():
            _wait_for_single_region()


def test_retries_start_within_their_backoff_ceilings(api, sshd, slow_keeper):
    src = folder(sshd, f"retry-src-{uuid.uuid4().hex[:6]}")
    (src / "refused.bin").write_bytes(b"x" * 10_000)
    source = sftp_endpoint(api, sshd)
    closed = services.free_port()  # nothing listens: every delivery attempt is refused
    destination = sftp_endpoint(api, sshd, port=closed)
    route = create(api, "/api/v1/routes", route_body(source, f"/{src.name}", destination, "/in"))
    (created,) = run_route(api, route["id"], force=True)
    done = wait_state(created["id"], State.DEAD, State.SUCCEEDED, timeout=90)
    assert done.state == State.DEAD and done.attempt == done.max_attempts

    events = list(TransferEvent.objects.filter(transfer_id=done.id).order_by("at", "id"))
    gaps = []
    for index, event in enumerate(events):
        if event.to_state != State.FAILED:
            continue
        claim = next(e for e in events[index + 1 :] if e.to_state in (State.STAGING, State.DELIVERING))
        wait = float(re.search(r"retry in ([0-9.]+)s", event.detail).group(1))
        gap = (claim.at - event.at).total_seconds()
        gaps.append((event.attempt, wait, gap))
    assert len(gaps) == done.max_attempts - 1, events
    base, cap = settings.FERRY_RETRY_BASE_SECONDS, settings.FERRY_RETRY_CAP_SECONDS
    for attempt, wait, gap in gaps:
        limit = ceiling(attempt, base=base, cap=cap)
        assert wait <= limit + 0.05, (attempt, wait, limit)
        assert gap <= limit + DISPATCH_ALLOWANCE, f"attempt {attempt}: gap {gap:.2f}s, ceiling {limit}s ({gaps})"
        assert gap - wait <= DISPATCH_ALLOWANCE, f"attempt {attempt}: {gap - wait:.2f}s late ({gaps})"
