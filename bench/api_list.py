"""Issue 5: ``GET /api/v1/transfers`` page latency, p95, with 100,000 transfers in PostgreSQL.

The rows go in with Django's ``bulk_create`` (``bench.seed_transfers``) into the stack's own
database, after its migrations; the API is a gunicorn process (2 sync workers, the local
profile) and every request is a real HTTP request from this process over loopback (a new
connection each: gunicorn's sync workers close it). The requests cycle through the pages a
customer asks for: the newest page, the next pages by cursor, filtered by state (common
and rare), by route, by ``since``, by path prefix, and ``limit=200``."""

from __future__ import annotations

import datetime
import uuid
from urllib.parse import urlencode

from bench.common import Env, Figure, Sizes, median
from bench.event_latency import percentile
from bench.stack import Stack

WARMUP = 20
CURSOR_DEPTH = 10  # how far a "next" chain is followed before it starts again


def run(env: Env, sizes: Sizes) -> Figure:
    stack = Stack.shared(env)
    # No keeper or worker: the seeded pending and failed rows must not be dispatched, and the
    # API should have the machine to itself.
    stack.stop_processes("keeper", "worker", "events")
    stack.start_api()
    a = stack.s3_endpoint(f"ferry-bench-list-{uuid.uuid4().hex[:8]}", prefix="in/")
    b = stack.s3_endpoint(f"ferry-bench-list-{uuid.uuid4().hex[:8]}", prefix="in/")
    routes = [stack.route(a, "/daily", b, "/copy", "manual"), stack.route(b, "/orders", a, "/copy", "manual")]
    seeded = stack.python("bench.seed_transfers", ",".join(r["id"] for r in routes), str(sizes.api_rows))
    seed = [line for line in seeded.splitlines() if line.startswith("BENCH-RESULT ")][-1]
    since = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    day = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=7)).strftime("%Y-%m-%d")
    base = f"{stack.api_url}/api/v1/transfers"
    scenarios: dict[str, dict] = {
        "newest": {},
        "state=succeeded": {"state": "succeeded"},
        "state=dead (rare)": {"state": "dead"},
        "state=failed,pending": {"state": "failed,pending"},
        "route": {"route": routes[0]["id"]},
        "since 3 days": {"since": since},
        "path_prefix (one day)": {"path_prefix": f"/daily/{day}/"},
        "limit=200": {"limit": 200},
    }
    timings: dict[str, list[float]] = {name: [] for name in [*scenarios, "next (cursor)"]}
    cursor: str | None = None
    depth = 0
    done = 0
    total = WARMUP + sizes.api_requests
    names = list(scenarios)
    i = 0
    while done < total:
        # Every other request follows the newest page's "next" chain.
        if i % 2 and cursor:
            name, url = "next (cursor)", cursor
        else:
            name = names[(i // 2) % len(names)]
            url = base + (f"?{urlencode(scenarios[name])}" if scenarios[name] else "")
        i += 1
        seconds, body = stack.get_url(url)
        assert isinstance(body.get("results"), list)
        if name in ("newest", "next (cursor)"):
            depth = depth + 1 if name == "next (cursor)" else 0
            cursor = body.get("next") if depth < CURSOR_DEPTH else None
        if done >= WARMUP:
            timings[name].append(round(seconds * 1000, 2))
        done += 1
    every = [t for values in timings.values() for t in values]
    p95 = percentile(every, 95)
    return Figure(
        name="api_list",
        ferry=p95,
        peer=None,
        unit="ms (p95)",
        sink="PostgreSQL 127.0.0.1 (database ferry_bench), gunicorn over HTTP",
        peer_name=None,
        better="lower",
        goal="p95 < 50 ms",
        note="No peer: the goal is absolute. Latency measured by the client over HTTP (connect, request,"
        " the whole body read); every request is a page of 50 unless limit=200.",
        runs={"ferry": every},
        details={
            "rows": sizes.api_rows,
            "requests": len(every),
            "p50_ms": percentile(every, 50),
            "p95_ms": p95,
            "max_ms": max(every),
            "seeding": seed[len("BENCH-RESULT ") :],
            "p95_ms_by_request": {k: percentile(v, 95) for k, v in timings.items() if v},
            "median_ms_by_request": {k: median(v) for k, v in timings.items() if v},
        },
    )


def met(fig: Figure) -> bool | None:
    return None if fig.ferry is None else fig.ferry < 50.0
