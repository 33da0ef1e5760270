"""One Ferry operation in its own process: ``python -m bench.ferry_child '<json request>'``.

Imports the engine exactly as a worker would (no Django), notes the resident memory once
imported ("idle"), runs the operation through ``engine.copy``, and prints one JSON
line: the seconds the call took (connections included: the pool starts cold), the idle and
peak RSS (VmHWM), and what the engine returned.

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

    options = engine.CopyOptions(**request.get("options", {}))
    idle = status_kib("VmRSS")
    op = request["op"]
    start = time.perf_counter()
    if op == "copy":
        result = engine.copy(
            loc(request["source"]),
            loc(request["destination"]),
            transfer_id=request.get("transfer_id") or uuid.uuid4().hex,
            options=options,
        )
        seconds = time.perf_counter() - start
        report = {"sha256": result.sha256, "size": result.size, "outcome": result.outcome}
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
        # Ferry's SFTP read path as a copy uses it (pooled session, sftpio.read_stream with the
        # default requests in flight, SHA-256 of the stream) into a local file, like `sftp get`.
        import hashlib

        from engine import runtime, sftpio
        from engine.pool import get_pool

        source = loc(request["source"])

        async def read() -> tuple[str, int]:
            h, n = hashlib.sha256(), 0
            async with get_pool().session(source.spec) as session:
                with open(request["local"], "wb") as out:
                    stream = sftpio.read_stream(session.sftp, source.path, in_flight=options.sftp_requests_in_flight)
                    async for chunk in stream:
                        h.update(chunk)
                        out.write(chunk)
                        n += len(chunk)
            return h.hexdigest(), n

        sha, size = runtime.run(read())
        seconds = time.perf_counter() - start
        report = {"sha256": sha, "size": size}
    else:
        raise SystemExit(f"unknown op {op!r}")
    return {**report, "seconds": seconds, "idle_rss_kib": idle, "hwm_kib": status_kib("VmHWM")}


if __name__ == "__main__":
    arg = sys.argv[1]
    # "@file": a request too long for one argument (a thousand small files' items).
    text = open(arg[1:]).read() if arg.startswith("@") else arg  # noqa: SIM115
    print("BENCH-RESULT " + json.dumps(main(json.loads(text))), flush=True)
