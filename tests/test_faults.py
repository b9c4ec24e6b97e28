"""The fault suite: kills, concurrent writers, a person's edits, and a hostile file system.

What DESIGN.md section 2 and 3 promise, checked under faults: SPEC.md is never
left partial and never carries two markers on a step; concurrent writers (two
pytest runs, xdist workers) never lose a marker or a log line; a person's edit
made during a run survives; a read-only plan, a full disk under the task log
and a plan deleted mid-run each give one clear line naming the file and the fix.

Runs that must be killed or run concurrently are real subprocesses; the rest
use pytester in-process. Kept under a minute on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from pytest_dotasks.plan.specmd import parse_file

pytest_plugins = ["pytester"]

# pytester drops the modules an in-process run imported; hypothesis's pytest
# plugin imports its whole package in every run's terminal summary. Imported
# once here, it stays.
with contextlib.suppress(ImportError):
    import hypothesis.internal.observability  # noqa: F401

# Subprocess runs: no cache dir, no hypothesis summary (not ours, and slow here).
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
HEADER = re.compile(rb"^(?P<lead>[-*+] \[)(?P<box>[ xX])(?P<label>\] \*\*STEP (?P<n>\d+)\*\*:)(?P<rest>.*)$")
MARK_START = re.compile(r" (?:✓|✗|⏳)")
SYMBOLS = ("✓", "✗", "⏳")
TMP_GLOB = ".SPEC.md.*.dotasks-tmp"


# --------------------------------------------------------------------------- helpers


def log_entries(path: Path) -> list[dict]:
    """Every line of the task log; each must be one whole JSON object."""
    out = []
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"blank line {k} in the task log"
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:  # pragma: no cover - the failure we look for
            raise AssertionError(f"task log line {k} is not whole JSON: {line!r}") from exc
    return out


def headers(data: bytes) -> dict[int, tuple[int, bytes]]:
    """Step number -> (line index, header line) for top-level header lines (not in a fence)."""
    out = {}
    fenced = False
    for i, line in enumerate(data.split(b"\n")):
        if line.startswith(b"```"):
            fenced = not fenced
        m = None if fenced else HEADER.match(line)
        if m:
            assert int(m["n"]) not in out, f"STEP {int(m['n'])} has two header lines"
            out[int(m["n"])] = (i, line)
    return out


def unmarked(line: bytes) -> bytes:
    """A header line as it was before any marker: box cleared, marker region dropped."""
    m = HEADER.match(line)
    assert m, line
    rest = m["rest"].decode("utf-8")
    cut = MARK_START.search(rest)
    if cut:
        rest = rest[: cut.start()]
    return m["lead"] + b" " + m["label"] + rest.encode("utf-8")


def symbols(line: bytes) -> int:
    text = line.decode("utf-8")
    return sum(text.count(s) for s in SYMBOLS)


def assert_intact(before: bytes, after: bytes, steps: int) -> dict[int, bytes]:
    """``after`` is ``before`` with at most the header lines re-marked; returns the headers."""
    b_lines, a_lines = before.split(b"\n"), after.split(b"\n")
    assert len(a_lines) == len(b_lines), "line count changed"
    b_heads, a_heads = headers(before), headers(after)
    assert sorted(a_heads) == list(range(1, steps + 1))
    head_index = {i for i, _ in a_heads.values()}
    assert head_index == {i for i, _ in b_heads.values()}, "header lines moved"
    for i, (x, y) in enumerate(zip(b_lines, a_lines)):
        if i not in head_index:
            assert x == y, f"line {i + 1} changed: {x!r} -> {y!r}"
    for n, (_, line) in a_heads.items():
        assert symbols(line) <= 1, f"STEP {n} carries two markers: {line!r}"
        assert unmarked(line) == unmarked(b_heads[n][1]), f"STEP {n}'s title changed: {line!r}"
        text = line.decode("utf-8")
        if symbols(line):  # a marker is whole: symbol, task id of this step, timestamp
            assert re.search(rf" (✓|✗ Failed|⏳ Running) \[task_id: task_{n}_[0-9a-f]{{8}}\] "
                             r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\]( .*)?$", text), text
    return {n: line for n, (_, line) in a_heads.items()}


def wait_for(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
    assert "INTERNALERROR" not in text, text


# --------------------------------------------------------------------------- kill -9


def kill_plan(steps: int = 30) -> str:
    lines = [
        "# Plan under fire   ",  # trailing spaces kept
        "",
        "Prose a person wrote — with ünïcode, `code` and trailing spaces.   ",
        "",
        "```markdown",
        "- [ ] **STEP 99**: an example inside a fence, never a step",
        "```",
        "",
        "## Phase 1: All of it",
        "",
    ]
    for n in range(1, steps + 1):
        lines += [f"- [ ] **STEP {n}**: Step {n} — sleeps a little", f"  Step {n}'s description.",
                  "  - run: sleep 0.05", ""]
    lines.append("Closing prose with no final newline")
    return "\n".join(lines)


def test_kill_9_at_random_moments_never_leaves_a_partial_plan(pytester: pytest.Pytester) -> None:
    """Six runs, each SIGKILLed a random 0.1-1.5 s after its first step started.

    The delay is counted from the first task-log line (start-up and collection
    write nothing, so a kill there proves nothing). Odd runs use --redo, so
    headers that already carry a marker are rewritten too.
    """
    steps = 30
    spec = pytester.path / "SPEC.md"
    spec.write_bytes(kill_plan(steps).encode("utf-8"))
    original = spec.read_bytes()
    log = pytester.path / ".task_execution.log"
    rng = random.Random(20261124)
    leftovers: list[str] = []
    killed_mid_run: list[bool] = []
    for k in range(6):
        delay = rng.uniform(0.1, 1.5)
        size0 = log.stat().st_size if log.exists() else 0
        lines0 = len(log_entries(log)) if log.exists() else 0
        args = [*PYTEST, "--spec", "SPEC.md", "-q", *(["--redo"] if k % 2 else [])]
        proc = subprocess.Popen(args, cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_for(lambda size0=size0: log.exists() and log.stat().st_size > size0, 30), "no step started"
            time.sleep(delay)
        finally:
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        marks = sum(1 for e in log_entries(log)[lines0:] if e.get("event") == "marked")
        killed_mid_run.append(alive and marks < steps)
        print(f"run {k}: killed {delay:.2f}s after its first step, {'while running' if alive else 'after it ended'}; "
              f"{marks} marks written")
        # SPEC.md parses, has every line, and only header lines changed (each whole, one marker).
        assert_intact(original, spec.read_bytes(), steps)
        parsed = parse_file(spec)
        assert [s.number for s in parsed.steps] == list(range(1, steps + 1))
        log_entries(log)  # every line whole JSON
        # At most one temporary file per kill: the one a kill mid-write leaves (temp file
        # written, not yet renamed). Earlier kills' leftovers are not cleaned up.
        found = sorted(p.name for p in pytester.path.glob(TMP_GLOB))
        new = [f for f in found if f not in leftovers]
        assert len(new) <= 1, new
        leftovers += new
        odd = [p.name for p in pytester.path.iterdir()
               if (p.name.startswith(".SPEC.md.") or "tmp" in p.name) and p.name not in found]
        assert not odd, odd
    assert sum(killed_mid_run) >= 4, killed_mid_run  # the kills landed among the steps
    # The next run finishes the plan; it ignores a temporary file a kill left behind.
    res = pytester.run(*PYTEST, "--spec", "SPEC.md", "-q", timeout=60)
    assert res.ret == 0, res.stdout.str()
    outcomes = res.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == steps, outcomes
    final = assert_intact(original, spec.read_bytes(), steps)
    assert all(symbols(line) == 1 and b"\xe2\x9c\x93 [task_id:" in line for line in final.values())
    assert "dotasks-tmp" not in res.stdout.str()
    if leftovers:
        warnings.warn(f"a kill mid-write left {leftovers} behind; the next run ignored it", stacklevel=1)


def test_a_temp_file_left_by_a_kill_mid_write_is_ignored(pytester: pytest.Pytester) -> None:
    """A kill between the temp file's creation and the rename leaves ``.SPEC.md.*.dotasks-tmp``
    (half written, perhaps). The next run neither collects nor trips over it."""
    spec = pytester.path / "SPEC.md"
    spec.write_text(THREE)
    half = THREE.encode()[: len(THREE) // 2]
    (pytester.path / ".SPEC.md.k1ll3d.dotasks-tmp").write_bytes(half)
    res = pytester.runpytest("--spec", "SPEC.md", "--collect-only", "-q")
    assert res.ret == 0 and "3 tests collected" in res.stdout.str(), res.stdout.str()
    pytester.makepyfile(test_plain="def test_ok():\n    pass\n")
    pytester.runpytest().assert_outcomes(passed=1)  # plain pytest in the same folder
    pytester.runpytest("--spec", "SPEC.md").assert_outcomes(passed=3)
    assert all(symbols(line) == 1 for _, line in headers(spec.read_bytes()).values())


# --------------------------------------------------------------------------- concurrent writers


def independent_plan(steps: int) -> str:
    lines = ["# Independent steps", "", "Prose.", ""]
    for n in range(1, steps + 1):
        lines += [f"- [ ] **STEP {n}**: Independent {n}", "  - needs: none", "  - run: true", ""]
    return "\n".join(lines)


def assert_each_marked_once(root: Path, original: bytes, steps: int) -> None:
    final = assert_intact(original, (root / "SPEC.md").read_bytes(), steps)
    entries = log_entries(root / ".task_execution.log")
    marked = [e for e in entries if e.get("event") == "marked"]
    assert len(marked) == steps, f"{len(marked)} 'marked' events for {steps} steps"
    assert sorted(e["step"] for e in marked) == list(range(1, steps + 1))
    for e in marked:
        line = final[e["step"]].decode("utf-8")
        assert symbols(final[e["step"]]) == 1 and f"✓ [task_id: {e['task_id']}]" in line, line
    starts = [e for e in entries if e.get("event") == "start"]
    assert len(starts) == steps and len({e["task_id"] for e in starts}) == steps


def test_two_concurrent_runs_on_disjoint_steps_lose_nothing(pytester: pytest.Pytester) -> None:
    steps = 40
    spec = pytester.path / "SPEC.md"
    spec.write_text(independent_plan(steps))
    original = spec.read_bytes()
    procs = [subprocess.Popen([*PYTEST, "--spec", "SPEC.md", "-q", "--steps", sel], cwd=pytester.path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for sel in ("1-20", "21-40")]
    outs = [p.communicate(timeout=90)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
        assert "20 passed" in out, out
    assert_each_marked_once(pytester.path, original, steps)


def test_xdist_workers_beside_a_concurrent_run_lose_nothing(pytester: pytest.Pytester) -> None:
    steps = 45
    spec = pytester.path / "SPEC.md"
    spec.write_text(independent_plan(steps))
    original = spec.read_bytes()
    procs = [subprocess.Popen([*PYTEST, "--spec", "SPEC.md", "-q", *extra], cwd=pytester.path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for extra in (["-n", "3", "--steps", "1-30"], ["--steps", "31-45"])]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out, count in zip(procs, outs, (30, 15)):
        assert p.returncode == 0, out
        assert f"{count} passed" in out, out
    assert_each_marked_once(pytester.path, original, steps)
    workers = {e.get("worker") for e in log_entries(pytester.path / ".task_execution.log")
               if e.get("event") == "start" and e["step"] <= 30}
    assert len(workers - {None}) >= 2, workers


# --------------------------------------------------------------------------- a person's edit


EDIT_PLAN = """\
# Plan a person keeps editing

