"""Set-up and selection mistakes are one usage error before any step runs (exit 4), never ✗ Failed marks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dotasks.plan.specmd import parse_with_configs
from pytest_dotasks.readiness import dependency_problems, selection_problems
from pytest_dotasks.report import ranges
from pytest_dotasks.settings import resolve

pytest_plugins = ["pytester"]

KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK",
        "CLAUDE_CODE_USE_VERTEX")

PLAN = """\
- [x] **STEP 1**: Setup ✓ [task_id: task_1_aaaaaaaa] [2026-01-01T00:00:00]
  - run: true
- [ ] **STEP 2**: Data
  - run: echo data > data.txt
- [ ] **STEP 3**: Teacher
  Ask the model for questions.
- [x] **STEP 4**: Agent done ✓ [task_id: task_4_bbbbbbbb] [2026-01-01T00:00:00]
  Write the report.
- [ ] **STEP 5**: Student
  Train the student.
"""


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in KEYS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no Claude Code login either


def _nothing_happened(pytester: pytest.Pytester, spec: Path, before: bytes) -> None:
    assert spec.read_bytes() == before
    log = pytester.path / ".task_execution.log"
    assert not log.exists() or log.read_text() == ""
    assert not (pytester.path / "data.txt").exists()


def test_missing_key_is_one_usage_error_naming_every_agent_step(pytester: pytest.Pytester, no_keys: None) -> None:
    spec = pytester.makefile(".md", SPEC=PLAN)
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "agent steps 3, 5 need credentials for the anthropic backend" in err
    assert "export ANTHROPIC_API_KEY" in err
    assert "Traceback" not in err + res.stdout.str()
    _nothing_happened(pytester, spec, before)


def test_redo_of_a_done_agent_step_without_key_keeps_its_tick(pytester: pytest.Pytester, no_keys: None) -> None:
    spec = pytester.makefile(".md", SPEC=PLAN)
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md", "-k", "step4", "--redo")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "agent step 4 need" in res.stderr.str()
    _nothing_happened(pytester, spec, before)


def test_dependency_neither_done_nor_selected_names_the_whole_range(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: A
  - run: true
- [ ] **STEP 2**: B
  - run: true
- [ ] **STEP 3**: C
  - run: echo c > data.txt
""")
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md", "-k", "step3")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "STEP 3 needs STEP 1, STEP 2, which are neither done nor selected" in err
    assert "--steps 1-3" in err
    _nothing_happened(pytester, spec, before)


def test_same_check_under_xdist(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: A
  - run: true
- [ ] **STEP 2**: B
  - run: echo b > data.txt
""")
    before = spec.read_bytes()
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "--steps", "2", "-n", "2", timeout=300)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "STEP 2 needs STEP 1, which is neither done nor selected" in res.stderr.str()
    _nothing_happened(pytester, spec, before)


def test_unknown_agent_and_skill(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: A
  Do it.
  - agent: reviewer
- [ ] **STEP 2**: B
  Do it too.
  - skills: no-such-skill
""")
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "2 problems" in err
    assert "agent 'reviewer' not found" in err and "skill 'no-such-skill' not found" in err
    _nothing_happened(pytester, spec, before)


def test_dry_run_reports_the_same_problems_and_goes_on(pytester: pytest.Pytester, no_keys: None) -> None:
    spec = pytester.makefile(".md", SPEC=PLAN)
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md", "--dry-run")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    out = res.stdout.str()
    assert "would stop a real run" in out and "agent steps 3, 5 need credentials" in out
    res.assert_outcomes(skipped=5)  # every step still shown (dry run or done)
    assert spec.read_bytes() == before


def test_a_conftest_agent_needs_no_key(pytester: pytest.Pytester, no_keys: None) -> None:
    pytester.makeconftest("""
        from pytest_dotasks import BodyResult

        class Done:
            def run(self, feedback=None):
                return BodyResult(True, "done")
            def close(self):
                pass

        def pytest_dotasks_agent_session(ctx):
            return Done()
    """)
    pytester.makefile(".md", SPEC=PLAN)
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(passed=3, skipped=2)


# ------------------------------------------------------------ pure rules

def _plan(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "SPEC.md"
    path.write_text(text)
    return parse_with_configs(text, path)


def _settings(**cli: object):  # type: ignore[no-untyped-def]
    return resolve(cli, {}, Path("."))


def test_running_or_done_dependencies_are_fine(tmp_path: Path) -> None:
    spec, cfgs = _plan(tmp_path, """\
- [ ] **STEP 1**: Train ⏳ Running [task_id: task_1_aaaaaaaa] [2026-01-01T00:00:00]
  - run: true
- [ ] **STEP 2**: Eval
  - run: true
""")
    assert dependency_problems(spec, cfgs, {2}, _settings()) == []


def test_verify_needs_no_dependencies_and_no_key(tmp_path: Path) -> None:
    spec, cfgs = _plan(tmp_path, PLAN)
    assert selection_problems(spec, cfgs, {4, 5}, _settings(verify=True), custom_agent=False, environ={},
                              home=tmp_path) == []


def test_claude_code_login_file_counts(tmp_path: Path) -> None:
    spec, cfgs = _plan(tmp_path, PLAN)
    settings = _settings(agent_backend="claude-code")
    assert selection_problems(spec, cfgs, {2, 3}, settings, custom_agent=False, environ={}, home=tmp_path)
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / ".credentials.json").write_text("{}")
    assert selection_problems(spec, cfgs, {2, 3}, settings, custom_agent=False, environ={}, home=tmp_path) == []


def test_ranges() -> None:
    assert ranges([1, 2, 3, 5, 9, 10]) == "1-3, 5, 9-10"  # in the order given: the plan's
    assert ranges([]) == ""


@pytest.mark.parametrize("log", ["SPEC.md", "conftest.py", "pytest.ini"])
def test_task_log_may_not_be_a_file_that_configures_the_run(pytester: pytest.Pytester, log: str) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makeconftest("")
    spec = pytester.makefile(".md", SPEC="- [ ] **STEP 1**: A\n  - run: echo a > data.txt\n")
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md", "--task-log", log)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "which configures the run" in res.stderr.str()
    assert spec.read_bytes() == before and not (pytester.path / "data.txt").exists()
