"""Benchmark: what the bridge adds over calling a local fake upstream directly, measured in one run.

    scripts/bench [--quick] [--json PATH] [--profile PATH] [--many-streams N] [--rss-requests N] ...

Starts a fake OpenAI-compatible upstream (scripts/bench_upstream.py, its own process) and the real
bridge (`mitmdump -s addons/openai_bridge.py`, one `provider = "openai"` account pointed at the fake),
once with `record = false` and, when `llmbridge.recorder` exists, once recording to a temporary
database, and mitmproxy alone (a plain reverse proxy to the fake, every body streamed, no addon:
the floor under any gateway built on mitmproxy; `--no-floor` skips it). Every figure is set against
the direct call measured in the same run:

- non-stream latency, sequential: the targets take turns request by request, so drift hits them alike;
- streaming time to first `data:` line (the fake waits before its first chunk) and to the last byte;
- rounds of 20 concurrent streams (100 chunks 10 ms apart; `--quick`: 20 chunks, one round): time
  to first text, and each chunk's delay from the moment the fake wrote it (it stamps every chunk
  with CLOCK_MONOTONIC, which is system-wide) to the moment the client read it; every chunk must
  arrive once and in order (a stream that breaks this is counted as broken);
- CPU of the bridge process (utime + stime from /proc/<pid>/stat) per non-stream request (over the
  sequential phase) and per stream (over the concurrent rounds); per chunk: a stream's CPU less a
  request's, over the chunks of a stream;
- the `x-llmbridge-overhead-ms` header the bridge sets (its own time, upstream waits left out);
- requests per second with C concurrent clients (bounded by count and by time);
- the bridge process's RSS when idle (after start-up) and its peak (VmHWM).

Optional: `--many-streams N` (N streams at once, `--many-chunks` chunks `--many-gap-ms` apart; e.g.
200 x 100 at 50 ms, or 500 slow streams for memory) and `--rss-requests N` (RSS of the last bridge
after the first tenth of N requests and at the end: flat means no leak); `--processes N`
(throughput through HAProxy of one bridge process, then of N: `scripts/serve-many`, recording on).

Loopback only; everything it starts is stopped on the way out. `--profile PATH` also runs a bridge
under cProfile for a short load and prints its hot spots (profiling slows it; figures are not mixed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from llmbridge.launch import build

ROOT = Path(__file__).resolve().parents[1]
MITMDUMP = Path(sys.executable).parent / "mitmdump"
UPSTREAM_KEY = "sk-bench-upstream"
CLIENT_KEY = "sk-bench-client-0123456789"
FAST_MODEL = "bench-fast"
SLOW_MODEL = "bench-stream"
FIRST_TOKEN = b'w0 "'  # the fake's first text delta, as it appears in any JSON rendering
PROMPT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say something about foxes and dogs, please."},
]


@dataclass
class Plan:
    requests: int
    warmup: int
    streams: int
    rps_requests: int
    rps_seconds: float
    concurrency: int
    chunks: int
    first_chunk_ms: float
    chunk_gap_ms: float
    concurrent_streams: int = 20  # streams at once in each round of the concurrent phase
    concurrent_rounds: int = 3
    concurrent_chunks: int = 100
    concurrent_gap_ms: float = 10.0
    many_streams: int = 0  # the optional --many-streams scenario (0: skipped)
    many_chunks: int = 100
    many_gap_ms: float = 50.0
    rss_requests: int = 0  # the optional RSS-over-N-requests check (0: skipped)


@dataclass
class Target:
    name: str
    base_url: str  # ends in /v1
    key: str
    process: subprocess.Popen | None = None
    idle_rss_kb: int | None = None
    latency: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    stream_total: list[float] = field(default_factory=list)
    errors: int = 0
    rps: float | None = None
    rps_done: int = 0
    rps_latency: list[float] = field(default_factory=list)
    peak_rss_kb: int | None = None
    final_rss_kb: int | None = None
    overhead_ms: list[float] = field(default_factory=list)  # the bridge's x-llmbridge-overhead-ms
    cpu_per_request_s: float | None = None
    cpu_per_stream_s: float | None = None
    concurrent: StreamStats = field(default_factory=lambda: StreamStats())
    many: StreamStats = field(default_factory=lambda: StreamStats())
    many_peak_rss_kb: int | None = None
    rss_check: dict[str, Any] | None = None
    failures: dict[str, int] = field(default_factory=dict)  # what the failed concurrent streams met


@dataclass
class StreamStats:
    """Concurrent stamped streams: time to first text, and each chunk's delay from the moment the
    fake upstream wrote it (its CLOCK_MONOTONIC stamp) to the moment the client read it."""

    ttft: list[float] = field(default_factory=list)
    chunk_delay: list[float] = field(default_factory=list)
    streams: int = 0
    chunks: int = 0
    broken: int = 0  # streams with a chunk missing, repeated or out of order


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(workdir: Path) -> dict[str, str]:
    return dict(
        os.environ,
        LLMBRIDGE_HOME=str(workdir / "home"),
        HOME=str(workdir / "userhome"),
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )


def start_upstream(plan: Plan, workdir: Path) -> tuple[subprocess.Popen, str]:
    args = [
        sys.executable,
        str(ROOT / "scripts" / "bench_upstream.py"),
        "--api-key",
        UPSTREAM_KEY,
        "--chunks",
        str(plan.chunks),
        "--first-chunk-ms",
        str(plan.first_chunk_ms),
        "--chunk-gap-ms",
        str(plan.chunk_gap_ms),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=child_env(workdir))
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("listening on "):
        stop_process(proc)
        raise RuntimeError(f"fake upstream did not start (said {line!r})")
    return proc, f"http://127.0.0.1:{int(line.split()[-1])}/v1"


def write_bridge_config(path: Path, upstream_url: str, record: bool, database: Path, plan: Plan) -> Path:
    models = [
        FAST_MODEL,
        SLOW_MODEL,
        stamped_model(plan.concurrent_chunks, plan.concurrent_gap_ms),
        stamped_model(plan.many_chunks, plan.many_gap_ms),
    ]
    path.write_text(f"""api_keys = ["{CLIENT_KEY}"]
