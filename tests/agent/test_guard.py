"""The guard: what is protected, and what a tool call changed there, found and put back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pytest_dotasks.agent.guard import Guard, describe, protected_paths, write_refusal
from pytest_dotasks.agent.plugin_writes import merge_markers
from pytest_dotasks.plan.marking import mark
from pytest_dotasks.run.tasklog import TaskLog
from tests.stubs.steps import agent_file, make_ctx, make_project

PLAN = "# Plan\n\n- [ ] **STEP 1**: Make data\n- [ ] **STEP 2**: Train\n- [ ] **STEP 9**: Ship it\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = make_project(tmp_path)
    (r / "SPEC.md").write_text(PLAN)
    (r / "conftest.py").write_text("# the project's hooks\n")
    (r / "tests").mkdir()
    (r / "tests" / "conftest.py").write_text("import pytest\n")
    (r / "pytest.ini").write_text("[pytest]\naddopts = -q\n")
    agent_file(r, "AGENT.md", "---\nname: x\n---\nBe careful.\n")
    TaskLog(r / ".task_execution.log").write({"timestamp": "2026-11-27T09:00:00", "task_id": "task_2_feedbeef",
                                              "message": "STEP 2 started", "step": 2, "phase": "preflight"})
    return r


@pytest.fixture
def guard(root: Path) -> Guard:
    return Guard(root, spec=root / "SPEC.md", log=root / ".task_execution.log", state_dir=root / ".dotasks",
                 ini=root / "pytest.ini", task_id="task_1_0badc0de")


def sh(root: Path, command: str) -> None:
    subprocess.run(command, shell=True, cwd=root, check=True)


def test_protected_paths_name_what_configures_or_records_the_run(root: Path) -> None:
    ctx = make_ctx(root)
    ctx.ini_path = root / "pytest.ini"
    real = Path(os.path.realpath(root))
    got = set(protected_paths(ctx))
    assert got == {real / "SPEC.md", real / ".task_execution.log", real / ".dotasks", real / ".claude",
                   real / "pytest.ini", real / "conftest.py", real / "tests" / "conftest.py"}


def test_write_refusal_covers_the_set_and_new_conftest_files(root: Path) -> None:
    real = Path(os.path.realpath(root))
    protected = [real / "SPEC.md", real / ".dotasks"]
    assert "belongs to pytest-dotasks" in (write_refusal(real / ".dotasks" / "x" / "y", protected, real) or "")
    assert "conftest.py" in (write_refusal(real / "deep" / "er" / "conftest.py", protected, real) or "")
    assert "pytest ini" in (write_refusal(real / "pytest.ini", protected, real) or "")
    assert write_refusal(real / "sub" / "pytest.ini", protected, real) is None
    assert write_refusal(real / "hello.py", protected, real) is None


def test_nothing_touched_nothing_reported(guard: Guard, root: Path) -> None:
    before = guard.snapshot()
    sh(root, "echo hi > hello.py; touch SPEC.md conftest.py; mkdir -p .dotasks/transcripts; echo x > .dotasks/new")
    assert guard.check(before) == []
    assert (root / "hello.py").exists() and (root / ".dotasks" / "new").exists()


def test_bash_appending_a_done_step_to_the_plan_is_undone(guard: Guard, root: Path) -> None:
    before = guard.snapshot()
    sh(root, "echo '- [x] **STEP 9**: done' >> SPEC.md")
    changes = guard.check(before)
    assert [(c.path.name, c.what, c.restored) for c in changes] == [("SPEC.md", "changed", True)]
    assert (root / "SPEC.md").read_text() == PLAN
    assert changes[0].kept is not None and changes[0].kept.read_text().endswith("**STEP 9**: done\n")
    assert "SPEC.md: changed, restored" in describe(changes, root)


def test_a_marker_the_plugin_writes_during_the_call_survives(guard: Guard, root: Path) -> None:
    before = guard.snapshot()
    # Another worker marks STEP 2 (its task is in the log) while the agent ticks STEP 9 by hand.
    mark(root / "SPEC.md", 2, "done", "task_2_feedbeef", "2026-11-27T10:00:00")
    sh(root, "sed -i 's/- \\[ \\] \\*\\*STEP 9\\*\\*: Ship it/- [x] **STEP 9**: Ship it ✓ [task_id: task_9_12345678]/' "
             "SPEC.md")
    changes = guard.check(before)
    assert [c.path.name for c in changes] == ["SPEC.md"]
    text = (root / "SPEC.md").read_text()
    assert "- [x] **STEP 2**: Train ✓ [task_id: task_2_feedbeef] [2026-11-27T10:00:00]" in text
    assert "- [ ] **STEP 9**: Ship it\n" in text  # the forged marker (unknown task id) is gone


def test_marker_changes_alone_are_not_the_agents(guard: Guard, root: Path) -> None:
    before = guard.snapshot()
    mark(root / "SPEC.md", 2, "failed", "task_2_feedbeef", "2026-11-27T10:00:00")
    assert guard.check(before) == []
    assert "✗ Failed [task_id: task_2_feedbeef]" in (root / "SPEC.md").read_text()


def test_merge_markers_keeps_only_logged_marker_updates() -> None:
    old = "- [ ] **STEP 1**: A\n- [ ] **STEP 2**: B\n"
    new = "- [x] **STEP 1**: A ✓ [task_id: task_1_aaaaaaaa] [t]\n- [x] **STEP 2**: B ✓ [task_id: task_2_bbbbbbbb] [t]\n"
    merged, rejected = merge_markers(old, new, {"task_1_aaaaaaaa"})
    assert rejected and merged == "- [x] **STEP 1**: A ✓ [task_id: task_1_aaaaaaaa] [t]\n- [ ] **STEP 2**: B\n"
    retitled = "- [x] **STEP 1**: Something else ✓ [task_id: task_1_aaaaaaaa] [t]\n- [ ] **STEP 2**: B\n"
    assert merge_markers(old, retitled, {"task_1_aaaaaaaa"}) == (old, True)
    assert merge_markers(old, old + "- [x] **STEP 3**: C\n", set()) == (old, True)


@pytest.mark.parametrize("command", ["rm SPEC.md", "chmod 000 SPEC.md", "rm SPEC.md; mkdir SPEC.md",
                                     "rm SPEC.md; ln -s /etc/hostname SPEC.md", "printf 'x' > SPEC.md"])
def test_the_plan_comes_back_whatever_was_done_to_it(guard: Guard, root: Path, command: str) -> None:
    mode = (root / "SPEC.md").stat().st_mode
    before = guard.snapshot()
    sh(root, command)
    changes = guard.check(before)
    assert [(c.path.name, c.restored) for c in changes] == [("SPEC.md", True)], changes
    assert (root / "SPEC.md").is_file() and not (root / "SPEC.md").is_symlink()
    assert (root / "SPEC.md").read_text() == PLAN and (root / "SPEC.md").stat().st_mode == mode


def test_conftest_ini_and_claude_are_restored_and_new_ones_moved_away(guard: Guard, root: Path) -> None:
    before = guard.snapshot()
    sh(root, "echo 'def pytest_runtest_call(): pass' >> conftest.py; rm tests/conftest.py; "
             "echo '[pytest]' > pytest.ini; echo x > .claude/agents/AGENT.md; echo evil > .claude/settings.json; "
             "mkdir -p newpkg && echo hook > newpkg/conftest.py")
    changes = guard.check(before)
    got = {(str(c.path.relative_to(guard.root)), c.what, c.restored) for c in changes}
    assert got == {("conftest.py", "changed", True), ("tests/conftest.py", "deleted", True),
                   ("pytest.ini", "changed", True), (".claude/agents/AGENT.md", "changed", True),
                   (".claude/settings.json", "created", True), ("newpkg/conftest.py", "created", True)}
    assert (root / "conftest.py").read_text() == "# the project's hooks\n"
    assert (root / "tests" / "conftest.py").read_text() == "import pytest\n"
    assert (root / "pytest.ini").read_text() == "[pytest]\naddopts = -q\n"
    assert (root / ".claude" / "agents" / "AGENT.md").read_text() == "---\nname: x\n---\nBe careful.\n"
    assert not (root / ".claude" / "settings.json").exists() and not (root / "newpkg" / "conftest.py").exists()
    kept = {c.path.name: c.kept for c in changes}
    assert kept["settings.json"] is not None and kept["settings.json"].read_text() == "evil\n"
    assert guard.check(guard.snapshot()) == []  # and stays quiet afterwards


def test_an_ini_file_above_the_root_is_protected_too(tmp_path: Path) -> None:
    (tmp_path / "tox.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text("# above\n")
    root = make_project(tmp_path)
    g = Guard(root, spec=root / "SPEC.md", log=root / ".task_execution.log", state_dir=root / ".dotasks",
              ini=tmp_path / "tox.ini")
    assert Path(os.path.realpath(tmp_path / "conftest.py")) in g.protected
    before = g.snapshot()
    sh(root, "echo '[pytest]\naddopts = -p no:dotasks' > ../tox.ini; echo x > ../conftest.py; touch ../pytest.ini")
    assert {c.path.name for c in g.check(before)} == {"tox.ini", "conftest.py", "pytest.ini"}
    assert (tmp_path / "tox.ini").read_text() == "[pytest]\n" and not (tmp_path / "pytest.ini").exists()


def test_the_log_keeps_the_plugins_appends_and_loses_the_rest(guard: Guard, root: Path) -> None:
    log = TaskLog(root / ".task_execution.log")
    original = (root / ".task_execution.log").read_bytes()
    before = guard.snapshot()
    log.event("task_2_feedbeef", "logged during the call", step=2)  # the plugin, meanwhile
    assert guard.check(before) == []
    before = guard.snapshot()
    sh(root, "echo 'not json' >> .task_execution.log")
    log.event("task_2_feedbeef", "logged after the junk", step=2)
    changes = guard.check(before)
    assert [(c.what, c.restored) for c in changes] == [("appended", True)]
    lines = [json.loads(x) for x in (root / ".task_execution.log").read_text().splitlines()]
    assert [e["message"] for e in lines] == ["STEP 2 started", "logged during the call", "logged after the junk"]
    assert (root / ".task_execution.log").read_bytes().startswith(original)


@pytest.mark.parametrize("command", [": > .task_execution.log", "rm .task_execution.log",
                                     "sed -i 's/started/finished/' .task_execution.log"])
def test_a_rewritten_log_gets_its_content_back(guard: Guard, root: Path, command: str) -> None:
    original = (root / ".task_execution.log").read_bytes()
    before = guard.snapshot()
    sh(root, command)
    TaskLog(root / ".task_execution.log").event("task_2_feedbeef", "after", step=2)
    changes = guard.check(before)
    assert [c.restored for c in changes] == [True]
    data = (root / ".task_execution.log").read_bytes()
    assert data.startswith(original) and json.loads(data[len(original):])["message"] == "after"


def test_background_state_deleted_or_rewritten_comes_back_the_rest_is_the_plugins(guard: Guard, root: Path) -> None:
    task = root / ".dotasks" / "background" / "task_3_abcdef01"
    task.mkdir(parents=True)
    (task / "exit.json").write_text('{"exit_code": 1}')
    (task / "meta.json").write_text('{"step": 3}')
    (task / "output.log").write_text("epoch 1\n")
    for folder in ("transcripts", "claims", "marks"):
        (root / ".dotasks" / folder).mkdir()
        (root / ".dotasks" / folder / "x").write_text("{}\n")
    before = guard.snapshot()
    sh(root, "echo '{\"exit_code\": 0}' > .dotasks/background/task_3_abcdef01/exit.json; "
             "rm .dotasks/background/task_3_abcdef01/meta.json; echo 'epoch 2' >> "
             ".dotasks/background/task_3_abcdef01/output.log; mkdir .dotasks/background/task_4_00000000; "
             "echo '{}' > .dotasks/background/task_4_00000000/exit.json; rm .dotasks/transcripts/x .dotasks/claims/x; "
             "echo changed > .dotasks/marks/x")
    changes = guard.check(before)
    assert {(c.path.name, c.what, c.restored) for c in changes} == {("exit.json", "changed", True),
                                                                     ("meta.json", "deleted", True)}
    assert (task / "exit.json").read_text() == '{"exit_code": 1}' and (task / "meta.json").exists()
    assert (task / "output.log").read_text() == "epoch 1\nepoch 2\n"  # the supervisor appends there
    assert (root / ".dotasks" / "background" / "task_4_00000000" / "exit.json").exists()  # a new task: left
    # claims, the marker journal, transcripts: the plugin removes and rewrites them itself, from any process
    assert not (root / ".dotasks" / "claims" / "x").exists()


def test_rm_rf_dotasks_brings_the_state_back(guard: Guard, root: Path) -> None:
    task = root / ".dotasks" / "background" / "task_3_abcdef01"
    task.mkdir(parents=True)
    (task / "exit.json").write_text('{"exit_code": 1}')
    before = guard.snapshot()
    sh(root, "rm -rf .dotasks")
    changes = guard.check(before)
    assert all(c.restored for c in changes) and (task / "exit.json").read_text() == '{"exit_code": 1}'


def test_a_state_folder_swapped_for_a_link_is_put_back_without_writing_through_it(
        guard: Guard, root: Path, tmp_path: Path) -> None:
    task = root / ".dotasks" / "background" / "task_3_abcdef01"
    task.mkdir(parents=True)
    (task / "exit.json").write_text('{"exit_code": 1}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = guard.snapshot()
    sh(root, f"rm -rf {task} && ln -s {elsewhere} {task}")
    changes = guard.check(before)
    assert all(c.restored for c in changes), changes
    assert task.is_dir() and not task.is_symlink() and (task / "exit.json").read_text() == '{"exit_code": 1}'
    assert list(elsewhere.iterdir()) == []


def test_the_snapshot_stays_cheap_where_it_matters(guard: Guard, root: Path) -> None:
    big = root / "data"
    big.mkdir()
    for i in range(300):
        (big / f"{i}.txt").write_text("x")
    before = guard.snapshot()
    # the tree outside the protected set is never walked: of data/, only where a conftest.py would go
    looked = [str(p) for p in (*before.files, *before.claude, *before.state) if "/data/" in str(p)]
    assert looked == [str(guard.root / "data" / "conftest.py")]
