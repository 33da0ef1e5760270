"""bench.scale works end to end on tiny inputs (no timing is asserted): a folder on the real
sshd becomes transfers sent to the moto server's SQS, the keeper sends a seeded backlog, and
claims run on an empty and a seeded ledger table."""

from __future__ import annotations

import json
import uuid

from bench import run, scale, stack
from bench.common import Sizes


def test_the_scale_benchmark_measures_its_three_parts(tmp_path, monkeypatch):
    database = f"ferry_bench_scale_smoke_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("FERRY_BENCH_SCALE_DATABASE", database)
    try:
        (figure,) = run.run(Sizes.tiny(), ["scale"], tmp_path / "out", work=tmp_path / "work")
    finally:
        stack.drop_database(database)
    n = scale.scale_sizes(Sizes.tiny())
    assert figure.ferry is not None and figure.ferry > 0, figure.note
    assert figure.peer is None and "scale" in run.NO_PEER
    d = figure.details
    assert d["files"] == n.files and d["sqs_messages_for_the_folder"] == [-(-n.files // 32)]
    assert set(d["peak_rss_mib"]) == {str(n.files // 10), str(n.files)}
    assert d["keeper_dispatched"] == n.pending == d["keeper_sqs_messages"]
    assert d["keeper_max_tick_seconds"] > 0
    assert d["ledger_entries"] == n.ledger_entries + n.claims + 10  # seeded, then the claims (10 warm-up)
    assert d["claim_ms_full"]["p50"] > 0 and d["claim_ms_empty"]["p50"] > 0
    assert "Seq Scan" in d["keeper_plans"]["due"] or "Index" in d["keeper_plans"]["due"]
    payload = json.loads((tmp_path / "out" / "benchmarks.json").read_text())
    assert [b["name"] for b in payload["benchmarks"]] == ["scale"]