record = {"true" if record else "false"}
database = "{database}"

[[accounts]]
name = "bench"
provider = "openai"
api_key = "{UPSTREAM_KEY}"
base_url = "{upstream_url}"
models = {json.dumps(models)}
requests_per_minute = 100000
max_concurrent = 1000
""")
    return path


def start_bridge(
    workdir: Path, config: Path, profile: Path | None = None, extra: list[str] | None = None, timeout: float = 30
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    # The command line `llmbridge serve` runs (the safe defaults given to mitmdump up front).
    args = build(MITMDUMP, ["--set", f"listen_port={port}", "--set", f"bridge_config={config}", *(extra or [])]).argv
    if profile is not None:
        args = [sys.executable, "-m", "cProfile", "-o", str(profile)] + args
    log_path = workdir / f"bridge-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, cwd=workdir, env=child_env(workdir), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = log_path.read_text(errors="replace")
            raise RuntimeError(f"bridge exited with {proc.returncode}:\n{log}")
        if " is listening (" in log_path.read_text(errors="replace"):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc, port
            except OSError:
                pass
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"bridge did not start in {timeout}s:\n{log_path.read_text(errors='replace')}")


def start_plain_mitmproxy(workdir: Path, upstream_url: str, timeout: float = 30) -> tuple[subprocess.Popen, int]:
    """mitmproxy alone as a reverse proxy in front of the fake, every body streamed, no addon: the
    floor under any gateway built on mitmproxy (its HTTP/1 handling, hooks and forwarding)."""
    port = free_port()
    origin = upstream_url.removesuffix("/v1")
    args = [
        str(MITMDUMP),
        "-q",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "--mode",
        f"reverse:{origin}",
    ]
    args += [
        "--set",
        "flow_detail=0",
        "--set",
        "stream_large_bodies=1",
        "--set",
        f"confdir={workdir / 'plain-mitmproxy'}",
    ]
    proc = subprocess.Popen(
        args, cwd=workdir, env=child_env(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mitmdump (alone) exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"mitmdump (alone) did not start in {timeout}s")


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# ---------------------------------------------------------------- measurements


def stamped_model(chunks: int, gap_ms: float) -> str:
    return f"bench-stamp-{chunks}-{gap_ms:g}"


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15, in clock ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(target: Target) -> float | None:
    return cpu_seconds(target.process.pid) if target.process is not None else None


def body(model: str, stream: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": model, "messages": PROMPT, "stream": stream}
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return payload


def headers(target: Target) -> dict[str, str]:
    return {"authorization": f"Bearer {target.key}"}


def one_request(client: httpx.Client, target: Target) -> float | None:
    start = time.perf_counter()
    response = client.post(target.base_url + "/chat/completions", json=body(FAST_MODEL, False), headers=headers(target))
    elapsed = time.perf_counter() - start
    if response.status_code != 200 or "choices" not in response.json():
        target.errors += 1
        return None
    if (overhead := response.headers.get("x-llmbridge-overhead-ms")) is not None:
        target.overhead_ms.append(float(overhead) / 1000)
    return elapsed


def one_stream(client: httpx.Client, target: Target) -> tuple[float, float, float] | None:
    """Seconds to the first `data:` line, to the first text token and to the last byte."""
    start = time.perf_counter()
    first = token = None
    received = bytearray()
    with client.stream(
        "POST", target.base_url + "/chat/completions", json=body(SLOW_MODEL, True), headers=headers(target)
    ) as response:
        for chunk in response.iter_raw():
            received += chunk
            if first is None and b"data:" in received:
                first = time.perf_counter() - start
            if token is None and FIRST_TOKEN in received:
                token = time.perf_counter() - start
        total = time.perf_counter() - start
        if response.status_code != 200 or first is None or token is None or b"[DONE]" not in received:
            target.errors += 1
            return None
    return first, token, total


def sequential(targets: list[Target], plan: Plan) -> None:
    """Non-stream latency and stream TTFB; the targets take turns, in rotating order."""
    clients = {t.name: httpx.Client(trust_env=False, timeout=10) for t in targets}
    try:
        for _ in range(plan.warmup):
            for t in targets:
                one_request(clients[t.name], t)
                one_stream(clients[t.name], t)
        for t in targets:
            t.errors = 0
            t.overhead_ms.clear()
        cpu = {t.name: cpu_of(t) for t in targets}
        for i in range(plan.requests):
            for t in rotate(targets, i):
                if (elapsed := one_request(clients[t.name], t)) is not None:
                    t.latency.append(elapsed)
        for t in targets:  # the bridges idle while the others are served: their CPU is their own
            if (before := cpu[t.name]) is not None and (after := cpu_of(t)) is not None and plan.requests:
                t.cpu_per_request_s = (after - before) / plan.requests
        for i in range(plan.streams):
            for t in rotate(targets, i):
                if (times := one_stream(clients[t.name], t)) is not None:
                    t.ttfb.append(times[0])
                    t.ttft.append(times[1])
                    t.stream_total.append(times[2])
    finally:
        for client in clients.values():
            client.close()


def rotate(items: list[Target], i: int) -> list[Target]:
    k = i % len(items)
    return items[k:] + items[:k]


async def throughput(target: Target, plan: Plan) -> None:
    """C workers send non-stream requests until `rps_requests` are done or `rps_seconds` pass."""
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    url = target.base_url + "/chat/completions"
    payload = body(FAST_MODEL, False)
    remaining = plan.rps_requests
    async with httpx.AsyncClient(trust_env=False, timeout=10, limits=limits) as client:
        for _ in range(plan.concurrency):  # open the connections before the clock starts
            await client.post(url, json=payload, headers=headers(target))
        deadline = time.perf_counter() + plan.rps_seconds

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                start = time.perf_counter()
                try:
                    response = await client.post(url, json=payload, headers=headers(target))
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    target.rps_done += 1
                    target.rps_latency.append(time.perf_counter() - start)
                else:
                    target.errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
        target.rps = target.rps_done / (time.perf_counter() - start)


STAMP = re.compile(rb"w(\d+)@(\d+) ")


async def stamped_stream(
    client: httpx.AsyncClient, target: Target, model: str, chunks: int, stats: StreamStats
) -> None:
    """One stamped stream: time to its first text, each text chunk's delay, and whether every chunk
    came once and in order (a stamp split across two reads is found once the rest arrives)."""
    start = time.perf_counter()
    seen: list[int] = []
    delays: list[float] = []
    first: float | None = None
    tail = b""
    try:
        async with client.stream(
            "POST", target.base_url + "/chat/completions", json=body(model, True), headers=headers(target)
        ) as response:
            async for chunk in response.aiter_raw():
                now_ns = time.monotonic_ns()
                data = tail + chunk
                end = 0
                for match in STAMP.finditer(data):
                    if first is None:
                        first = time.perf_counter() - start
                    seen.append(int(match.group(1)))
                    delays.append((now_ns - int(match.group(2))) / 1e9)
                    end = match.end()
                tail = data[max(end, len(data) - 64) :]
            ok = response.status_code == 200
            failure = f"HTTP {response.status_code}"
    except httpx.HTTPError as e:
        ok, failure = False, type(e).__name__
    if not ok or first is None:
        target.errors += 1
        target.failures[failure] = target.failures.get(failure, 0) + 1
        return
    stats.streams += 1
    stats.chunks += len(seen)
    stats.ttft.append(first)
    stats.chunk_delay.extend(delays)
    if seen != list(range(chunks)):
        stats.broken += 1


async def concurrent_round(target: Target, model: str, streams: int, chunks: int, stats: StreamStats) -> None:
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(trust_env=False, timeout=60, limits=limits) as client:
        await asyncio.gather(*(stamped_stream(client, target, model, chunks, stats) for _ in range(streams)))


def concurrent_streams(targets: list[Target], plan: Plan) -> None:
    """Rounds of `concurrent_streams` streams at once, the targets taking turns round by round; the
    bridges' CPU over these rounds gives their CPU per stream."""
    model = stamped_model(plan.concurrent_chunks, plan.concurrent_gap_ms)
    for t in targets:  # warm-up round, not counted
        asyncio.run(concurrent_round(t, model, plan.concurrent_streams, plan.concurrent_chunks, StreamStats()))
    cpu_used = dict.fromkeys((t.name for t in targets), 0.0)
    for i in range(plan.concurrent_rounds):
        for t in rotate(targets, i):
            before = cpu_of(t)
            asyncio.run(concurrent_round(t, model, plan.concurrent_streams, plan.concurrent_chunks, t.concurrent))
            if before is not None and (after := cpu_of(t)) is not None:
                cpu_used[t.name] += after - before
    for t in targets:
        if t.process is not None and t.concurrent.streams:
            t.cpu_per_stream_s = cpu_used[t.name] / t.concurrent.streams


