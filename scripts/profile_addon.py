"""A mitmdump script that profiles the bridge only while asked: `-s scripts/profile_addon.py`.

SIGUSR1 starts cProfile on the event loop's thread, SIGUSR2 stops it and writes the profile to the
path in `LLMBRIDGE_PROFILE_OUT`. `scripts/stream_profile.py` uses it to profile a stream round alone,
without start-up or the sequential requests (what `cProfile -o` over the whole process would mix in).

No mitmproxy import: a plain module-level signal handler is enough, as Python runs it on the main
thread, which is the thread mitmproxy's event loop runs on.
"""

from __future__ import annotations

import cProfile
import os
import signal
from types import FrameType

profiler: cProfile.Profile | None = None


def _start(signum: int, frame: FrameType | None) -> None:
    global profiler
    profiler = cProfile.Profile()
    profiler.enable()


def _stop(signum: int, frame: FrameType | None) -> None:
    global profiler
    if profiler is None:
        return
    profiler.disable()
    out = os.environ.get("LLMBRIDGE_PROFILE_OUT", "bridge-stream.prof")
    profiler.dump_stats(out + ".part")
    os.replace(out + ".part", out)  # the harness waits for the file: it appears whole
    profiler = None


signal.signal(signal.SIGUSR1, _start)
signal.signal(signal.SIGUSR2, _stop)
