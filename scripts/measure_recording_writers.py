"""Measures the recording database with several bridge processes: one SQLite file in WAL mode that
every process writes, against one file per process (README "Scale-out", the recording database).

Each writer process runs the bridge's own `Recorder` (its writer thread, its retries on a locked
database) and submits exchanges as fast as it can, each with a conversation of its own; the figures
are the exchanges written per second in all, the slowest process's time, and what was lost.

    .venv/bin/python scripts/measure_recording_writers.py [--processes 2 4] [--exchanges 400]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import tempfile
import time
from pathlib import Path

from llmbridge.exchange import AttemptRecord, ExchangeRecord
from llmbridge.recorder.recorder import Recorder


def exchange(writer: int, n: int) -> ExchangeRecord:
    """A small chat exchange like the bridge records (a request of ~1 KiB, a streamed answer)."""
    text = f"writer {writer} question {n}: " + "some context " * 80
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": text}], "stream": True}
    attempt = AttemptRecord(account="a", provider="openai", url="http://127.0.0.1/v1/chat/completions",
                            request_body=body, status=200, response_body=bytearray(b"data: {}\n\n" * 20))  # fmt: skip
    return ExchangeRecord(client_format="openai", endpoint="POST /v1/chat/completions", request_raw=body,
                          model_requested="gpt-test", model_served="gpt-test", provider="openai", account="a",
                          stream=True, attempts=[attempt], status=200, result={"text": f"answer {n}"})  # fmt: skip


def write(path: str, writer: int, count: int) -> tuple[float, float, dict[str, int]]:
    """(started, ended: epoch seconds, the recorder's counts) of one writer process."""
    records = [exchange(writer, n) for n in range(count)]
    recorder = Recorder(path)
    recorder.open()
    started = time.time()
    for record in records:
        recorder.submit(record)
    recorder.flush(timeout=600)
    ended = time.time()
    stats = recorder.stats
    recorder.close()
    return started, ended, stats


def run(folder: Path, processes: int, count: int, shared: bool) -> str:
    paths = [str(folder / ("shared.db" if shared else f"bridge-{i}.db")) for i in range(processes)]
    Recorder(paths[0]).open()  # the schema once, before the writers race to create it
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.starmap(write, [(paths[i], i, count) for i in range(processes)])
    # From the first writer's start to the last one's end: the writers' start-up (imports) is not counted.
    span = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    written = sum(sqlite3.connect(p).execute("select count(*) from exchanges").fetchone()[0] for p in set(paths))
    failed = sum(s.get("failed", 0) + s.get("dropped", 0) for _, _, s in results)
    slowest = max(end - start for start, end, _ in results)
    mode = "one shared WAL file" if shared else "one file per process"
    return (f"{processes} processes x {count}, {mode}: {written} written, {failed} lost, "
            f"{written / span:.0f} exchanges/s in all (slowest writer {slowest:.2f} s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--exchanges", type=int, default=400, help="per process")
    args = parser.parse_args()
    for processes in args.processes:
        for shared in (True, False):
            with tempfile.TemporaryDirectory() as folder:
                print(run(Path(folder), processes, args.exchanges, shared), flush=True)


if __name__ == "__main__":
    main()
