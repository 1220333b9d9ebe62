"""Smoke test of `scripts/stream_profile.py`: a small run end to end, profile included.

No timing assertions: the figures depend on the machine; this checks that the harness measures a
real bridge (CPU used, every chunk once and in order) and that the profile it asks for by signal is
written and broken down.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_run_reports_cpu_per_chunk_and_a_profile_breakdown(tmp_path):
    out, profile = tmp_path / "figures.json", tmp_path / "round.prof"
    args = ["--rounds", "1", "--streams", "4", "--chunks", "20", "--gap-ms", "5", "--requests", "20"]
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "stream_profile.py"),
            *args,
            "--json",
            str(out),
            "--profile",
            str(profile),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    [round_] = figures["rounds"]
    assert figures["errors"] == 0 and figures["cpu_per_request_ms"] > 0
    assert round_["streams"] == 4 and round_["chunks"] == 4 * 20 and round_["broken"] == 0
    assert round_["cpu_per_stream_ms"] > 0 and round_["first_text_p50_ms"] > 0
    assert profile.exists()
    assert "| mitmproxy HTTP layers |" in done.stdout and "| llmbridge relay |" in done.stdout
