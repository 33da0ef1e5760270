"""Issue 14: ``scale`` — a big folder, a big backlog and a big ledger.

Three parts, each in a child process of the stack's environment (``bench.scale_child``), on
a stack of its own (the moto server, the database ``ferry_bench_scale``; the 10,000 pending
rows must not meet another benchmark's keeper):

1. **intake** — N files in one SFTP folder on the session's sshd; a manual run of one route
   (``poll_route``, what ``POST /routes/{id}/run`` does) with this region's partitions held,
   so the transfers are sent to SQS right after the commit. Figures: seconds to all N
   transfers created, to all dispatched, and files/s into transfers; peak RSS of the
   listing process, for N and for N/10 (flat means the listing is not what grows).
2. **keeper** — 1,000 routes, 10,000 pending transfers (settled: the keeper's safety net
   owes them), ``Keeper.tick`` with the real ``Dispatcher``, lease table and SQS queue,
   tick after tick until every transfer was sent. Figures: the slowest tick and the
   dispatch rate. Each transfer is bigger than ``FERRY_BATCH_MAX_BYTES`` so none ride a
   batch: one SQS message per transfer, the worst case.
3. **ledger** — claim latency (``Ledger.claim``) on a ledger table of 100,000 entries
   against an empty one, interleaved: p50/p95 of each.

No peer: the goals are absolute (the figure is files/s into transfers; the other goals are
in the details and judged by :func:`met`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

from bench.common import RESULT_MARK, Env, Figure, Sizes, median
from bench.event_latency import percentile
from bench.stack import Stack

DATABASE = "ferry_bench_scale"
GOAL_FILES_PER_SECOND = 2000.0
GOAL_TICK_SECONDS = 1.0
FLAT_RSS_MIB = 20.0  # peak RSS at N may exceed the one at N/10 by this much and still be flat


@dataclass(frozen=True)
class ScaleSizes:
    files: int
    routes: int
    pending: int
    ledger_entries: int
    claims: int


def scale_sizes(sizes: Sizes) -> ScaleSizes:
    if sizes.quick and sizes.small_count <= 10:  # Sizes.tiny(): the smoke test
        return ScaleSizes(files=40, routes=5, pending=20, ledger_entries=50, claims=5)
    if sizes.quick:
        return ScaleSizes(files=2000, routes=200, pending=2000, ledger_entries=10_000, claims=100)
    return ScaleSizes(files=10_000, routes=1000, pending=10_000, ledger_entries=100_000, claims=300)


def child(stack: Stack, step: str, request: dict) -> dict:
    path = stack.work / f"scale-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(request))
    try:
        out = stack.python("bench.scale_child", step, f"@{path}")
    finally:
        path.unlink()
    lines = [line for line in out.splitlines() if line.startswith(RESULT_MARK)]
    if not lines:
        raise RuntimeError(f"no result from scale_child {step}: {out[-1000:]}")
    return json.loads(lines[-1][len(RESULT_MARK) :])


def make_folder(env: Env, count: int) -> str:
    """``count`` small files in a fresh folder the sshd serves; its path under the root."""
    folder = env.fresh_dir("scale")
    for i in range(count):
        with open(folder / f"file-{i:06d}.csv", "wb") as f:
            f.write(b"%d\n" % i)
    return "/" + str(folder.relative_to(env.data_dir))


def sshd_request(env: Env) -> dict:
    assert env.sshd
    return {
        "port": env.sshd.port,
        "user": env.sshd.key_user,
        "root": str(env.data_dir),
        "pin": env.sshd.pin,
        "private_key": env.sshd.client_key.read_text(),
    }


class ScaleStack(Stack):
    """The stack with leases of a minute: on a loaded machine a keeper tick that sends 1,000
    messages can outlast the local profile's 15 s lease (less its margin), and the run would
    measure lost leases (transfers marked for hand-off instead of sent)."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "FERRY_LEASE_TTL": "60"}


def stack_of(env: Env) -> Stack:
    stack = env.__dict__.get("_scale_stack")
    if stack is None:
        stack = ScaleStack(env.work, database=os.environ.get("FERRY_BENCH_SCALE_DATABASE", DATABASE)).__enter__()
        env.__dict__["_scale_stack"] = stack
        env.closers.append(stack.stop)
    return stack


