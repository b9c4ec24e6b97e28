"""The run side of "nothing lost" (issue 12): each fault reproduced, then held off.

* Two runs on one plan: a step executed by one is never executed by the other
  at the same time (claims under ``.dotasks/claims/``).
* Background state deleted (``rm -rf .dotasks``, ``git clean -X``): no second
  copy of a body that still runs; a lost one is marked failed, its orphan stopped.
* ``monitor:`` hazards: a named pipe, a huge existing log, old alerts.
* Output: 5 MB of it is captured as a bounded tail; ``-v`` live lines are throttled.
* A bad ``--task-log``: a usage error before any step runs.

Runs that are killed, concurrent or may hang are real subprocesses with generous
hang guards; nothing here asserts a duration.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]


def header(text: str, n: int) -> str:
    for line in text.splitlines():
        if re.match(rf"^\s*[-*+] \[[ xX]\] \*\*STEP {n}\*\*", line):
            return line
    raise AssertionError(f"no header for STEP {n}")


def log_entries(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def wait_for(pred, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def run(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYTEST, *args], cwd=root, capture_output=True, text=True, timeout=timeout, check=False)


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "INTERNALERROR" not in text, text


# --------------------------------------------------------------------------- 10. output


def test_big_output_is_captured_as_a_bounded_tail(pytester: pytest.Pytester) -> None:
    """5 MB of output from a failing step. Before: all of it in the failure report."""
    (pytester.path / "SPEC.md").write_text(
        "- [ ] **STEP 1**: Loud\n  - run: yes 'a line of output' | head -c 5000000; echo the last words; exit 3\n")
    res = run(pytester.path, "--spec", "SPEC.md")
    assert res.returncode == 1, res.stdout[-2000:]
    assert len(res.stdout) < 200_000, f"{len(res.stdout):,} characters of report"
    assert "bytes of earlier output not shown here" in res.stdout
    assert "the last words" in res.stdout
    out_file = next((pytester.path / ".dotasks" / "output").glob("task_1_*.log"))
    assert out_file.stat().st_size == 5_000_000 + len("the last words\n")  # the whole output is kept


def test_live_lines_under_v_are_throttled(pytester: pytest.Pytester) -> None:
    """200,000 lines under -v. Before: 200,000 terminal lines."""
    (pytester.path / "SPEC.md").write_text("- [ ] **STEP 1**: Chatty\n  - run: seq 200000\n")
    res = run(pytester.path, "--spec", "SPEC.md", "-v")
    assert res.returncode == 0, res.stdout[-2000:]
    live = [ln for ln in res.stdout.splitlines() if "→" in ln]
    assert len(live) < 2000, f"{len(live)} live lines"
    assert any("lines not shown" in ln for ln in live), live[-5:]
    assert live[-1].endswith("→ 200000"), live[-3:]  # the last lines always come through
