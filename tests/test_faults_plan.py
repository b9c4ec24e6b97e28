"""The fault suite, plan side (issue 12, "Nothing lost"): a person's text is never lost or run.

Each test reproduces one fault as a user met it, through a real pytest run:
prose swallowed into a ``run:`` command, a person's appends and an editor's
saves lost while steps were marked, markers an editor's stale buffer
overwrote, steps after a deeply nested list silently dropped, and numbers too
large or too small for the timer (an INTERNALERROR). Pure rules are proven
in ``tests/plan``; this file keeps what only a whole run shows.

Runs that must happen while another process writes SPEC.md are real
subprocesses; the rest use pytester in-process. No timed assertions: threads
and runs have generous guards only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

with contextlib.suppress(ImportError):
    import hypothesis.internal.observability  # noqa: F401  (see tests/test_faults.py)

# Subprocess runs: no cache dir, no hypothesis summary (not ours, and slow here).
SUBPROCESS_ARGS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
HEADER = re.compile(r"^- \[(?P<box>[ x])\] \*\*STEP (?P<n>\d+)\*\*:(?P<rest>.*)$")
SYMBOLS = ("✓", "✗", "⏳")


def log_entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def headers(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in text.split("\n"):
        m = HEADER.match(line)
        if m:
            assert int(m["n"]) not in out, f"STEP {m['n']} has two header lines"
            out[int(m["n"])] = line
    return out


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
    assert "INTERNALERROR" not in text, text


def independent_plan(steps: int) -> str:
    lines = ["# Independent steps", "", "Prose a person wrote.", ""]
    for n in range(1, steps + 1):
        lines += [f"- [ ] **STEP {n}**: Independent {n}", "  - needs: none", "  - run: true", ""]
    # A person's lines are appended under a heading, never into the last step's bullet.
    lines += ["## Notes", "", ""]
    return "\n".join(lines)


@contextlib.contextmanager
def person_writing(spec: Path, how: str, every: float = 0.02) -> Iterator[list[str]]:
    """A thread that adds one line to SPEC.md every ``every`` seconds while the block runs.

    ``append``: open in append mode and write (a shell's ``>>``, a logger).
    ``editor``: read the file, add the line, write a copy and rename it over
    SPEC.md (how vim, VS Code and most editors save). Yields the lines written.
    """
    written: list[str] = []
    stop = threading.Event()
    errors: list[OSError] = []

    def work() -> None:
        k = 0
        try:
            while not stop.is_set():
                line = f"A line the person added ({how} {k})."
                if how == "append":
                    with open(spec, "a", encoding="utf-8") as fh:
                        fh.write(line + "\n")
                else:
                    text = spec.read_text(encoding="utf-8")
                    swap = spec.parent / f".{spec.name}.swp"
                    swap.write_text(text + line + "\n", encoding="utf-8")
                    os.replace(swap, spec)
                written.append(line)
                k += 1
                stop.wait(every)
        except OSError as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield written
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive() and not errors, errors


# --------------------------------------------------------------------------- 1. prose after a field


def test_prose_after_a_run_field_is_a_collection_error_and_nothing_runs(pytester: pytest.Pytester) -> None:
    """Markdown's lazy continuation joined the sentence under ``run:`` to the command.

    Before the fix STEP 1 ran ``touch ran.txt Afterwards the data ...`` and made
    a file per word. Now: a collection error naming the field's line, the line
    it swallowed, and the two fixes; nothing runs; SPEC.md is as it was.
    """
    plan = (
        "# Plan\n"
        "\n"
        "- [ ] **STEP 1**: Clean\n"
        "  - run: touch ran.txt\n"
        "  Afterwards the data and models folders must still be there.\n"
    )
    spec = pytester.path / "SPEC.md"
    spec.write_text(plan)
    res = pytester.runpytest("--spec", "SPEC.md")
    out = res.stdout.str() + res.stderr.str()
    assert res.ret == pytest.ExitCode.INTERRUPTED, out
    no_traceback(out)
    lines = [ln for ln in out.splitlines() if "SPEC.md:4:" in ln and "line 5" in ln]
    assert lines, out
    assert "blank line" in lines[0] and "one line" in lines[0], lines[0]
    assert not list(pytester.path.glob("ran.txt")) and not list(pytester.path.glob("Afterwards"))
    assert spec.read_text() == plan


def test_a_blank_line_before_the_prose_is_the_fix(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=(
        "- [ ] **STEP 1**: Clean\n"
        "  - run: touch ran.txt\n"
        "\n"
        "  Afterwards the data and models folders must still be there.\n"
    ))
    pytester.runpytest("--spec", "SPEC.md").assert_outcomes(passed=1)
    assert (pytester.path / "ran.txt").exists() and not (pytester.path / "Afterwards").exists()


# --------------------------------------------------------------------------- 2. a person's edits while marking


def assert_every_step_marked_once(root: Path, steps: int) -> dict[int, str]:
    text = (root / "SPEC.md").read_text(encoding="utf-8")
    heads = headers(text)
    assert sorted(heads) == list(range(1, steps + 1))
    marked = {e["step"]: e["task_id"] for e in log_entries(root / ".task_execution.log") if e.get("event") == "marked"}
    assert sorted(marked) == list(range(1, steps + 1))
    for n, line in heads.items():
        assert sum(line.count(s) for s in SYMBOLS) == 1 and f"✓ [task_id: {marked[n]}]" in line, line
    return heads


@pytest.mark.parametrize("how", ["append", "editor"])
def test_a_person_writing_every_20ms_while_steps_are_marked_loses_no_line(pytester: pytest.Pytester,
                                                                           how: str) -> None:
    """60 quick steps, each marked when it ends, while a person adds a line every 20 ms.

    Before the fix about half the appended lines were lost (our rename replaced
    the file the person had just written), and some editor saves were lost too.
    The write is now a compare-and-swap: every line the person wrote is in the
    file, once, after the run. (An editor's save may overwrite one of
    our markers with its stale copy: the next test restores those.)
    """
    steps = 60
    spec = pytester.path / "SPEC.md"
    spec.write_text(independent_plan(steps), encoding="utf-8")
    with person_writing(spec, how) as written:
        res = pytester.runpytest_subprocess(*SUBPROCESS_ARGS, "--spec", "SPEC.md", "-q", timeout=300)
    out = res.stdout.str() + res.stderr.str()
    assert res.ret == 0, out
    assert len(written) >= 10, written  # the person really wrote during the run
    text = spec.read_text(encoding="utf-8")
    found = [ln for ln in text.split("\n") if ln.startswith("A line the person added")]
    lost = [ln for ln in written if ln not in found]
    assert lost == [], f"{len(lost)} of {len(written)} lines lost"
    # Once each. (A line caught between its writer's open and write while we swapped the
    # file lands in the replaced file and is carried over by the next mark: a few lines later.)
    assert sorted(found) == sorted(written)
    if how == "append":
        assert_every_step_marked_once(pytester.path, steps)
    else:
        from pytest_dotasks.plan.marking import restore_lost_markers

        restore_lost_markers(spec)  # what the next run does first
        assert_every_step_marked_once(pytester.path, steps)


STALE = """\
# Plan

- [ ] **STEP 1**: One
  - run: true
- [ ] **STEP 2**: Two
  - run: true
- [ ] **STEP 3**: Three
  - run: true
"""


def test_markers_an_editor_overwrote_are_restored_by_the_next_run(pytester: pytest.Pytester) -> None:
    """A person opened SPEC.md before the run and saved after it: their buffer had no markers.

    Their own edit (a line added) is kept, and the next run finds the three
    markers again from ``.dotasks/`` and skips the three done steps instead of
    running them again.
    """
    spec = pytester.makefile(".md", SPEC=STALE)
    pytester.runpytest("--spec", "SPEC.md").assert_outcomes(passed=3)
    first = headers(spec.read_text())
    assert all("✓ [task_id:" in line for line in first.values())
    # The editor saves its stale buffer (no markers) plus the person's new line, by rename.
    swap = pytester.path / ".SPEC.md.swp"
    swap.write_text(STALE + "\nA note the person wrote.\n")
    os.replace(swap, spec)
    res = pytester.runpytest("--spec", "SPEC.md", "-W", "ignore::pytest.PytestWarning")
    res.assert_outcomes(skipped=3)
    res.stdout.fnmatch_lines(["*[[]RESTORED[]]*STEP 1*"])
    text = spec.read_text()
    assert text.endswith("\nA note the person wrote.\n")
    assert headers(text) == first
    restored = [e for e in log_entries(pytester.path / ".task_execution.log") if e.get("event") == "marker_restored"]
    assert sorted(e.get("message", "").split("STEP ")[1][0] for e in restored) == ["1", "2", "3"], restored


def test_a_persons_own_change_to_a_header_is_respected_by_the_next_run(pytester: pytest.Pytester) -> None:
    """Un-ticking a step (box cleared, marker kept) or retitling it is a decision: not restored."""
    spec = pytester.makefile(".md", SPEC=STALE)
    pytester.runpytest("--spec", "SPEC.md").assert_outcomes(passed=3)
    text = spec.read_text()
    heads = headers(text)
    text = text.replace(heads[2], heads[2].replace("- [x]", "- [ ]").replace(" ✓ ", " ✗ Failed "))
    text = text.replace(heads[3], "- [ ] **STEP 3**: Three, retitled")
    spec.write_text(text)
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(passed=2, skipped=1)  # 2 and 3 run again, 1 is done
    assert "Three, retitled" in spec.read_text()


# --------------------------------------------------------------------------- 5. deep nesting


def test_steps_after_a_deeply_nested_list_are_collected(pytester: pytest.Pytester) -> None:
    """markdown-it stopped at its nesting limit after a 10-level list: steps 2-20 vanished."""
    lines = ["- [ ] **STEP 1**: Deep notes", "  Notes:"]
    lines += ["  " * d + "- level " + str(d) for d in range(1, 11)]
    lines += ["", *[f"- [ ] **STEP {n}**: Step {n}\n  - run: true" for n in range(2, 21)]]
    pytester.makefile(".md", SPEC="\n".join(lines) + "\n")
    res = pytester.runpytest("--spec", "SPEC.md", "--collect-only", "-q")
    out = res.stdout.str()
    assert "20 tests collected" in out, out


def test_a_step_hidden_by_absurd_nesting_is_a_warning_naming_its_line(pytester: pytest.Pytester) -> None:
    """Beyond any sane depth the parser still gives up; the step lines it did not read are named."""
    depth = 300
    lines = ["- [ ] **STEP 1**: Deep", "  - run: true", "", "  Notes:", ""]
    lines += ["  " * d + "- x" for d in range(1, depth)]
    lines += ["", "- [ ] **STEP 2**: After", "  - run: true"]
    pytester.makefile(".md", SPEC="\n".join(lines) + "\n")
    res = pytester.runpytest("--spec", "SPEC.md", "--collect-only", "-q")
    out = res.stdout.str() + res.stderr.str()
    no_traceback(out)
    line = len(lines) - 1
    if "2 tests collected" not in out:
        assert [ln for ln in out.splitlines() if f"SPEC.md:{line}:" in ln and "STEP 2" in ln and "not read" in ln], out


# --------------------------------------------------------------------------- 8. numbers


@pytest.mark.parametrize(("value", "fix"), [("9999999999s", "30d"), ("0.001ms", "1s"), ("1" * 400, "30d")])
def test_a_timeout_out_of_range_is_a_collection_error_not_an_internal_error(pytester: pytest.Pytester,
                                                                            value: str, fix: str) -> None:
    """With pytest-timeout active both crashed the run (INTERNALERROR: OverflowError from
    setitimer for the large one, a Failed raised inside the timer hook for the tiny one)."""
    pytester.makefile(".md", SPEC=f"- [ ] **STEP 1**: a\n  - run: true\n  - timeout: {value}\n")
    res = pytester.runpytest("--spec", "SPEC.md", "-p", "timeout")
    out = res.stdout.str() + res.stderr.str()
    no_traceback(out)
    assert res.ret == pytest.ExitCode.INTERRUPTED, out
    assert [ln for ln in out.splitlines() if "SPEC.md:3:" in ln and "timeout" in ln and fix in ln], out


def test_huge_retries_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - run: false\n  - retries: 99999999999999999999\n")
    res = pytester.runpytest("--spec", "SPEC.md")
    out = res.stdout.str() + res.stderr.str()
    no_traceback(out)
    assert res.ret == pytest.ExitCode.INTERRUPTED, out
    assert [ln for ln in out.splitlines() if "SPEC.md:3:" in ln and "retries" in ln and "20" in ln], out


def test_a_huge_steps_range_selects_without_expanding(pytester: pytest.Pytester) -> None:
    """``--steps 1-99999999999999`` hung (a set of every number); now it is one range."""
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - run: true\n- [ ] **STEP 7**: b\n  - needs: none\n  - run: true\n")
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "5-99999999999999")
    res.assert_outcomes(passed=1)


# --------------------------------------------------------------------------- 11. odd characters


def test_a_tick_in_a_title_is_title_text_and_the_step_runs(pytester: pytest.Pytester) -> None:
    """"Fix the ✓ icon" read as done and never ran, silently; and --redo cut the words after the tick.

    A status symbol starts a marker only when a marker follows it (nothing, ``[``, ``(`` or a date);
    otherwise it is part of the title, which marking keeps whole.
    """
    spec = pytester.makefile(".md", SPEC="# Plan\n\n- [ ] **STEP 1**: Fix the ✓ marks and ✗ crosses ⏳ later\n"
                                        "  - run: touch ran.txt\n")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(passed=1)
    assert (pytester.path / "ran.txt").exists()
    line = spec.read_text().splitlines()[2]
    assert line.startswith("- [x] **STEP 1**: Fix the ✓ marks and ✗ crosses ⏳ later ✓ [task_id: task_1_")
    pytester.runpytest("--spec", "SPEC.md", "--redo").assert_outcomes(passed=1)
    assert "Fix the ✓ marks and ✗ crosses ⏳ later ✓ [task_id: task_1_" in spec.read_text()


def test_a_nul_in_a_run_value_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - run: echo a\x00b > out.txt\n")
    res = pytester.runpytest("--spec", "SPEC.md")
    out = res.stdout.str() + res.stderr.str()
    no_traceback(out)
    assert res.ret == pytest.ExitCode.INTERRUPTED, out
    assert [ln for ln in out.splitlines() if "SPEC.md:2:" in ln and "NUL" in ln], out
    assert not (pytester.path / "out.txt").exists()


def test_a_next_line_character_in_a_run_value_is_kept_exactly(pytester: pytest.Pytester) -> None:
    """U+0085 is a line break to ``str.splitlines``, not to markdown: the command keeps it."""
    plan = "- [ ] **STEP 1**: a\n  - run: printf 'a\u0085b' > out.txt\n"
    spec = pytester.path / "SPEC.md"
    spec.write_bytes(plan.encode())  # not makefile: it splits lines with str.splitlines, U+0085 included
    pytester.runpytest("--spec", "SPEC.md").assert_outcomes(passed=1)
    assert (pytester.path / "out.txt").read_bytes() == "a\u0085b".encode()
    text = spec.read_text(encoding="utf-8")
    assert text.split("\n")[1:] == plan.split("\n")[1:] and "\u0085" in text
