"""Plans as people write them (issue 14), end to end through real pytest runs:
SPEC.md label variants, Spec Kit and Kiro tasks.md, --steps by id, -k exact ids,
markers for [USn], Kiro groups and optional tasks, and never a silent zero."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.paths import FIXTURES

pytest_plugins = ["pytester"]

FORMATS = FIXTURES / "formats"

VARIANTS = """\
# Plan

- [ ] **Step 1: Make the folder**
  - run: mkdir -p out
- [ ] **Step 2A** — Write a file
  - run: echo hi > out/a.txt
  - outputs: out/a.txt
- [ ] **Step 3**：Check it
  - needs: 2A
  - validate: test -s out/a.txt
  - run: true
- [ ] **Step 4** Last one
  - run: true
"""

SPECKIT = """\
# Tasks: Demo

## Phase 1: Setup

- [ ] T001 Create out/ in the project root
  - run: mkdir -p out
- [ ] T002 [P] [US1] Write out/a.txt
  - run: echo a > out/a.txt
- [ ] T003 [P] [US2] Write out/b.txt
  - run: echo b > out/b.txt

## Phase 2: Check

- [ ] T004 [US1] Check out/a.txt
  - run: test -s out/a.txt
"""

KIRO = """\
# Implementation Plan

- [ ] 1. Prepare
  - [ ] 1.1 Make the folder
    - run: mkdir -p out
    - _Requirements: 1.1_
  - [ ] 1.2 Write a file
    - run: echo x > out/x.txt

- [ ] 2. Extras
  - [ ] 2.1 Count
    - run: wc -c out/x.txt
  - [ ]* 2.2 Optional polish
    - run: echo polish > out/polish.txt
