"""Steps as tests, end to end through real pytest runs (issue: the foundation)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.paths import SEED

pytest_plugins = ["pytester"]

PLAN = """\
# Demo plan

## Phase 1: Data

- [ ] **STEP 1**: Make data
  Write the data file.
  - run: printf 'a\\nb\\n' > data.txt && echo made data
  - outputs: data.txt
  - kind: data
- [ ] **STEP 2**: Count data
  - inputs: data.txt
  - run: wc -l data.txt > count.txt
  - validate: grep -q 2 count.txt

## Phase 2: Report

- [ ] **STEP 3**: Report
  - run: echo report > report.txt
  - outputs: report.txt
"""


def log_entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def header(text: str, n: int) -> str:
    for line in text.splitlines():
        if re.match(rf"^\s*[-*+] \[[ xX]\] \*\*STEP {n}\*\*", line, re.IGNORECASE):
            return line
    raise AssertionError(f"no header for STEP {n}")


def test_runs_plan_marks_and_logs(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=PLAN)
    result = pytester.runpytest("--spec", "SPEC.md")
    result.assert_outcomes(passed=3)
    text = spec.read_text()
    for n in (1, 2, 3):
        assert re.search(rf"^- \[x\] \*\*STEP {n}\*\*: .+ ✓ \[task_id: task_{n}_[0-9a-f]{{8}}\] \[\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\]$",
                         header(text, n)), header(text, n)
    assert (pytester.path / "count.txt").exists()
    entries = log_entries(pytester.path / ".task_execution.log")
    ids = {e["task_id"] for e in entries}
    assert len(ids) == 3
    for e in entries:
        assert {"timestamp", "task_id", "message", "step", "phase", "event"} <= set(e)
    phases = {e["phase"] for e in entries}
    assert {"preflight", "main", "post", "mark"} <= phases
    checks = [e for e in entries if e["event"] == "check"]
    assert any(e["check"] == "data.txt created" and e["ok"] for e in checks)
    result.stdout.fnmatch_lines(["*dotasks summary*", "*3 done, 0 failed*", "*grep task_1_* .task_execution.log"])


def test_byte_for_byte_outside_headers(pytester: pytest.Pytester) -> None:
    body = ("\ufeff# Plan with CRLF — ünïcödé   \r\n\r\n"
            "Some prose with trailing spaces   \r\n"
            "- [ ] **STEP 1**: First   \r\n"
            "  - run: true\r\n"
            "\r\n"
            "```\r\n- [ ] **STEP 9**: inside a fence\r\n```\r\n"
            "- [ ] **STEP 2**: Second\r\n"
            "  - run: true\r\n"
            "\r\n"  # a blank line: prose right under a field bullet would join its value (an error)
            "tail line without newline")
    path = pytester.path / "SPEC.md"
    path.write_bytes(body.encode("utf-8"))
    before = path.read_bytes()
    pytester.runpytest("--spec", "SPEC.md").assert_outcomes(passed=2)
    after = path.read_bytes()
    assert after.startswith(b"\xef\xbb\xbf")
    b_lines = before.split(b"\r\n")
    a_lines = after.split(b"\r\n")
    assert len(a_lines) == len(b_lines)
    changed = [i for i, (x, y) in enumerate(zip(b_lines, a_lines)) if x != y]
    assert changed == [3, 9]  # only the two header lines
    assert a_lines[3].startswith("- [x] **STEP 1**: First ✓ [task_id: task_1_".encode())
    assert a_lines[3].endswith(b"]   ")  # trailing spaces kept after the marker
    assert b"STEP 9**: inside a fence\r\n" in after


def test_ini_and_positional_path(pytester: pytest.Pytester) -> None:
    pytester.mkdir("plans")
    (pytester.path / "plans" / "SPEC.md").write_text(PLAN)
    pytester.makeini("[pytest]\ndotasks_spec = plans/SPEC.md\n")
    pytester.runpytest("--collect-only", "-q").stdout.fnmatch_lines(["*SPEC.md::step1", "*SPEC.md::step3"])
    pytester.makeini("[pytest]\n")
    res = pytester.runpytest("plans/SPEC.md", "--collect-only", "-q")
    res.stdout.fnmatch_lines(["plans/SPEC.md::step2"])


def test_plain_pytest_collects_no_steps(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", README=PLAN)
    pytester.makepyfile(test_x="def test_ok():\n    assert True\n")
    res = pytester.runpytest()
    res.assert_outcomes(passed=1)
    assert "dotasks summary" not in res.stdout.str()
    assert not (pytester.path / ".task_execution.log").exists()
    assert "- [ ] **STEP 1**" in (pytester.path / "README.md").read_text()


def _twenty() -> str:
    lines = ["# Twenty", ""]
    for n in range(1, 21):
        lines += [f"- [ ] **STEP {n}**: Step number {n}", "  - run: true", "  - needs: none"]
        if n == 8:
            lines.append("  - kind: data")
    return "\n".join(lines) + "\n"


def test_k_step1_is_exact(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=_twenty())
    res = pytester.runpytest("--spec", "SPEC.md", "-k", "step1", "--collect-only", "-q")
    res.stdout.fnmatch_lines(["SPEC.md::step1", "*1/20 tests collected (19 deselected)*"])
    res = pytester.runpytest("--spec", "SPEC.md", "-k", "step1 or step12", "--collect-only", "-q")
    res.stdout.fnmatch_lines(["*2/20 tests collected (18 deselected)*"])
    res = pytester.runpytest("--spec", "SPEC.md", "-k", "not step1", "--collect-only", "-q")
    res.stdout.fnmatch_lines(["*19/20 tests collected (1 deselected)*"])
    res = pytester.runpytest("--spec", "SPEC.md", "-m", "data", "--collect-only", "-q")
    res.stdout.fnmatch_lines(["SPEC.md::step8", "*1/20 tests collected*"])


def test_collect_only_shows_titles(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=PLAN)
    res = pytester.runpytest("--spec", "SPEC.md", "--collect-only")
    res.stdout.fnmatch_lines(["*<StepItem step1: Make data [[]data[]] (pending)>", "*<StepItem step3: Report (pending)>"])


def test_phase_keyword(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=PLAN)
    res = pytester.runpytest("--spec", "SPEC.md", "-k", "phase_2_report", "--collect-only", "-q")
    res.stdout.fnmatch_lines(["SPEC.md::step3", "*1/3 tests collected*"])


def test_steps_selection_and_done_skips(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=_twenty().replace(
        "**STEP 3**: Step number 3", "**STEP 3**: Step number 3 ✓ [task_id: task_3_deadbeef] [2026-01-01T00:00:00]"
    ).replace("- [ ] **STEP 3**", "- [x] **STEP 3**"))
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "1-5,8", "-rs")
    res.assert_outcomes(passed=5, skipped=1, deselected=14)
    res.stdout.fnmatch_lines(["*STEP 3 already done [[]task_id: task_3_deadbeef[]]*"])
    assert "task_3_deadbeef" in header(spec.read_text(), 3)
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "3", "--redo")
    res.assert_outcomes(passed=1)
    assert "task_3_deadbeef" not in header(spec.read_text(), 3)


def test_steps_continue(pytester: pytest.Pytester) -> None:
    text = _twenty()
    for n in (1, 2, 4):
        text = text.replace(f"- [ ] **STEP {n}**:", f"- [x] **STEP {n}**:")
    pytester.makefile(".md", SPEC=text)
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "continue", "--collect-only", "-q")
    res.stdout.fnmatch_lines(["SPEC.md::step5", "*16/20 tests collected (4 deselected)*"])


def test_bad_steps_value_is_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=PLAN)
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "one")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*--steps one: cannot read 'one' as a step; write e.g. --steps 8*"])
    assert "Traceback" not in res.stderr.str() + res.stdout.str()


def test_preflight_failure_is_setup_error(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOTASKS_TEST_KEY", raising=False)
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Needs things
  - needs: none
  - env: DOTASKS_TEST_KEY
  - inputs: missing.txt
  - requires: json, no_such_module_xyz
  - check: test -d /
  - run: touch ran.txt
""")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(errors=1)
    out = res.stdout.str()
    assert "ERROR at setup of STEP 1: Needs things" in out
    assert "pre-flight failed" in out
    for bit in ("DOTASKS_TEST_KEY is not set", "missing.txt not found", "cannot import no_such_module_xyz"):
        assert bit in out
    assert "test -d /" not in out.split("pre-flight failed")[1].split("\n")[0]  # passing check not blamed
    assert "Traceback" not in out and "def setup" not in out
    assert not (pytester.path / "ran.txt").exists()
    assert "✗ Failed [task_id: task_1_" in header(spec.read_text(), 1)


