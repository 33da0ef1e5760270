"""Insert transfers straight into the database for ``bench.api_list`` (run by bench.stack).

``python -m bench.seed_transfers ROUTE_ID[,ROUTE_ID…] COUNT``: COUNT rows spread over the
routes, over 30 days of ``created_at`` and over the states a busy tenant has (mostly
succeeded), with Django's ``bulk_create`` in batches. Prints ``BENCH-RESULT {…}``.
"""

import json
import random
import sys
import time
import uuid
from datetime import timedelta

import django

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from transfers.models import Route, Transfer  # noqa: E402
from transfers.states import State  # noqa: E402

# What a tenant's history looks like: nearly all done, a few failing or dead, a backlog.
STATES = [(State.SUCCEEDED, 90), (State.FAILED, 3), (State.DEAD, 2), (State.PENDING, 3), (State.SKIPPED, 2)]
BATCH = 5000


def main() -> None:
    route_ids, count = sys.argv[1].split(","), int(sys.argv[2])
    routes = list(Route.objects.filter(id__in=route_ids))
    rng = random.Random(5)
    states = [s for s, weight in STATES for _ in range(weight)]
    now = timezone.now()
    started = time.monotonic()
    made = 0
    while made < count:
        rows = []
        for i in range(made, min(count, made + BATCH)):
            route = routes[i % len(routes)]
            state = rng.choice(states)
            day = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
            name = f"{day:%Y-%m-%d}/file-{i:07d}.csv"
            done = state in (State.SUCCEEDED, State.DEAD, State.SKIPPED)
            rows.append(
                Transfer(
                    id=uuid.uuid4(),
                    tenant_id=route.tenant_id,
                    route=route,
                    source_endpoint_id=route.source_endpoint_id,
                    source_path=f"{route.source_path.rstrip('/')}/{name}",
                    source_version=f"etag-{i}",
                    source_size=4096,
                    destination_endpoint_id=route.destination_endpoint_id,
                    destination_path=f"{route.destination_path.rstrip('/')}/{name}",
                    state=state,
                    attempt=1 if state != State.PENDING else 0,
                    bytes_done=4096 if done else 0,
                    bytes_total=4096,
                    sha256="ab" * 32 if state == State.SUCCEEDED else "",
                    partition=route.partition,
                    region="us-east-1",
                    last_error_code="connection_refused" if state in (State.FAILED, State.DEAD) else "",
                    started_at=day if state != State.PENDING else None,
                    finished_at=day + timedelta(seconds=1) if done else None,
                )
            )
        Transfer.objects.bulk_create(rows, batch_size=BATCH)
        made += len(rows)
    # created_at is auto_now_add (set to now on insert): spread it as the started_at above.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE transfers_transfer SET created_at = COALESCE(started_at, %s - (random() * interval '30 days'))",
            [now],
        )
        cursor.execute("ANALYZE transfers_transfer")
    print("BENCH-RESULT " + json.dumps({"count": made, "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
