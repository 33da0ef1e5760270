"""Ferry's benchmarks: ``python -m bench.run`` (``BENCH_QUICK=1`` for the < 5 minute version).

Starts OpenSSH's sshd and ``rclone serve s3`` on loopback, runs each benchmark module
(median of at least 3 runs, tools interleaved), and writes ``BENCHMARKS.md`` and
``benchmarks.json``: into ``docs/`` for the full run, into ``bench/.work/quick/`` for the
quick one (so it never overwrites the published figures) unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from bench import (
    api_list,
    bandwidth_cap,
    event_latency,
    event_latency_other_region,
    memory,
    pgp_encrypt,
    report,
    route_small_files,
    s3_to_sftp,
    sftp_read,
    sftp_to_s3,
    small_files,
    ssh_library,
)
from bench.common import ROOT, WORK, Env, Figure, Sizes


def _optional(name: str) -> object | None:
    """A benchmark module that may not be in this checkout yet (another change adds it)."""
    try:
        return importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench.{name}":
            raise  # present but broken: say so
        return None


BENCHMARKS = {
    "sftp_to_s3": sftp_to_s3,
    "s3_to_sftp": s3_to_sftp,
    "sftp_read": sftp_read,
    "small_files": small_files,
    "ssh_library": ssh_library,
    "memory": memory,
    # The service (issue 5): the whole stack of processes, not the engine alone.
    "event_latency": event_latency,
    # Issue 11: the same for a file whose partition the other region owns (two regions).
    "event_latency_other_region": event_latency_other_region,
    "route_small_files": route_small_files,
    "api_list": api_list,
    # Issue 17: SFTP → S3 with OpenPGP encryption on the way.
    "pgp_encrypt": pgp_encrypt,
    # Issue 17: an endpoint's bandwidth cap held over a copy.
    "bandwidth_cap": bandwidth_cap,
}
# Issue 14: big folders and many routes (bench/scale.py), registered once it is in the checkout.
if (scale := _optional("scale")) is not None:
    BENCHMARKS["scale"] = scale  # type: ignore[assignment]
# Benchmarks whose goal is absolute: their peer is null by design, not by failure.
NO_PEER = {"event_latency", "event_latency_other_region", "api_list", "bandwidth_cap", "scale"}

ANALYSIS_FILE = ROOT / "bench" / "analysis.md"  # hand-written reading of the figures, appended to the report


def failed_figure(name: str, exc: BaseException) -> Figure:
    return Figure(
        name=name,
        ferry=None,
        peer=None,
        unit="",
        sink="",
        peer_name=None,
        note=f"benchmark failed: {type(exc).__name__}: {str(exc)[-500:]}",
    )


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


FIGURE_KEYS = (
    "name",
    "ferry",
    "peer",
    "unit",
    "sink",
    "peer_name",
    "better",
    "goal",
    "note",
    "runs",
    "details",
    "date",
)


def load_figures(path: Path) -> tuple[dict, list[Figure]]:
    payload = json.loads(path.read_text())
    figures = [Figure(**{k: b[k] for k in FIGURE_KEYS if k in b}) for b in payload["benchmarks"]]
    return payload, figures


def run(
    sizes: Sizes,
    names: list[str],
    out: Path,
    *,
    work: Path = WORK,
    command: str = "python -m bench.run",
    merge: bool = False,
) -> list[Figure]:
    """Measure ``names`` and write both outputs to ``out``. With ``merge``, figures of other
    benchmarks already in ``out/benchmarks.json`` (same mode) are kept, each with its own date."""
    date = now()
    meta: dict[str, object] = {
        "mode": "quick" if sizes.quick else "full",
        "runs": sizes.runs,
        "command": command,
        "machine": report.machine(),
        "versions": report.versions(),
        "load_before": report.load(),
    }
    figures: list[Figure] = []
    verdicts: dict[str, bool | None] = {}
    with Env(work) as env:
        for name in names:
            started = time.monotonic()
            load_before = report.load()
            print(f"[bench] {name} …", flush=True)
            try:
                figure = BENCHMARKS[name].run(env, sizes)
            except Exception as exc:  # one broken benchmark must not lose the others' figures
                traceback.print_exc()
                figure = failed_figure(name, exc)
            figure.details["wall_seconds"] = round(time.monotonic() - started, 1)
            figure.details["load_average"] = f"{load_before} before, {report.load()} after"
            figure.date = now()
            try:
                verdicts[name] = BENCHMARKS[name].met(figure) if figure.ferry is not None else None
            except Exception:  # a verdict that can't be judged is n/a, not a lost run
                traceback.print_exc()
                verdicts[name] = None
            figure.details["goal_met"] = verdicts[name]
            figures.append(figure)
            print(
                f"[bench] {name}: ferry {figure.ferry} peer {figure.peer} {figure.unit} ratio {figure.ratio}"
                f" ({figure.details['wall_seconds']} s) {figure.note[:200]}",
                flush=True,
            )
    meta["load_after"] = report.load()
    if ANALYSIS_FILE.exists() and not sizes.quick:
        meta["analysis"] = ANALYSIS_FILE.read_text()
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "benchmarks.json"
    if merge and previous.exists():
        payload, kept = load_figures(previous)
        if payload.get("mode") == meta["mode"]:
            fresh = {f.name: f for f in figures}
            old_names = [f.name for f in kept]
            figures = [fresh.get(f.name, f) for f in kept] + [f for f in figures if f.name not in old_names]
            figures.sort(key=lambda f: list(BENCHMARKS).index(f.name) if f.name in BENCHMARKS else 99)
            verdicts = {f.name: verdicts.get(f.name, f.details.get("goal_met")) for f in figures}  # type: ignore[misc]
            meta["load_before"] = f"{payload.get('load_before')} / {meta['load_before']}"
    report.write_json(out / "benchmarks.json", figures, date, {k: v for k, v in meta.items() if k != "analysis"})
    report.write_markdown(out / "BENCHMARKS.md", figures, verdicts, date, meta)
    return figures


def render(out: Path) -> None:
    """Rewrite BENCHMARKS.md from benchmarks.json (after editing bench/analysis.md), without
    measuring again."""
    payload, figures = load_figures(out / "benchmarks.json")
    verdicts = {f.name: f.details.get("goal_met") for f in figures}  # type: ignore[misc]
    meta = {k: v for k, v in payload.items() if k not in ("benchmarks", "date")}
    if ANALYSIS_FILE.exists() and meta.get("mode") == "full":
        meta["analysis"] = ANALYSIS_FILE.read_text()
    report.write_markdown(out / "BENCHMARKS.md", figures, verdicts, payload["date"], meta)  # type: ignore[arg-type]


def cleanup(work: Path) -> None:
    """Remove the generated data (GiB of it); keys and logs are small and stay."""
    for sub in ("sshd/data", "s3", "local"):
        shutil.rmtree(work / sub, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1")
    parser.add_argument("--only", help="comma-separated benchmark names", default=",".join(BENCHMARKS))
    parser.add_argument("--out", type=Path, help="where to write BENCHMARKS.md and benchmarks.json")
    parser.add_argument("--runs", type=int, help="runs per figure (at least 3 for published figures)")
    parser.add_argument("--keep-data", action="store_true", help="keep the generated files for the next run")
    parser.add_argument("--merge", action="store_true", help="keep other benchmarks' figures already in --out")
    parser.add_argument("--render", action="store_true", help="only rewrite BENCHMARKS.md from benchmarks.json")
    args = parser.parse_args(argv)
    sizes = Sizes.quick_sizes() if args.quick else Sizes.full()
    if args.runs:
        sizes = Sizes(**{**sizes.__dict__, "runs": args.runs})
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    out = args.out or (WORK / "quick" if args.quick else ROOT / "docs")
    if args.render:
        render(out)
        return 0
    command = "BENCH_QUICK=1 make bench" if args.quick else "make bench"
    free = shutil.disk_usage(ROOT).free
    need = 2 * (max(sizes.memory) + sizes.throughput)
    if free < need:
        print(f"[bench] only {free >> 30} GiB free; the benchmarks need about {need >> 30} GiB", file=sys.stderr)
        return 1
    try:
        figures = run(sizes, names, out, command=command, merge=args.merge)
    finally:
        if not args.keep_data:
            cleanup(WORK)
    print(f"[bench] wrote {out / 'BENCHMARKS.md'} and {out / 'benchmarks.json'}")
    return 0 if all(f.peer is not None or (f.name in NO_PEER and f.ferry is not None) for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
