"""Smoke test of the benchmark: `scripts/bench.py --quick` runs end to end and prints its table.

No timing assertions: the figures depend on the machine; this only checks that the benchmark works.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"\d+(\.\d+)?")


def test_quick_bench_prints_a_table_of_numbers(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| metric")
    }
    for metric in (
        "non-stream latency p50 (ms)",
        "stream first token p50 (ms)",
        "throughput (req/s, C=4)",
        "20 concurrent streams: first text p50 (ms)",
        "20 concurrent streams: chunk delay p50 (ms)",
    ):
        assert all(NUMBER.match(cell) for cell in rows[metric]), rows[metric]
    for metric in ("peak RSS, VmHWM (MB)", "CPU per non-stream request (ms)", "CPU per stream (ms)"):
        assert NUMBER.match(rows[metric][1]), rows[metric]
    results = json.loads(out.read_text())["results"]
    assert results["direct"]["latency_p50_ms"] > 0 and results["bridge"]["rps"] > 0
    assert all(r["errors"] == 0 for r in results.values())
    # every stamped chunk of every concurrent stream arrived, once and in order, through each target
    assert all(r["concurrent_broken_streams"] == 0 and r["concurrent_chunks"] == 20 * 20 for r in results.values())
    assert results["bridge"]["cpu_per_request_ms"] > 0
    assert 0 < results["bridge"]["overhead_header_p50_ms"] < results["bridge"]["latency_p50_ms"]