def many_streams(targets: list[Target], plan: Plan) -> None:
    """The optional scenario: `many_streams` streams at once (one round per target), and the peak
    RSS the bridge reached in it (VmHWM; it includes the earlier phases)."""
    model = stamped_model(plan.many_chunks, plan.many_gap_ms)
    for t in targets:
        print(f"bench: {plan.many_streams} concurrent streams through {t.name} ...", file=sys.stderr)
        asyncio.run(concurrent_round(t, model, plan.many_streams, plan.many_chunks, t.many))
        if t.process is not None:
            t.many_peak_rss_kb = proc_status_kb(t.process.pid, "VmHWM")


async def rss_check(target: Target, plan: Plan) -> None:
    """RSS after the first tenth of `rss_requests` non-stream requests (caches warm) and at the end."""
    assert target.process is not None
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    url = target.base_url + "/chat/completions"
    payload = body(FAST_MODEL, False)
    remaining = plan.rss_requests
    warm_at = plan.rss_requests - plan.rss_requests // 10
    warm_kb: int | None = None
    async with httpx.AsyncClient(trust_env=False, timeout=10, limits=limits) as client:

        async def worker() -> None:
            nonlocal remaining, warm_kb
            while remaining > 0:
                remaining -= 1
                if remaining == warm_at:
                    warm_kb = proc_status_kb(target.process.pid, "VmRSS")  # type: ignore[union-attr]
                response = await client.post(url, json=payload, headers=headers(target))
                if response.status_code != 200:
                    target.errors += 1

        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
    end_kb = proc_status_kb(target.process.pid, "VmRSS")
    if warm_kb and end_kb:
        target.rss_check = {
            "requests": plan.rss_requests,
            "after_first_tenth_mb": warm_kb / 1024,
            "at_end_mb": end_kb / 1024,
            "growth_percent": (end_kb - warm_kb) / warm_kb * 100,
        }


