"""One Ferry operation in its own process: ``python -m bench.ferry_child '<json request>'``.

Imports the engine exactly as a worker would (no Django), notes the resident memory once
imported ("idle"), runs the operation through ``engine.copy``, and prints one JSON
line: the seconds the call took (connections included: the pool starts cold), its CPU
seconds (``cpu_seconds``), the idle and peak RSS (VmHWM), and what the engine returned.

Request: ``{"op": "copy" | "copy_many", "sftp": {...SftpSpec}, "s3": {...S3Spec},
"source": LOC, "destination": LOC, "items": [[LOC, LOC, transfer_id], ...], "options": {...}}``
where LOC is ``{"sftp": "/abs/path"}`` or ``{"s3": "key"}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and of its reaped children."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class ChildPeaks:
    """The largest VmHWM seen among this process's ``gpg`` children, sampled every 20 ms
    (``RUSAGE_CHILDREN`` would count the forked Python's pages from before the exec)."""

    def __init__(self) -> None:
        import threading

        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.02):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/status") as f:
                        fields = dict(line.split(":", 1) for line in f if ":" in line)
                except OSError:
                    continue
                if fields.get("PPid", "").strip() == me and fields.get("Name", "").strip() == "gpg":
                    self.peak_kib = max(self.peak_kib, int(fields.get("VmHWM", "0 kB").split()[0]))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kib


def main(request: dict) -> dict:
    from bench.batch import copy_many
    from engine import copy as engine
    from engine.config import EngineConfig, configure
    from engine.locations import S3Location, SftpLocation
    from engine.spec import S3Spec, SftpSpec

    # The engine reads no environment: the benchmark hands it the policy it ran under
    # before (the engine's former defaults; path-style addressing for rclone serve s3).
    configure(
        EngineConfig(
            connect_timeout=10.0,
            read_timeout=60.0,
            addressing_style=os.environ.get("FERRY_S3_ADDRESSING_STYLE", "auto"),
        )
    )

    sftp = SftpSpec(**{**request["sftp"], "host_keys": tuple(request["sftp"]["host_keys"])})
    s3 = S3Spec(**request["s3"])

    def loc(d: dict):
        return SftpLocation(sftp, d["sftp"]) if "sftp" in d else S3Location(s3, d["s3"])

    transforms: tuple = ()
    if "pgp" in request:
        # OpenPGP on the copy (bench/pgp_encrypt.py): keys handed in as the worker would.
        from engine import pgp

        step = pgp.PgpStep(
            encrypt_to=tuple(pgp.PgpKey(**k) for k in request["pgp"].get("encrypt_to", [])),
            armor=bool(request["pgp"].get("armor")),
        )
        transforms = tuple(pgp.transforms(step))
    chosen = dict(request.get("options", {}))
    if os.environ.get("BENCH_SFTP_STREAMS"):
        # A/B knob for the ranged streams of a big SFTP source (issue #14): 1 turns them off.
        chosen.setdefault("sftp_streams", int(os.environ["BENCH_SFTP_STREAMS"]))
    options = engine.CopyOptions(**chosen, transforms=transforms)
    idle = status_kib("VmRSS")
    peaks = ChildPeaks() if "pgp" in request else None
    op = request["op"]
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    if op == "copy":
        result = engine.copy(
            loc(request["source"]),
            loc(request["destination"]),
            transfer_id=request.get("transfer_id") or uuid.uuid4().hex,
            options=options,
        )
        seconds = time.perf_counter() - start
        report = {
            "sha256": result.sha256,
            "source_sha256": result.source_sha256,
            "size": result.size,
            "outcome": result.outcome,
        }
    elif op == "copy_many":
        items = [(loc(s), loc(d), tid) for s, d, tid in request["items"]]
        results = copy_many(items, options=options, concurrency=request.get("concurrency", 8))
        seconds = time.perf_counter() - start
        failed = [repr(r) for r in results if not hasattr(r, "sha256")]
        if failed:
            raise SystemExit(f"{len(failed)} of {len(results)} failed, first: {failed[0]}")
        report = {"count": len(results), "size": sum(r.size for r in results)}
    elif op == "copy_dir":
        # The folder is listed through the engine, as the scheduler would, inside the timed span.
        listed = True
        try:
            from engine.listing import list_files
        except ImportError:
            listed = False
        if listed:
            prefix = request["destination"]["s3"]
            files = list_files(loc(request["source"]))
            items = [
                (SftpLocation(sftp, f.path), S3Location(s3, prefix + f.path.rsplit("/", 1)[-1]), uuid.uuid4().hex)
                for f in files
            ]
        else:
            items = [(loc(s), loc(d), tid) for s, d, tid in request["fallback_items"]]
        results = copy_many(items, options=options, concurrency=request.get("concurrency", 8))
        seconds = time.perf_counter() - start
        failed = [repr(r) for r in results if not hasattr(r, "sha256")]
        if failed:
            raise SystemExit(f"{len(failed)} of {len(results)} failed, first: {failed[0]}")
        report = {"count": len(results), "size": sum(r.size for r in results), "listed": listed}
    elif op == "read":
        # Ferry's SFTP read path as a copy uses it (the source opened as a copy opens it:
        # pooled session, ranged streams for a big file, the size count and the SHA-256
        # off the loop) into a local file, like `sftp get`.
        from engine import runtime
        from engine.plumbing import Pipeline, Sessions, open_source

        source = loc(request["source"])

        async def read() -> tuple[str, int]:
            n = 0
            async with open_source(Sessions(), source, options) as src:
                pipeline = Pipeline(src, str(source))
                with open(request["local"], "wb") as out:
                    async for chunk in pipeline.chunks():
                        out.write(chunk)
                        n += len(chunk)
                return await pipeline.sha256(), n

        sha, size = runtime.run(read())
        seconds = time.perf_counter() - start
        report = {"sha256": sha, "size": size}
    else:
        raise SystemExit(f"unknown op {op!r}")
    # The operation's own CPU (every thread; no interpreter start or imports), read before
    # the gpg watcher stops.
    cpu = cpu_seconds() - cpu_before
    # The gpg process of an OpenPGP copy: its own peak RSS, apart from this process's.
    children = peaks.stop() if peaks else 0
    return {
        **report,
        "seconds": seconds,
        "cpu_seconds": round(cpu, 3),
        "idle_rss_kib": idle,
        "hwm_kib": status_kib("VmHWM"),
        "children_maxrss_kib": children,
    }


if __name__ == "__main__":
    arg = sys.argv[1]
    # "@file": a request too long for one argument (a thousand small files' items).
    text = open(arg[1:]).read() if arg.startswith("@") else arg  # noqa: SIM115
    print("BENCH-RESULT " + json.dumps(main(json.loads(text))), flush=True)
