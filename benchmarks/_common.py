"""Shared helpers for the benchmark scripts (stdlib only; figures are printed, never asserted).

Every benchmark runs pytest in a fresh temporary folder as a child process, the
way a user does, and reports the median of a few repeats (this is a shared,
noisy machine: the minimum is printed too, as the least disturbed figure).

Child processes get the caller's environment with two changes, applied to both
sides of every comparison:

* ``PYTHONDONTWRITEBYTECODE`` is removed, so imports use ``.pyc`` caches the way
  they do for a normal user (each script does one warm-up run first);
* ``-p no:cacheprovider -p no:hypothesispytest`` is passed: the cache plugin
  writes ``.pytest_cache`` and Hypothesis' pytest plugin imports all of
  Hypothesis at the end of every run (hundreds of ms here); neither is ours.
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

PYTEST_BASE = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest"]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    env.update(extra)
    return env


@contextlib.contextmanager
def workdir(prefix: str = "dotasks-bench-") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)


class Timing(float):
    """Wall seconds (the float value) with the child's CPU seconds (user+sys) in ``.cpu``.

    On a shared machine the CPU time of the child is much steadier than the
    wall time, so comparisons of startup costs are made on both.
    """

    cpu: float

    def __new__(cls, wall: float, cpu: float) -> Timing:  # noqa: PYI034 - Self needs Python 3.11
        obj = super().__new__(cls, wall)
        obj.cpu = cpu
        return obj


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 300) -> tuple[Timing, subprocess.CompletedProcess[str]]:
    """Run ``cmd``; (Timing, result). CPU time counts the child and its waited-for descendants."""
    c0 = _children_cpu()
    t0 = time.perf_counter()
    res = subprocess.run(list(cmd), cwd=cwd, env=env or child_env(), text=True, capture_output=True,
                         timeout=timeout, check=False)
    dt = Timing(time.perf_counter() - t0, _children_cpu() - c0)
    if check and res.returncode not in (0, 5):  # 5: no tests collected
        sys.stderr.write(res.stdout[-3000:] + res.stderr[-3000:])
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(cmd)}")
    return dt, res


def pytest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *PYTEST_BASE, *args]


def repeat(fn: Callable[[], float], n: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    return [fn() for _ in range(n)]


def summary(samples: Sequence[float]) -> tuple[float, float]:
    """(median, min)."""
    return statistics.median(samples), min(samples)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:7.3f} s"


def header(title: str) -> None:
    print()
    print(title)
    print("=" * len(title))


def table(rows: Sequence[Sequence[object]], head: Sequence[str]) -> None:
    cells = [[str(c) for c in head]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for k, r in enumerate(cells):
        print("  " + "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))


def machine() -> str:
    import platform

    return (f"python {platform.python_version()}, {os.cpu_count()} cpus, {platform.system()} "
            f"{platform.release()}, load avg {os.getloadavg()[0]:.2f}")


def plan_text(n: int, run: str = "true", chain: bool = True, fields: bool = True, phases: int = 100) -> str:
    """A plan of ``n`` steps shaped like real ones: a phase heading every ``phases`` steps,
    a line of description, a few fields."""
    lines = ["# Benchmark plan", "", "Prose before the steps, as real plans have.", ""]
    for k in range(1, n + 1):
        if phases and k % phases == 1:
            lines += [f"## Phase {k // phases + 1}: part {k // phases + 1}", ""]
        lines.append(f"- [ ] **STEP {k}**: Step number {k}")
        if fields:
            lines.append(f"  Describe what step {k} does, in a sentence or two.")
            if not chain:
                lines.append("  - needs: none")
            lines.append(f"  - run: {run}")
            lines.append("  - kind: quick")
        else:
            lines.append(f"  - run: {run}")
        lines.append("")
    return "\n".join(lines)


def python_tests(folder: Path, n: int, per_file: int = 100) -> None:
    """``n`` trivial Python tests in files of ``per_file``."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in range((n + per_file - 1) // per_file):
        count = min(per_file, n - f * per_file)
        body = "".join(f"def test_{i}():\n    assert True\n\n\n" for i in range(count))
        (folder / f"test_mod{f:03d}.py").write_text(body)