# ---------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def ms(values: list[float], q: float) -> float | None:
    value = pct(values, q)
    return None if value is None else value * 1000


def summary(target: Target) -> dict[str, Any]:
    return {
        "latency_p50_ms": ms(target.latency, 50),
        "latency_p95_ms": ms(target.latency, 95),
        "latency_mean_ms": statistics.fmean(target.latency) * 1000 if target.latency else None,
        "ttfb_p50_ms": ms(target.ttfb, 50),
        "ttfb_p95_ms": ms(target.ttfb, 95),
        "ttft_p50_ms": ms(target.ttft, 50),
        "ttft_p95_ms": ms(target.ttft, 95),
        "stream_total_p50_ms": ms(target.stream_total, 50),
        "rps": target.rps,
        "rps_requests_done": target.rps_done,
        "rps_latency_p50_ms": ms(target.rps_latency, 50),
        "rps_latency_p95_ms": ms(target.rps_latency, 95),
        "idle_rss_mb": kb_to_mb(target.idle_rss_kb),
        "peak_rss_mb": kb_to_mb(target.peak_rss_kb),
        "rss_after_mb": kb_to_mb(target.final_rss_kb),
        "overhead_header_p50_ms": ms(target.overhead_ms, 50),
        "overhead_header_p95_ms": ms(target.overhead_ms, 95),
        "cpu_per_request_ms": None if target.cpu_per_request_s is None else target.cpu_per_request_s * 1000,
        "cpu_per_stream_ms": None if target.cpu_per_stream_s is None else target.cpu_per_stream_s * 1000,
        "cpu_per_chunk_us": cpu_per_chunk_us(target),
        **stream_summary("concurrent", target.concurrent),
        **stream_summary("many", target.many),
        "many_peak_rss_mb": kb_to_mb(target.many_peak_rss_kb),
        "rss_check": target.rss_check,
        "stream_failures": target.failures,
        "samples": {"latency": len(target.latency), "streams": len(target.ttfb)},
        "errors": target.errors,
    }


