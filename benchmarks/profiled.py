"""Run a Python module or script with cProfile switched on and off by signals.

    python benchmarks/profiled.py OUT -m aioqueue.cli worker ...
    python benchmarks/profiled.py OUT benchmarks/ceiling_worker.py QUEUE ...

SIGUSR1 starts profiling the main thread (where the event loop runs); SIGUSR2 stops it
and writes the stats to OUT. So a worker process's profile covers a benchmark's timed
window only, without its start-up, warm-up or shutdown.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time
from types import FrameType

USAGE = "usage: profiled.py OUT (-m MODULE | SCRIPT) [ARGS...]"


def main() -> None:
    if len(sys.argv) < 3 or (sys.argv[2] == "-m" and len(sys.argv) < 4):
        raise SystemExit(USAGE)
    out = sys.argv[1]
    # CPU time of the thread, not wall time: on a loaded machine, time spent waiting
    # for a core would otherwise land on whatever function was running.
    profiler = cProfile.Profile(time.thread_time)

    def start(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    if sys.argv[2] == "-m":
        module, sys.argv = sys.argv[3], [sys.argv[3], *sys.argv[4:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script, sys.argv = sys.argv[2], sys.argv[2:]
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