def intake_once(env: Env, stack: Stack, count: int) -> dict:
    folder = make_folder(env, count)
    result = child(stack, "intake", {"sshd": sshd_request(env), "folder": folder, "count": count})
    messages = -(-count // result["batch_size"])  # small files of one route: run_batch tasks
    if not (
        result["created"] == result["rows"] == count == result["dispatched"] and result["queue_messages"] == messages
    ):
        raise RuntimeError(f"intake of {count} files: {result}")
    result["files_per_second"] = round(count / result["created_seconds"], 1)
    return result


def run(env: Env, sizes: Sizes) -> Figure:
    n = scale_sizes(sizes)
    stack = stack_of(env)
    # 1. the big folder, N/10 and N interleaved.
    small = max(1, n.files // 10)
    big_runs: list[dict] = []
    small_runs: list[dict] = []
    for _ in range(sizes.runs):
        small_runs.append(intake_once(env, stack, small))
        big_runs.append(intake_once(env, stack, n.files))
    rates = [r["files_per_second"] for r in big_runs]
    mib = 1024.0
    peak_big = median([r["peak_rss_kib"] / mib for r in big_runs])
    peak_small = median([r["peak_rss_kib"] / mib for r in small_runs])
    # 2. the backlog.
    keeper = child(
        stack,
        "keeper",
        {
            "sshd": sshd_request(env),
            "routes": n.routes,
            "pending": n.pending,
            "size": 2 << 20,  # above FERRY_BATCH_MAX_BYTES: one message each
            "max_ticks": 1000,
        },
    )
    tick_seconds = [t["seconds"] for t in keeper["ticks"] if t["dispatched"]]
    # 3. the ledger.
    ledger = child(stack, "ledger", {"entries": n.ledger_entries, "claims": n.claims, "warmup": 10})
    ms = ledger["ms"]
    details: dict[str, object] = {
        "files": n.files,
        "created_seconds": [r["created_seconds"] for r in big_runs],
        "dispatched_seconds": [r["dispatched_seconds"] for r in big_runs],
        # The listing process's own CPU to all created: the figure a loaded machine cannot inflate.
        "created_cpu_seconds": [r["created_cpu_seconds"] for r in big_runs],
        "sqs_messages_for_the_folder": [r["queue_messages"] for r in big_runs],
        "peak_rss_mib": {str(small): peak_small, str(n.files): peak_big},
        "rss_before_run_mib": median([r["rss_before_kib"] / mib for r in big_runs]),
        "small_folder_files_per_second": median([r["files_per_second"] for r in small_runs]),
        "keeper_routes": n.routes,
        "keeper_pending": n.pending,
        "keeper_ticks": keeper["ticks"],
        "keeper_max_tick_seconds": max(tick_seconds) if tick_seconds else None,
        # The keeper's first tick (every lease taken), before the backlog was seeded.
        "keeper_warmup_tick": keeper.get("warmup_tick"),
        "keeper_max_tick_cpu_seconds": max(
            (t["cpu_seconds"] for t in keeper["ticks"] if t["dispatched"]), default=None
        ),
        "keeper_dispatched": keeper["dispatched"],
        "keeper_dispatch_per_second": round(keeper["dispatched"] / keeper["dispatch_seconds"], 1)
        if keeper["dispatch_seconds"]
        else None,
        "keeper_sqs_messages": keeper["queue_messages"],
        "keeper_plans": keeper["plans"],
        "ledger_entries": ledger["entries"],
        "claim_ms_empty": {"p50": percentile(ms["empty"], 50), "p95": percentile(ms["empty"], 95)},
        "claim_ms_full": {"p50": percentile(ms["full"], 50), "p95": percentile(ms["full"], 95)},
        "ledger_seed_seconds": ledger["seed_seconds"],
    }
    return Figure(
        name="scale",
        ferry=median(rates),
        peer=None,
        unit="files/s into transfers",
        sink=f"PostgreSQL 127.0.0.1 (database {stack.database}), moto SQS/DynamoDB, OpenSSH sshd",
        peer_name=None,
        better="higher",
        goal=(
            f"≥ {GOAL_FILES_PER_SECOND:.0f} files/s into transfers; keeper tick < {GOAL_TICK_SECONDS:.0f} s"
            f" with {n.pending} pending; listing RSS flat in the folder size; claim latency unchanged"
            f" with {n.ledger_entries} ledger entries"
        ),
        note=(
            f"No peer: the goals are absolute. {n.files} files in one SFTP folder, a manual run (forced);"
            f" keeper: {n.routes} routes, {n.pending} pending, one SQS message per transfer; ledger:"
            f" {n.claims} claims on each of an empty table and one of {n.ledger_entries} entries."
        ),
        runs={"ferry": rates},
        details=details,
    )


def met(fig: Figure) -> bool | None:
    if fig.ferry is None:
        return None
    d = fig.details
    rss = d["peak_rss_mib"]
    assert isinstance(rss, dict)
    small, big = (float(v) for v in rss.values())
    empty, full = d["claim_ms_empty"], d["claim_ms_full"]
    assert isinstance(empty, dict) and isinstance(full, dict)
    tick = d["keeper_max_tick_seconds"]
    return bool(
        fig.ferry >= GOAL_FILES_PER_SECOND
        and tick is not None
        and float(tick) < GOAL_TICK_SECONDS  # type: ignore[arg-type]
        and big - small <= FLAT_RSS_MIB
        # "Unchanged": within a quarter (or 2 ms, the emulator's jitter) of the empty table's.
        and full["p95"] <= max(empty["p95"] * 1.25, empty["p95"] + 2.0)
    )