def cpu_per_chunk_us(target: Target) -> float | None:
    """The CPU a streamed chunk costs: a stream's CPU less a non-stream request's (the per-request
    part both have), over the chunks a stream carries."""
    if target.cpu_per_stream_s is None or target.cpu_per_request_s is None or not target.concurrent.streams:
        return None
    per_stream_chunks = target.concurrent.chunks / target.concurrent.streams
    return max(0.0, target.cpu_per_stream_s - target.cpu_per_request_s) / per_stream_chunks * 1e6


def stream_summary(prefix: str, stats: StreamStats) -> dict[str, Any]:
    return {
        f"{prefix}_ttft_p50_ms": ms(stats.ttft, 50),
        f"{prefix}_ttft_p95_ms": ms(stats.ttft, 95),
        f"{prefix}_chunk_delay_p50_ms": ms(stats.chunk_delay, 50),
        f"{prefix}_chunk_delay_p95_ms": ms(stats.chunk_delay, 95),
        f"{prefix}_chunk_delay_max_ms": ms(stats.chunk_delay, 100),
        f"{prefix}_streams": stats.streams,
        f"{prefix}_chunks": stats.chunks,
        f"{prefix}_broken_streams": stats.broken,
    }


def kb_to_mb(kb: int | None) -> float | None:
    return None if kb is None else kb / 1024


ROWS = [  # (label, summary key, kind): "time" rows show +difference and ratio, "rate" rows show ratio
    ("non-stream latency p50 (ms)", "latency_p50_ms", "time"),
    ("non-stream latency p95 (ms)", "latency_p95_ms", "time"),
    ("stream first byte p50 (ms)", "ttfb_p50_ms", "time"),
    ("stream first token p50 (ms)", "ttft_p50_ms", "time"),
    ("stream first token p95 (ms)", "ttft_p95_ms", "time"),
    ("stream last byte p50 (ms)", "stream_total_p50_ms", "time"),
    ("{s} concurrent streams: first text p50 (ms)", "concurrent_ttft_p50_ms", "time"),
    ("{s} concurrent streams: first text p95 (ms)", "concurrent_ttft_p95_ms", "time"),
    ("{s} concurrent streams: chunk delay p50 (ms)", "concurrent_chunk_delay_p50_ms", "time"),
    ("{s} concurrent streams: chunk delay p95 (ms)", "concurrent_chunk_delay_p95_ms", "time"),
    ("{s} concurrent streams: chunk delay max (ms)", "concurrent_chunk_delay_max_ms", "time"),
    ("{s} concurrent streams: chunks / broken streams", "concurrent_chunks", "chunks"),
    ("CPU per non-stream request (ms)", "cpu_per_request_ms", "cpu"),
    ("CPU per stream (ms)", "cpu_per_stream_ms", "cpu"),
    ("CPU per streamed chunk (us)", "cpu_per_chunk_us", "cpu"),
    ("x-llmbridge-overhead-ms p50 / p95", "overhead_header_p50_ms", "overhead"),
    ("throughput (req/s, C={c})", "rps", "rate"),
    ("latency under load p50 (ms, C={c})", "rps_latency_p50_ms", "time"),
    ("idle RSS (MB)", "idle_rss_mb", "memory"),
    ("peak RSS, VmHWM (MB)", "peak_rss_mb", "memory"),
    ("errors", "errors", "count"),
]
MANY_ROWS = [
    ("{m} streams: first text p50 (ms)", "many_ttft_p50_ms", "time"),
    ("{m} streams: chunk delay p50 (ms)", "many_chunk_delay_p50_ms", "time"),
    ("{m} streams: chunk delay p95 (ms)", "many_chunk_delay_p95_ms", "time"),
    ("{m} streams: chunk delay max (ms)", "many_chunk_delay_max_ms", "time"),
    ("{m} streams: chunks / broken streams", "many_chunks", "chunks"),
    ("{m} streams: peak RSS, VmHWM (MB)", "many_peak_rss_mb", "memory"),
]