"""


def log_entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write(pytester: pytest.Pytester, rel: str, text: str) -> Path:
    path = pytester.path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- SPEC.md variants


def test_label_variants_run_mark_and_log_by_ident(pytester: pytest.Pytester) -> None:
    spec = write(pytester, "SPEC.md", VARIANTS)
    result = pytester.runpytest("--spec", "SPEC.md", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*SPEC.md::step2A PASSED*"])
    before, after = VARIANTS.splitlines(), spec.read_text().splitlines()
    assert len(before) == len(after)
    for a, b in zip(before, after):
        if a.startswith("- [ ]"):
            assert b.startswith("- [x]" + a[5:] + " ✓ [task_id: task_"), b
        else:
            assert a == b
    assert re.search(r"task_2A_[0-9a-f]{8}", after[4])
    steps = {e.get("step") for e in log_entries(pytester.path / ".task_execution.log")}
    assert {1, "2A", 3, 4} <= steps


def test_k_step2A_is_exact_and_steps_takes_ids(pytester: pytest.Pytester) -> None:
    write(pytester, "SPEC.md", VARIANTS)
    result = pytester.runpytest("--spec", "SPEC.md", "--collect-only", "-q", "-k", "step2A")
    result.stdout.fnmatch_lines(["SPEC.md::step2A", "*1/4 tests collected (3 deselected)*"])
    result = pytester.runpytest("--spec", "SPEC.md", "--collect-only", "-q", "--steps", "1,2A")
    result.stdout.fnmatch_lines(["SPEC.md::step1", "SPEC.md::step2A", "*2/4 tests collected (2 deselected)*"])


def test_steps_naming_a_missing_step_is_a_usage_error(pytester: pytest.Pytester) -> None:
    write(pytester, "SPEC.md", VARIANTS)
    result = pytester.runpytest("--spec", "SPEC.md", "--steps", "7")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1 and "--steps 7: no such step" in errors[0] and "1, 2A, 3, 4" in errors[0], errors


def test_checkboxes_without_steps_are_a_collection_error(pytester: pytest.Pytester) -> None:
    shutil.copy(FORMATS / "checkboxes-only.md", pytester.path / "SPEC.md")
    result = pytester.runpytest("--spec", "SPEC.md")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*SPEC.md:5: 3 checkboxes but no step*line 5*--plan-format*"])


def test_a_step_like_line_warns_in_the_run(pytester: pytest.Pytester) -> None:
    write(pytester, "SPEC.md", "- [ ] **STEP 1**: one\n  - run: true\n\n- [ ] **STEP 1.5**: half\n  - run: true\n")
    result = pytester.runpytest("--spec", "SPEC.md", "-W", "always")
    result.assert_outcomes(passed=1, warnings=1)
    assert "SPEC.md:4: '- [ ] **STEP 1.5**: half' looks like a step but is none: a step id is" in result.stdout.str()


# --------------------------------------------------------------------------- Spec Kit


def test_speckit_tasks_run_in_order_and_are_marked_with_X(pytester: pytest.Pytester) -> None:
    plan = write(pytester, "specs/001-demo/tasks.md", SPECKIT)
    write(pytester, "specs/001-demo/spec.md", "# Spec\n")
    result = pytester.runpytest("specs/001-demo/tasks.md", "-v", "--strict-markers")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*tasks.md::T001 PASSED*", "*tasks.md::T002 PASSED*", "*tasks.md::T003 PASSED*",
                                 "*tasks.md::T004 PASSED*"])
    text = plan.read_text()
    assert re.search(r"^- \[X\] T002 \[P\] \[US1\] Write out/a.txt ✓ \[task_id: task_T002_[0-9a-f]{8}\] \[", text, re.MULTILINE)
    assert [e["step"] for e in log_entries(plan.parent / ".task_execution.log") if e.get("event") == "marked"] == \
        ["T001", "T002", "T003", "T004"]


def test_speckit_ids_keywords_and_story_markers(pytester: pytest.Pytester) -> None:
    write(pytester, "specs/001-demo/tasks.md", SPECKIT)
    result = pytester.runpytest("specs/001-demo/tasks.md", "--collect-only", "-q", "-k", "T001")
    result.stdout.fnmatch_lines(["*tasks.md::T001", "*1/4 tests collected (3 deselected)*"])
    result = pytester.runpytest("specs/001-demo/tasks.md", "--collect-only", "-q", "-m", "US1", "--strict-markers")
    result.stdout.fnmatch_lines(["*tasks.md::T002", "*tasks.md::T004", "*2/4 tests collected (2 deselected)*"])
    result = pytester.runpytest("specs/001-demo/tasks.md", "--collect-only", "-q", "-k", "phase_2_check")
    result.stdout.fnmatch_lines(["*tasks.md::T004", "*1/4 tests collected*"])


def test_speckit_fixture_collects_every_task_with_a_duplicate_warning(pytester: pytest.Pytester) -> None:
    shutil.copytree(FORMATS / "specs", pytester.path / "specs")
    result = pytester.runpytest("--spec", "specs/001-photo-albums/tasks.md", "--collect-only", "-q", "-W", "always")
    result.stdout.fnmatch_lines(["*::T001", "*::T-006", "*::T005-2", "*::T008"])
    result.stdout.fnmatch_lines(["*tasks.md:23: task T005 is also on line 16; this one runs as T005-2*",
                                 "*9 tests collected*"])


# --------------------------------------------------------------------------- Kiro


def test_kiro_sub_tasks_run_groups_tick_optional_skips(pytester: pytest.Pytester) -> None:
    plan = write(pytester, ".kiro/specs/demo/tasks.md", KIRO)
    result = pytester.runpytest(".kiro/specs/demo/tasks.md", "-v", "-rs")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*tasks.md::1.1 PASSED*", "*STEP 2.2 is optional; --optional or --steps 2.2 runs it*"])
    text = plan.read_text()
    assert re.search(r"^- \[x\] 1\. Prepare ✓ \[task_id: task_1\.2_", text, re.MULTILINE)  # the last sub-task ticked it
    assert re.search(r"^- \[ \] 2\. Extras$", text, re.MULTILINE)  # 2.2 (optional) is not done
    assert not (pytester.path / "out" / "polish.txt").exists()
    result = pytester.runpytest(".kiro/specs/demo/tasks.md", "--optional")
    result.assert_outcomes(passed=1, skipped=3)  # the others are done now
    assert re.search(r"^- \[x\] 2\. Extras ✓", plan.read_text(), re.MULTILINE)


def test_kiro_steps_names_an_optional_task(pytester: pytest.Pytester) -> None:
    write(pytester, ".kiro/specs/demo/tasks.md", KIRO)
    result = pytester.runpytest(".kiro/specs/demo/tasks.md", "--collect-only", "-q", "--steps", "2")
    result.stdout.fnmatch_lines(["*tasks.md::2.1", "*tasks.md::2.2", "*2/4 tests collected*"])


def test_plan_format_forces_the_parser(pytester: pytest.Pytester) -> None:
    write(pytester, ".kiro/specs/demo/tasks.md", KIRO)
    result = pytester.runpytest(".kiro/specs/demo/tasks.md", "--plan-format", "speckit")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*checkboxes but no step (read as Spec Kit tasks.md*"])
    result = pytester.runpytest(".kiro/specs/demo/tasks.md", "--plan-format", "markdown")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_a_folder_of_specs_is_not_collected(pytester: pytest.Pytester) -> None:
    write(pytester, "specs/001-demo/tasks.md", SPECKIT)
    result = pytester.runpytest("specs/")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert not (pytester.path / "out").exists()


def test_the_agent_prompt_lists_documents_and_pastes_requirements() -> None:
    from pytest_dotasks.agent.prompt import step_prompt
    from pytest_dotasks.plan.specmd import parse_file

    kiro = parse_file(FORMATS / ".kiro" / "specs" / "todo-app" / "tasks.md").by_ident()["2.1"]
    text = step_prompt(kiro)
    assert text.startswith("Execute STEP 2.1 of tasks.md: Write the Todo model")
    assert "## Design documents (read them when you need them)" in text and "- design.md: " in text
    assert "Requirement 2.2: WHEN a todo is marked done THEN the system SHALL record the time" in text
    speckit = parse_file(FORMATS / "specs" / "001-photo-albums" / "tasks.md").steps[0]
    text = step_prompt(speckit)
    assert "- spec.md: " in text and "- contracts: " in text and "## Requirements" not in text