An intro paragraph, line one.
An intro paragraph, line two.

- [ ] **STEP 1**: First
  - run: true
- [ ] **STEP 2**: A person edits the plan in place
  - run: python edit_in_place.py
- [ ] **STEP 3**: Third
  Original description of step three.
  - run: true
- [ ] **STEP 4**: An editor saves the plan (write a copy, rename it over)
  - run: python edit_by_rename.py
- [ ] **STEP 5**: Fifth
  Original description of step five.
  - run: true

Closing notes.
"""

EDIT_IN_PLACE = """\
from pathlib import Path
p = Path("SPEC.md")
text = p.read_text()
text = text.replace("An intro paragraph, line two.\\n",
                    "An intro paragraph, line two.\\nA line a person added during the run.\\n")
text = text.replace("Original description of step three.", "Edited description of step three, mid-run.")
with open(p, "r+") as fh:  # in place, as many editors write
    fh.write(text)
    fh.truncate()
"""

EDIT_BY_RENAME = """\
import os
from pathlib import Path
p = Path("SPEC.md")
text = p.read_text()
text = text.replace("Original description of step five.", "Five was rewritten by an editor.\\n  And grew a line.")
Path(".SPEC.md.swp").write_text(text)
os.replace(".SPEC.md.swp", p)
"""


def test_a_persons_edits_during_the_run_survive(pytester: pytest.Pytester) -> None:
    spec = pytester.path / "SPEC.md"
    spec.write_text(EDIT_PLAN)
    (pytester.path / "edit_in_place.py").write_text(EDIT_IN_PLACE)
    (pytester.path / "edit_by_rename.py").write_text(EDIT_BY_RENAME)
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(passed=5)
    text = spec.read_text()
    assert "An intro paragraph, line two.\nA line a person added during the run.\n" in text
    assert "Edited description of step three, mid-run." in text
    assert "Five was rewritten by an editor.\n  And grew a line." in text
    assert "Original description" not in text
    # Every step marked once, on its own header line, with the edits' line shifts followed.
    heads = headers(text.encode("utf-8"))
    assert sorted(heads) == [1, 2, 3, 4, 5]
    marked = {e["step"]: e["task_id"] for e in log_entries(pytester.path / ".task_execution.log")
              if e.get("event") == "marked"}
    for n, (_, line) in heads.items():
        s = line.decode("utf-8")
        assert symbols(line) == 1 and f"✓ [task_id: {marked[n]}]" in s, s
    # Apart from the markers, the file is exactly what the person left.
    expected = EDIT_PLAN.replace(
        "An intro paragraph, line two.\n", "An intro paragraph, line two.\nA line a person added during the run.\n"
    ).replace("Original description of step three.", "Edited description of step three, mid-run.").replace(
        "Original description of step five.", "Five was rewritten by an editor.\n  And grew a line.")
    assert_intact(expected.encode("utf-8"), spec.read_bytes(), 5)


# --------------------------------------------------------------------------- hostile file system


THREE = """\
# Plan