def cell(base: float | None, value: float | None, kind: str, row: dict[str, Any] | None = None, key: str = "") -> str:
    if value is None:
        return "-"
    if kind == "count":
        return str(value)
    if kind == "cpu":
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    if kind == "overhead" and row is not None:
        return f"{value:.2f} / {row['overhead_header_p95_ms']:.2f}"
    if kind == "chunks" and row is not None:  # key: <prefix>_chunks
        return f"{value} / {row[key.removesuffix('_chunks') + '_broken_streams']}"
    if kind == "memory" or base is None:
        return f"{value:.1f}"
    if kind == "rate":
        return f"{value:.0f} ({value / base:.2f}x)" if base else f"{value:.0f}"
    ratio = f", {value / base:.1f}x" if base else ""
    return f"{value:.2f} ({value - base:+.2f}{ratio})"


def table(results: dict[str, dict[str, Any]], plan: Plan) -> str:
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    direct = results["direct"]
    rows = ROWS + (MANY_ROWS if plan.many_streams else [])
    for label, key, kind in rows:
        cells = []
        for name in names:
            value = results[name][key]
            if name == "direct" and kind in ("time", "rate"):
                cells.append("-" if value is None else (f"{value:.2f}" if kind == "time" else f"{value:.0f}"))
            else:
                cells.append(cell(direct[key], value, kind, results[name], key))
        label = label.format(c=plan.concurrency, s=plan.concurrent_streams, m=plan.many_streams)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for name in names:
        if failures := results[name]["stream_failures"]:
            said = ", ".join(f"{count} x {what}" for what, count in failures.items())
            lines.append(f"\nconcurrent streams through {name} that failed: {said}")
        if (check := results[name]["rss_check"]) is not None:
            lines.append(
                f"\nRSS of {name} over {check['requests']} requests: {check['after_first_tenth_mb']:.1f} MB after "
                f"the first tenth, {check['at_end_mb']:.1f} MB at the end ({check['growth_percent']:+.1f}%)"
            )
    return "\n".join(lines)


def describe(plan: Plan) -> str:
    return (
        f"{plan.requests} sequential non-stream requests and {plan.streams} streams per target after "
        f"{plan.warmup} warm-up rounds; fake upstream streams {plan.chunks} chunks, first after "
        f"{plan.first_chunk_ms:g} ms, then {plan.chunk_gap_ms:g} ms apart; throughput: up to "
        f"{plan.rps_requests} requests or {plan.rps_seconds:g} s with {plan.concurrency} concurrent "
        "clients. Cells for the bridge: value (added ms, ratio to direct); 'first byte' is the first "
        f"`data:` line, 'first token' the first text delta. {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.machine()}."
    )


# ---------------------------------------------------------------- 1 process vs N behind HAProxy


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1 (bridge i listens on first + i)."""
    for _ in range(50):
        first = free_port()
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports")


def serve_many(workdir: Path, config: Path, count: int) -> tuple[subprocess.Popen, int]:
    """`scripts/serve-many count` with the bench's config; returns once HAProxy answers /health."""
    port, first = free_port(), free_port_block(count)
    run_dir = workdir / f"serve-many-{count}"
    args = [str(ROOT / "scripts" / "serve-many"), str(count), "--port", str(port), "--first-port", str(first)]
    args += ["--", "--set", f"bridge_config={config}"]
    env = dict(child_env(workdir), LLMBRIDGE_RUN_DIR=str(run_dir))
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scripts/serve-many {count} exited with {proc.returncode}; logs in {run_dir}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1, trust_env=False).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_group(proc)
    raise RuntimeError(f"scripts/serve-many {count} did not answer in 60 s; logs in {run_dir}")