def test_body_failure_shows_output(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Breaks
  - run: echo some context; echo boom >&2; exit 7
""")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*STEP 1 failed in main: `echo some context; echo boom >&2; exit 7` exited 7 [[]task_1_*",
                              "*boom*", "*log: grep task_1_*"])
    assert "✗ Failed" in header(spec.read_text(), 1)


def test_post_failure_names_check(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Post fails
  - run: echo '{"a": 1}' > out.json && echo '{bad' > out.jsonl
  - outputs: out.json, out.jsonl, never.txt
  - validate: echo checking; exit 4
""")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "*post-validation failed*",
        "*✗ out.jsonl created: out.jsonl:1: invalid JSON*",
        "*✗ never.txt created: never.txt was not created*",
        "*✗ echo checking; exit 4: exit 4*",
    ])


def test_no_mark_leaves_spec_untouched(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=PLAN)
    before = spec.read_bytes()
    pytester.runpytest("--spec", "SPEC.md", "--no-mark").assert_outcomes(passed=3)
    assert spec.read_bytes() == before


def test_dry_run(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=PLAN)
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md", "--dry-run", "-v")
    res.assert_outcomes(skipped=3)
    assert spec.read_bytes() == before
    assert not (pytester.path / "data.txt").exists()
    res.stdout.fnmatch_lines(["*$ printf*", "*✓ data.txt exists*",
                              "*dry run: no body ran, nothing was marked*"])


