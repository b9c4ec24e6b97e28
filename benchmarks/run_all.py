"""Run every benchmark in turn and print their figures (nothing is asserted).

Run: ``python benchmarks/run_all.py [--profile]`` (a few minutes here; each script
also runs alone, e.g. ``python benchmarks/bench_marking.py``). ``--profile`` adds
the cProfile sections of bench_collect and bench_steps.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_load.py", "bench_collect.py", "bench_steps.py", "bench_marking.py", "bench_parallel.py"]
PROFILED = {"bench_collect.py", "bench_steps.py"}


def main() -> int:
    profile = "--profile" in sys.argv[1:]
    print(f"pytest-dotasks benchmarks, {datetime.now().isoformat(timespec='seconds')}")
    failed = []
    t_all = time.perf_counter()
    for name in SCRIPTS:
        args = [sys.executable, str(HERE / name)]
        if profile and name in PROFILED:
            args.append("--profile")
        print(f"\n$ python benchmarks/{name}{' --profile' if len(args) > 2 else ''}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(args, cwd=HERE.parent)
        print(f"[{name}: {time.perf_counter() - t0:.1f} s{'' if rc == 0 else f', exit {rc}'}]", flush=True)
        if rc:
            failed.append(name)
    print(f"\nall benchmarks: {time.perf_counter() - t_all:.1f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