def stop_group(proc: subprocess.Popen) -> None:
    """serve-many and every bridge and HAProxy it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def bridges_cpu_seconds(group: int) -> float:
    """CPU time (user + system) of the bridge processes serve-many started (its process group, less
    HAProxy and the script itself)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, rest = stat.read_text().rpartition(")")
        except OSError:
            continue
        fields = rest.split()
        comm = head.partition("(")[2]
        if int(fields[2]) == group and comm not in ("haproxy", "serve-many", "bash"):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def processes_scaling(workdir: Path, upstream_url: str, plan: Plan, count: int) -> str:
    """Throughput through HAProxy of one bridge process, then of `count` (recording on, one shared
    database), with the throughput phase's clients: the 1-vs-N figure of issue 17."""
    if shutil.which("haproxy") is None:
        return "1 vs N processes: skipped, haproxy is not installed (Debian: apt-get install haproxy)"
    rates, cpu = {}, {}
    for n in (1, count):
        config = write_bridge_config(
            workdir / f"bridge-many-{n}.toml", upstream_url, True, workdir / f"many-{n}.db", plan
        )
        proc, port = serve_many(workdir, config, n)
        try:
            target = Target(f"{n} behind HAProxy", f"http://127.0.0.1:{port}/v1", CLIENT_KEY)
            print(f"bench: throughput of {n} bridge process(es) behind HAProxy ...", file=sys.stderr)
            before = bridges_cpu_seconds(proc.pid)
            asyncio.run(throughput(target, plan))
            rates[n] = target.rps or 0.0
            # per request, over the requests timed and the C warm-up requests before the clock
            cpu[n] = (bridges_cpu_seconds(proc.pid) - before) / max(1, target.rps_done + plan.concurrency) * 1000
        finally:
            stop_group(proc)
    ratio = rates[count] / rates[1] if rates[1] else float("nan")
    return (
        f"throughput behind HAProxy (req/s, C={plan.concurrency}, recording on): 1 process {rates[1]:.0f}, "
        f"{count} processes {rates[count]:.0f} ({ratio:.2f}x) on {os.cpu_count()} CPUs shared with the "
        f"client and the fake upstream; bridge CPU per request: {cpu[1]:.2f} ms with 1 process, "
        f"{cpu[count]:.2f} ms with {count} (flat means N processes on N free cores give N times one)"
    )


# ---------------------------------------------------------------- profile