def test_verbose_shows_phases(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=PLAN)
    res = pytester.runpytest("--spec", "SPEC.md", "-v")
    res.stdout.fnmatch_lines([
        "*[[]TASK ID: task_1_*] STEP 1: Make data",
        "*[[]MAIN[]] $ printf*",
        "*→ made data",
        "*[[]POST[]] Parallel checks (1)...",
        "*✓ data.txt created [[]*s[]]",
    ])


def test_junit_properties(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=PLAN)
    pytester.runpytest("--spec", "SPEC.md", "--junitxml=out.xml").assert_outcomes(passed=3)
    root = ET.parse(pytester.path / "out.xml").getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["step1", "step2", "step3"]
    props = {p.get("name"): p.get("value") for p in cases[0].findall(".//property")}
    assert re.fullmatch(r"task_1_[0-9a-f]{8}", props["task_id"])
    assert props["step"] == "1" and props["kind"] == "data"
    for phase in ("preflight", "main", "post"):
        assert float(props[f"seconds_{phase}"]) >= 0


def test_duplicate_step_is_clean_collection_error(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - run: true\n- [ ] **STEP 1**: b\n")
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md")
    assert res.ret == pytest.ExitCode.INTERRUPTED
    res.stdout.fnmatch_lines(["*SPEC.md:3: STEP 1 is defined twice (lines 1 and 3); give each step a unique number*"])
    assert "Traceback" not in res.stdout.str()
    assert spec.read_bytes() == before


def test_malformed_field_is_clean_error(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - timeout: forever\n  - run: true\n")
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md")
    res.stdout.fnmatch_lines(["*SPEC.md:2: STEP 1 field 'timeout': not a duration*write e.g.*"])
    assert "Traceback" not in res.stdout.str()
    assert spec.read_bytes() == before


def test_missing_spec_is_usage_error(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest("--spec", "nope.md")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*nope.md*not found*--spec*"])
    assert "Traceback" not in res.stderr.str()


def test_misspelt_field_warns(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - run: true\n  - requries: json\n")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(passed=1, warnings=1)
    res.stdout.fnmatch_lines(["*SPEC.md:3: 'requries:' looks like the field 'requires:'*"])


def test_dependency_failed_skips_dependent(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - run: exit 1\n- [ ] **STEP 2**: b\n  - run: touch b\n")
    res = pytester.runpytest("--spec", "SPEC.md", "-rs")
    res.assert_outcomes(failed=1, skipped=1)
    res.stdout.fnmatch_lines(["*STEP 1 failed in this run; STEP 2 needs it*"])


def test_dependency_not_done_not_selected_is_a_usage_error(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - run: true\n- [ ] **STEP 2**: b\n  - run: true\n")
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "2")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*STEP 2 needs STEP 1, which is neither done nor selected*", "*--steps 1-2*"])
    assert "✗" not in spec.read_text()


def test_old_markers_read_as_done_and_replaced(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=(
        "- [x] **STEP 1**: Old one ✓ [2025-11-13] [task_3-10_4a70c4a2] (10 test examples)\n  - run: true\n"
        "- [x] **STEP 2**: ✓ [task_id: task_2_1a2b3c4d] [2025-11-13T10:30:00.123456] Colon form\n  - run: true\n"
    ))
    res = pytester.runpytest("--spec", "SPEC.md", "-rs")
    res.assert_outcomes(skipped=2)
    res.stdout.fnmatch_lines(["*task_3-10_4a70c4a2*", "*task_2_1a2b3c4d*"])
    pytester.runpytest("--spec", "SPEC.md", "--redo").assert_outcomes(passed=2)
    text = spec.read_text()
    h1, h2 = header(text, 1), header(text, 2)
    assert re.fullmatch(r"- \[x\] \*\*STEP 1\*\*: Old one ✓ \[task_id: task_1_[0-9a-f]{8}\] \[[^\]]+\]", h1), h1
    assert re.fullmatch(r"- \[x\] \*\*STEP 2\*\*: Colon form ✓ \[task_id: task_2_[0-9a-f]{8}\] \[[^\]]+\]", h2), h2


def test_xdist_collects_same_items_whatever_the_checkboxes(pytester: pytest.Pytester) -> None:
    text = _twenty()
    for n in (2, 5):
        text = text.replace(f"- [ ] **STEP {n}**:", f"- [x] **STEP {n}**:")
    spec = pytester.makefile(".md", SPEC=text)
    res = pytester.runpytest("--spec", "SPEC.md", "-n", "2")
    res.assert_outcomes(passed=18, skipped=2)
    text = spec.read_text()
    assert text.count("✓ [task_id: task_") == 18


def test_seed_plan_collects_twenty_steps(pytester: pytest.Pytester) -> None:
    seed = SEED
    if not seed.exists():
        pytest.skip("shared/fixtures not beside the checkout")
    (pytester.path / "SPEC.md").write_bytes(seed.read_bytes())
    res = pytester.runpytest("--spec", "SPEC.md", "--collect-only", "-q")
    res.stdout.fnmatch_lines(["SPEC.md::step1", "SPEC.md::step20", "*20 tests collected*"])
    res = pytester.runpytest("--spec", "SPEC.md", "--dry-run", "--steps", "13", "-rs", "--agent-backend", "command",
                             "--agent-command", "echo {prompt}")
    res.assert_outcomes(skipped=1)
