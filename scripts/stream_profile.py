"""What one streamed chunk costs the bridge, and where that time goes.

    scripts/stream_profile.py [--rounds 2] [--streams 20] [--chunks 100] [--gap-ms 10]
                              [--no-record] [--profile PATH] [--mitmdump-arg ARG ...]

`scripts/bench` measures everything at once; this isolates streaming. It starts the same fake
upstream and one real bridge (recording on unless `--no-record`), then:

- CPU per non-stream request: the bridge's utime + stime (/proc/<pid>/stat) over sequential
  requests;
- rounds of concurrent stamped streams, direct and through the bridge taking turns: time to first
  text and each chunk's delay (client read time less the fake's write stamp), every chunk checked
  once and in order, and the bridge's CPU over each round;
- CPU per chunk = (CPU per stream - CPU per request) / chunks per stream, for each round;
- with `--profile PATH`: one more bridge round under cProfile (started and stopped by signal through
  scripts/profile_addon.py, so start-up and the sequential requests stay out), then the time by
  part of the process (mitmproxy's HTTP layers, its proxy core and hooks, the relay, llmbridge's
  translation, the upstream client, the event loop, socket calls) and the top functions.

Prints one table; `--json PATH` also writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402  (scripts/bench.py: the processes and the stamped streams)

PROFILE_ADDON = Path(__file__).resolve().parent / "profile_addon.py"
# Where a function's time is counted, by the first fragment of its file name that matches.
PARTS = [
    ("mitmproxy/proxy/layers/http", "mitmproxy HTTP layers"),
    ("mitmproxy/net/http", "mitmproxy HTTP layers"),
    ("mitmproxy/http.py", "mitmproxy HTTP layers"),
    ("mitmproxy/proxy/", "mitmproxy proxy core (server, layer, commands)"),
    ("mitmproxy/addonmanager", "mitmproxy hooks and addons"),
    ("mitmproxy/", "mitmproxy other"),
    ("addons/openai_bridge", "llmbridge addon hooks"),
    ("llmbridge/relay", "llmbridge relay"),
    ("llmbridge/recorder", "llmbridge recorder"),
    ("llmbridge/", "llmbridge answer, translation, rendering"),
    ("httpx/", "upstream client (httpx, httpcore, h11)"),
    ("httpcore/", "upstream client (httpx, httpcore, h11)"),
    ("h11/", "upstream client (httpx, httpcore, h11)"),
    ("anyio/", "upstream client (httpx, httpcore, h11)"),
    ("asyncio/", "event loop (asyncio)"),
    ("selectors", "event loop (asyncio)"),
]
SOCKET_CALLS = ("send", "recv", "recv_into")
IDLE = "<method 'poll' of 'select.epoll' objects>"  # the loop waiting: wall time, not CPU


def part_of(filename: str, function: str) -> str:
    for fragment, part in PARTS:
        if fragment in filename:
            return part
    if filename == "~" and "_socket.socket" in function and any(f"'{name}'" in function for name in SOCKET_CALLS):
        return "socket send and recv"
    if filename == "~":
        return "built-ins (json, bytes, dict, ...)"
    return "other Python"


def breakdown(profile: Path, chunks: int) -> str:
    stats = pstats.Stats(str(profile))
    per_part: dict[str, float] = {}
    total = 0.0
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if function == IDLE:
            continue
        part = part_of(filename, function)
        per_part[part] = per_part.get(part, 0.0) + tottime
        total += tottime
    lines = [f"### profiled round: {total * 1000:.0f} ms busy (epoll waits left out), {chunks} chunks", ""]
    lines.append("| part | ms | share | µs per chunk |")
    lines.append("|---|---|---|---|")
    for part, seconds in sorted(per_part.items(), key=lambda item: -item[1]):
        share = seconds / total if total else 0.0
        lines.append(f"| {part} | {seconds * 1000:.0f} | {share:.0%} | {seconds / max(chunks, 1) * 1e6:.1f} |")
    text = io.StringIO()
    pstats.Stats(str(profile), stream=text).sort_stats("tottime").print_stats(30)
    return "\n".join(lines) + "\n\n### top 30 by own time\n" + text.getvalue()


def cpu_per_request(target: bench.Target, requests: int) -> float:
    with httpx.Client(trust_env=False, timeout=10) as client:
        for _ in range(20):  # warm-up
            bench.one_request(client, target)
        before = bench.cpu_of(target) or 0.0
        for _ in range(requests):
            bench.one_request(client, target)
        return ((bench.cpu_of(target) or 0.0) - before) / requests


def stream_round(target: bench.Target, args: argparse.Namespace, model: str) -> tuple[bench.StreamStats, float]:
    stats = bench.StreamStats()
    before = bench.cpu_of(target)
    asyncio.run(bench.concurrent_round(target, model, args.streams, args.chunks, stats))
    after = bench.cpu_of(target)
    used = (after - before) if before is not None and after is not None else 0.0
    return stats, used


def round_figures(
    stats: bench.StreamStats, cpu: float, request_cpu: float, direct: bench.StreamStats
) -> dict[str, Any]:
    per_stream = cpu / stats.streams if stats.streams else 0.0
    chunks_per_stream = stats.chunks / stats.streams if stats.streams else 1
    return {
        "cpu_per_stream_ms": per_stream * 1000,
        "cpu_per_chunk_us": max(0.0, per_stream - request_cpu) / chunks_per_stream * 1e6,
        "first_text_p50_ms": bench.ms(stats.ttft, 50),
        "first_text_added_p50_ms": _added(stats.ttft, direct.ttft, 50),
        "chunk_delay_p50_ms": bench.ms(stats.chunk_delay, 50),
        "chunk_delay_added_p50_ms": _added(stats.chunk_delay, direct.chunk_delay, 50),
        "chunk_delay_p95_ms": bench.ms(stats.chunk_delay, 95),
        "chunk_delay_max_ms": bench.ms(stats.chunk_delay, 100),
        "streams": stats.streams,
        "chunks": stats.chunks,
        "broken": stats.broken,
    }


def _added(values: list[float], direct: list[float], q: float) -> float | None:
    mine, theirs = bench.ms(values, q), bench.ms(direct, q)
    return None if mine is None or theirs is None else mine - theirs


def profile_round(target: bench.Target, args: argparse.Namespace, model: str, out: Path) -> str:
    assert target.process is not None
    out.unlink(missing_ok=True)
    target.process.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    stats, _ = stream_round(target, args, model)
    target.process.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not out.exists():
        return "(the bridge wrote no profile)"
    return breakdown(out, stats.chunks)


def run(args: argparse.Namespace) -> int:
    plan = bench.Plan(
        requests=0, warmup=0, streams=0, rps_requests=0, rps_seconds=0, concurrency=1, chunks=10,
        first_chunk_ms=0, chunk_gap_ms=0, concurrent_streams=args.streams, concurrent_chunks=args.chunks,
        concurrent_gap_ms=args.gap_ms,
    )  # fmt: skip
    model = bench.stamped_model(args.chunks, args.gap_ms)
    workdir = Path(tempfile.mkdtemp(prefix="llmbridge-stream-profile-"))
    started = []
    profile_out = Path(args.profile).resolve() if args.profile else None
    extra = list(args.mitmdump_arg)
    if profile_out is not None:
        extra += ["-s", str(PROFILE_ADDON)]
        os.environ["LLMBRIDGE_PROFILE_OUT"] = str(profile_out)
    try:
        upstream, upstream_url = bench.start_upstream(plan, workdir)
        started.append(upstream)
        config = bench.write_bridge_config(
            workdir / "bridge.toml", upstream_url, not args.no_record, workdir / "bench.db", plan
        )
        proc, port = bench.start_bridge(workdir, config, extra=extra)
        started.append(proc)
        direct = bench.Target("direct", upstream_url, bench.UPSTREAM_KEY)
        bridge = bench.Target("bridge", f"http://127.0.0.1:{port}/v1", bench.CLIENT_KEY, proc)
        request_cpu = cpu_per_request(bridge, args.requests)
        stream_round(bridge, args, model)  # warm-up round
        rounds = []
        for _ in range(args.rounds):
            direct_stats, _ = stream_round(direct, args, model)
            stats, cpu = stream_round(bridge, args, model)
            rounds.append(round_figures(stats, cpu, request_cpu, direct_stats))
        report = {"cpu_per_request_ms": request_cpu * 1000, "rounds": rounds, "errors": bridge.errors}
        print(table(report, args))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        if profile_out is not None:
            print("\n" + profile_round(bridge, args, model, profile_out))
        return 1 if bridge.errors or direct.errors or any(r["broken"] for r in rounds) else 0
    finally:
        for proc in reversed(started):
            bench.stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def table(report: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"{args.streams} concurrent streams x {args.chunks} chunks {args.gap_ms:g} ms apart; "
        f"CPU per non-stream request {report['cpu_per_request_ms']:.2f} ms",
        "",
        "| round | CPU/stream ms | CPU/chunk µs | first text p50 ms (added) | chunk delay p50 ms (added) "
        "| p95 | max | chunks | broken |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(report["rounds"], 1):
        lines.append(
            f"| {i} | {r['cpu_per_stream_ms']:.1f} | {r['cpu_per_chunk_us']:.0f} | "
            f"{_f(r['first_text_p50_ms'])} ({_f(r['first_text_added_p50_ms'], '+')}) | "
            f"{_f(r['chunk_delay_p50_ms'])} ({_f(r['chunk_delay_added_p50_ms'], '+')}) | "
            f"{_f(r['chunk_delay_p95_ms'])} | {_f(r['chunk_delay_max_ms'])} | {r['chunks']} | {r['broken']} |"
        )
    return "\n".join(lines)


def _f(value: float | None, sign: str = "") -> str:
    return "-" if value is None else f"{value:{sign}.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU per streamed chunk of the bridge, and where it goes.")
    parser.add_argument("--rounds", type=int, default=2, help="measured stream rounds (2)")
    parser.add_argument("--streams", type=int, default=20, help="concurrent streams per round (20)")
    parser.add_argument("--chunks", type=int, default=100, help="text chunks per stream (100)")
    parser.add_argument("--gap-ms", type=float, default=10.0, help="the fake's gap between chunks (10)")
    parser.add_argument("--requests", type=int, default=200, help="non-stream requests for CPU per request (200)")
    parser.add_argument("--no-record", action="store_true", help="the bridge without the recorder")
    parser.add_argument("--profile", help="also profile one bridge round (cProfile) to PATH and break it down")
    parser.add_argument("--json", help="also write the figures to PATH")
    parser.add_argument("--mitmdump-arg", action="append", default=[], help="extra mitmdump argument (repeatable)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