def profile_bridge(workdir: Path, upstream_url: str, out: Path, plan: Plan, extra: list[str]) -> str:
    config = write_bridge_config(workdir / "bridge-profile.toml", upstream_url, True, workdir / "profile.db", plan)
    proc, port = start_bridge(workdir, config, profile=out, extra=extra)
    try:
        target = Target("profiled", f"http://127.0.0.1:{port}/v1", CLIENT_KEY, proc)
        with httpx.Client(trust_env=False, timeout=10) as client:
            for _ in range(plan.requests):
                one_request(client, target)
            for _ in range(max(1, plan.streams // 2)):
                one_stream(client, target)
        model = stamped_model(plan.concurrent_chunks, plan.concurrent_gap_ms)
        asyncio.run(concurrent_round(target, model, plan.concurrent_streams, plan.concurrent_chunks, StreamStats()))
    finally:
        stop_process(proc, signal.SIGINT)
    if not out.exists():
        return "(the profiled bridge did not write its profile)"
    lines = []
    for sort in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(str(out), stream=text).sort_stats(sort).print_stats(25)
        lines.append(f"### bridge profile: top 25 by {sort}\n" + text.getvalue())
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        requests, warmup, streams, rps_requests, rps_seconds = 20, 3, 8, 100, 3.0
    else:
        requests, warmup, streams, rps_requests, rps_seconds = 300, 30, 100, 3000, 15.0
    requests = args.requests or requests
    return Plan(
        requests=requests,
        warmup=warmup,
        streams=args.streams or max(streams, 0),
        rps_requests=args.rps_requests or rps_requests,
        rps_seconds=args.rps_seconds or rps_seconds,
        concurrency=args.concurrency or (4 if args.quick else 16),
        chunks=args.chunks,
        first_chunk_ms=args.first_chunk_ms,
        chunk_gap_ms=args.chunk_gap_ms,
        concurrent_streams=args.concurrent_streams,
        concurrent_rounds=args.concurrent_rounds or (1 if args.quick else 3),
        concurrent_chunks=args.concurrent_chunks or (20 if args.quick else 100),
        concurrent_gap_ms=args.concurrent_gap_ms,
        many_streams=args.many_streams,
        many_chunks=args.many_chunks,
        many_gap_ms=args.many_gap_ms,
        rss_requests=args.rss_requests,
    )


def run(args: argparse.Namespace) -> int:
    plan = make_plan(args)
    workdir = Path(tempfile.mkdtemp(prefix="llmbridge-bench-"))
    started: list[subprocess.Popen] = []
    try:
        upstream, upstream_url = start_upstream(plan, workdir)
        started.append(upstream)
        targets = [Target("direct", upstream_url, UPSTREAM_KEY)]
        if not args.no_floor:
            proc, port = start_plain_mitmproxy(workdir, upstream_url)
            started.append(proc)
            targets.append(Target("mitmproxy alone", f"http://127.0.0.1:{port}/v1", UPSTREAM_KEY, proc))
        variants = [("bridge", False)]
        if args.no_record:
            pass
        elif importlib.util.find_spec("llmbridge.recorder") is not None:
            variants.append(("bridge + recorder", True))
        else:
            print("bench: llmbridge.recorder is not there: skipping the run with recording on", file=sys.stderr)
        for name, record in variants:
            n = len(targets)
            database = workdir / f"bench-{n}.db"
            config = write_bridge_config(workdir / f"bridge-{n}.toml", upstream_url, record, database, plan)
            proc, port = start_bridge(workdir, config, extra=args.mitmdump_arg)
            started.append(proc)
            targets.append(Target(name, f"http://127.0.0.1:{port}/v1", CLIENT_KEY, proc))
        time.sleep(0.5)  # let start-up settle before reading the idle RSS
        for t in targets:
            if t.process is not None:
                t.idle_rss_kb = proc_status_kb(t.process.pid, "VmRSS")
        print(f"bench: {len(targets)} targets; sequential latency and streaming ...", file=sys.stderr)
        sequential(targets, plan)
        print(f"bench: rounds of {plan.concurrent_streams} concurrent streams ...", file=sys.stderr)
        concurrent_streams(targets, plan)
        for t in targets:
            print(f"bench: throughput of {t.name} ...", file=sys.stderr)
            asyncio.run(throughput(t, plan))
        for t in targets:
            if t.process is not None:
                t.peak_rss_kb = proc_status_kb(t.process.pid, "VmHWM")
                t.final_rss_kb = proc_status_kb(t.process.pid, "VmRSS")
        if plan.many_streams:
            many_streams(targets, plan)
        if plan.rss_requests:
            full = targets[-1]  # the bridge with the most on (recording, unless --no-record)
            print(f"bench: RSS of {full.name} over {plan.rss_requests} requests ...", file=sys.stderr)
            asyncio.run(rss_check(full, plan))
        results = {t.name: summary(t) for t in targets}
        print("\n## llmbridge benchmark\n")
        print(table(results, plan))
        print("\n" + describe(plan))
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "plan": plan.__dict__,
                        "results": results,
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                    },
                    indent=2,
                )
            )
        if args.processes:
            for proc in started[1:]:  # the bridges above would compete for the CPUs
                stop_process(proc)
            print("\n" + processes_scaling(workdir, upstream_url, plan, args.processes))
        if args.profile:
            for proc in started[1:]:
                stop_process(proc)
            print("\n" + profile_bridge(workdir, upstream_url, Path(args.profile).resolve(), plan, args.mitmdump_arg))
        return 1 if any(t.errors for t in targets) else 0
    finally:
        for proc in reversed(started):
            stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure what the bridge adds over a direct call.")
    parser.add_argument("--requests", type=int, help="sequential non-stream requests per target (300)")
    parser.add_argument("--streams", type=int, help="sequential streaming requests per target (100)")
    parser.add_argument("--concurrency", type=int, help="concurrent clients for throughput (16)")
    parser.add_argument("--rps-requests", type=int, help="requests in the throughput phase (3000)")
    parser.add_argument("--rps-seconds", type=float, help="time cap of the throughput phase (15)")
    parser.add_argument("--chunks", type=int, default=20, help="text chunks per fake stream (20)")
    parser.add_argument("--first-chunk-ms", type=float, default=10.0, help="fake's wait before chunk 1 (10)")
    parser.add_argument("--chunk-gap-ms", type=float, default=1.0, help="fake's gap between chunks (1)")
    parser.add_argument("--concurrent-streams", type=int, default=20, help="streams at once per round (20)")
    parser.add_argument("--concurrent-rounds", type=int, help="rounds of concurrent streams per target (3)")
    parser.add_argument("--concurrent-chunks", type=int, help="text chunks per concurrent stream (100)")
    parser.add_argument("--concurrent-gap-ms", type=float, default=10.0, help="their gap, and first wait (10)")
    parser.add_argument(
        "--many-streams", type=int, default=0, metavar="N", help="also N streams at once, one round per target"
    )
    parser.add_argument("--many-chunks", type=int, default=100, help="text chunks per --many-streams stream (100)")
    parser.add_argument("--many-gap-ms", type=float, default=50.0, help="their gap, and first wait (50)")
    parser.add_argument(
        "--rss-requests", type=int, default=0, metavar="N", help="also RSS of the last bridge over N requests"
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for a CI smoke run")
    parser.add_argument("--no-record", action="store_true", help="skip the run with the recorder on")
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="N",
        help="also measure throughput of 1 and of N bridge processes behind HAProxy (scripts/serve-many)",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip mitmproxy alone (a plain reverse proxy: the floor under the bridge)",
    )
    parser.add_argument(
        "--mitmdump-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the bridge's mitmdump, repeatable (A/B experiments, e.g. "
        "--mitmdump-arg=-s --mitmdump-arg=experiment.py)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--profile", metavar="PATH", help="also profile a bridge with cProfile into PATH")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