- [ ] **STEP 1**: One
  - run: echo one > one.txt
- [ ] **STEP 2**: Two
  - run: echo two > two.txt
- [ ] **STEP 3**: Three
  - needs: none
  - run: echo three > three.txt
"""


def mark_error_lines(out: str, spec: Path, phrase: str) -> list[str]:
    return [ln for ln in out.splitlines() if str(spec) in ln and phrase in ln]


def test_read_only_plan_is_a_usage_error_before_any_step(pytester: pytest.Pytester) -> None:
    """chmod 444. As root the plugin still refuses (no write bit at all means read-only).

    Found by a hostile try: every step's body used to run and then fail at marking (a dependent
    even ran after its dependency "failed"), and every rerun repeated them all. Now the run stops
    before any step, with one line naming the file and both fixes; nothing runs, nothing changes.
    """
    spec = pytester.path / "SPEC.md"
    spec.write_text(THREE)
    spec.chmod(0o444)
    try:
        res = pytester.runpytest("--spec", "SPEC.md")
        out = res.stdout.str() + res.stderr.str()
        assert res.ret == pytest.ExitCode.USAGE_ERROR, out
        no_traceback(out)
        assert "the plan file is read-only" in out and "chmod u+w SPEC.md" in out and "--no-mark" in out
        assert spec.read_text() == THREE
        assert not (pytester.path / "one.txt").exists()  # no body ran
        assert pytester.runpytest("--spec", "SPEC.md", "--no-mark").ret == pytest.ExitCode.OK
    finally:
        spec.chmod(0o644)


def _without_dac_override() -> list[str] | None:
    """A command prefix that runs a child as root *without* CAP_DAC_OVERRIDE.

    Tests here run as root, which may write any file. The interpreter lives under
    /root (mode 700), so it cannot run as ``nobody``; dropping the capabilities
    that let root ignore file modes makes the child see permissions as any
    other user does (``os.access`` included).
    """
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0:
        return []  # already unprivileged
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable"]
    import tempfile

    with tempfile.NamedTemporaryFile() as fh:
        os.chmod(fh.name, 0o444)
        probe = subprocess.run([*prefix, sys.executable, "-c", f"import os; print(os.access({fh.name!r}, os.W_OK))"],
                               capture_output=True, text=True, check=False)
    if probe.returncode != 0 or probe.stdout.strip() != "False":
        return None
    return prefix


def test_read_only_plan_for_an_unprivileged_user(pytester: pytest.Pytester) -> None:
    prefix = _without_dac_override()
    if prefix is None:
        pytest.skip("running as root and setpriv cannot drop CAP_DAC_OVERRIDE here: root may write any file")
    spec = pytester.path / "SPEC.md"
    spec.write_text(THREE)
    spec.chmod(0o444)
    try:
        res = pytester.run(*prefix, *PYTEST, "--spec", "SPEC.md", timeout=60)
        out = res.stdout.str() + res.stderr.str()
        assert res.ret == pytest.ExitCode.USAGE_ERROR, out
        no_traceback(out)
        assert "the plan file is read-only" in out, out
        assert spec.read_text() == THREE
    finally:
        spec.chmod(0o644)


def test_plan_in_a_read_only_folder_one_clear_line(pytester: pytest.Pytester) -> None:
    """A writable SPEC.md in a folder the user may not write (no lock folder, no temp file).

    What happens: bodies that write beside the plan fail on their own; each step
    that ends then fails with one line naming the plan and the fix (a writable
    folder or --no-mark); the plan is unchanged. (Before the fix: INTERNALERROR
    from the lock folder's mkdir.)
    """
    prefix = _without_dac_override()
    if prefix is None:
        pytest.skip("running as root and setpriv cannot drop CAP_DAC_OVERRIDE here: root may write any folder")
    folder = pytester.mkdir("plans")
    spec = folder / "SPEC.md"
    spec.write_text(THREE)
    folder.chmod(0o555)
    try:
        res = pytester.run(*prefix, *PYTEST, "--spec", str(spec), "--task-log", str(pytester.path / "log.jsonl"),
                           timeout=60)
        out = res.stdout.str() + res.stderr.str()
        no_traceback(out)
        assert res.ret in (1, 4), out
        assert [ln for ln in out.splitlines() if str(folder) in ln and "--no-mark" in ln], out
        assert spec.read_text() == THREE
    finally:
        folder.chmod(0o755)


def test_full_disk_under_the_task_log_one_clear_line(pytester: pytest.Pytester) -> None:
    """``--task-log /dev/full``: one line naming the log and the fix, then the run stops.
    (Before the fix: INTERNALERROR, a LogError escaping pytest_runtest_makereport.)"""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    pytester.makefile(".md", SPEC=THREE)
    res = pytester.run(*PYTEST, "--spec", "SPEC.md", "--task-log", "/dev/full", timeout=60)
    out = res.stdout.str() + res.stderr.str()
    no_traceback(out)
    # The run stops after the first step it could not log (exit 2, interrupted): nothing runs unlogged.
    assert res.ret in (1, 2, 4), out
    lines = [ln for ln in out.splitlines() if "/dev/full" in ln and "--task-log" in ln]
    assert lines, out


def test_plan_deleted_mid_run_one_clear_line(pytester: pytest.Pytester) -> None:
    """A step's body deletes SPEC.md.

    What happens: that step and every later (independent) one still run their
    bodies (their work is done and logged) and fail with one line naming the file
    and the fix ("restore the file"); the log keeps their results; the next run
    is a usage error naming the missing file.
    """
    spec = pytester.makefile(".md", SPEC="""\
# Plan

- [ ] **STEP 1**: One
  - run: echo one > one.txt
- [ ] **STEP 2**: Deletes the plan
  - run: rm SPEC.md
- [ ] **STEP 3**: Three
  - needs: none
  - run: echo three > three.txt
""")
    res = pytester.runpytest("--spec", "SPEC.md")
    out = res.stdout.str() + res.stderr.str()
    res.assert_outcomes(passed=1, failed=2)
    no_traceback(out)
    lines = mark_error_lines(out, spec, "deleted")
    assert lines and all("restore the file" in ln for ln in lines), out
    assert (pytester.path / "three.txt").exists()
    entries = log_entries(pytester.path / ".task_execution.log")
    assert sorted(e["step"] for e in entries if e.get("event") == "mark_failed") == [2, 3]
    assert sorted(e["step"] for e in entries if e.get("event") == "marked") == [1]
    again = pytester.runpytest("--spec", "SPEC.md")
    assert again.ret == pytest.ExitCode.USAGE_ERROR
    err = again.stderr.str() + again.stdout.str()
    no_traceback(err)
    assert "SPEC.md" in err and "not found" in err, err


def test_ctrl_c_during_checks_kills_their_commands(pytester: pytest.Pytester) -> None:
    """SIGINT while pre-flight checks run: pytest stops and the checks' process groups die with it."""
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Slow checks
  - check: sleep 60 & echo $! > check-child.pid; wait
  - run: true
""")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "--spec", "SPEC.md", "-p", "no:cacheprovider",
                             "--preflight-timeout", "120"], cwd=pytester.path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pid_file = pytester.path / "check-child.pid"
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid_file.exists(), "the check never started"
        child = int(pid_file.read_text())
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"KeyboardInterrupt" in out or proc.returncode == 2, out.decode()[-2000:]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{child}/stat").read_text().split()[2]
        except OSError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"check grandchild {child} still alive after Ctrl-C")
