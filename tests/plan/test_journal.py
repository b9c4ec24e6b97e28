"""The marker journal and the restore of markers an editor's stale copy overwrote (issue 12)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_dotasks.plan import filecas, journal, marking
from pytest_dotasks.plan.marking import mark, restore_lost_markers
from pytest_dotasks.plan.model import STATUS_DONE, STATUS_FAILED, STATUS_RUNNING, STATUS_TODO
from pytest_dotasks.plan.specmd import parse_file

TS = "2026-11-24T10:30:12"
PLAN = "# Plan\n\n- [ ] **STEP 1**: One\n- [ ] **STEP 2**: Two\n- [ ] **STEP 3**: Three\n\nNotes.\n"


def plan(tmp_path: Path, text: str = PLAN) -> Path:
    f = tmp_path / "SPEC.md"
    f.write_text(text)
    return f


def editor_saves(f: Path, text: str) -> None:
    """An editor writes its buffer: a copy renamed over the plan."""
    swap = f.with_name(".SPEC.md.swp")
    swap.write_text(text)
    os.replace(swap, f)


def statuses(f: Path) -> list[str]:
    return [s.marker.status for s in parse_file(f).steps]


def test_each_mark_is_journalled_with_the_header_line_before_and_after(tmp_path: Path) -> None:
    f = plan(tmp_path)
    mark(f, 2, STATUS_RUNNING, "task_2_00000000", TS)
    mark(f, 2, STATUS_DONE, "task_2_00000000", TS)
    path = tmp_path / ".dotasks" / "marks" / "SPEC.md.jsonl"
    assert path == journal.journal_path(f)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["step"], r["status"], r["task_id"]) for r in rows] == [(2, STATUS_RUNNING, "task_2_00000000"),
                                                                      (2, STATUS_DONE, "task_2_00000000")]
    assert rows[0]["before"] == "- [ ] **STEP 2**: Two"
    assert rows[0]["after"] == rows[1]["before"] == f"- [ ] **STEP 2**: Two ⏳ Running [task_id: task_2_00000000] [{TS}]"
    assert rows[1]["after"] == f"- [x] **STEP 2**: Two ✓ [task_id: task_2_00000000] [{TS}]"


def test_markers_a_stale_editor_buffer_overwrote_are_restored(tmp_path: Path) -> None:
    """The person opened the plan before the run and saved after it: their buffer had no markers."""
    f = plan(tmp_path)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    mark(f, 3, STATUS_FAILED, "task_3_00000000", TS, note="(exit 2)")
    marked = f.read_text()
    editor_saves(f, PLAN.replace("Notes.", "Notes, edited by the person."))
    messages = restore_lost_markers(f)
    assert f.read_text() == marked.replace("Notes.", "Notes, edited by the person.")
    assert len(messages) == 2
    assert messages[0].startswith(f"{f}:3: STEP 1's marker was overwritten") and "✓ [task_id: task_1_00000000]" in \
        messages[0]
    assert messages[1].startswith(f"{f}:5: STEP 3's") and ".dotasks/marks/SPEC.md.jsonl" in messages[1]
    assert all("\n" not in m for m in messages)
    # The journal is settled: a second call (the next run) has nothing to say.
    assert not journal.journal_path(f).exists()
    assert restore_lost_markers(f) == []


def test_a_chain_of_marks_is_restored_to_the_last_one(tmp_path: Path) -> None:
    """Running, then done: a buffer from before either write, or between them, is stale."""
    f = plan(tmp_path)
    mark(f, 2, STATUS_RUNNING, "task_2_00000000", TS)
    between = f.read_text()
    mark(f, 2, STATUS_DONE, "task_2_00000000", TS)
    editor_saves(f, between)  # the buffer was loaded while the step ran
    assert len(restore_lost_markers(f)) == 1
    assert statuses(f) == [STATUS_TODO, STATUS_DONE, STATUS_TODO]


@pytest.mark.parametrize("edit", ["untick-keep-marker", "retitle", "hand-tick", "other-marker"])
def test_a_persons_own_change_to_the_header_is_respected(tmp_path: Path, edit: str) -> None:
    f = plan(tmp_path)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    line = f.read_text().split("\n")[2]
    changed = {
        "untick-keep-marker": line.replace("- [x]", "- [ ]").replace(" ✓ ", " ✗ Failed "),
        "retitle": "- [ ] **STEP 1**: One, retitled",
        "hand-tick": "- [x] **STEP 1**: One ✓ [2026-01-01]",
        "other-marker": f"- [ ] **STEP 1**: One ⏳ Running [task_id: task_1_99999999] [{TS}]",
    }[edit]
    text = f.read_text().replace(line, changed)
    editor_saves(f, text)
    assert restore_lost_markers(f) == []
    assert f.read_text() == text


def test_an_edit_elsewhere_that_keeps_our_marker_restores_nothing(tmp_path: Path) -> None:
    f = plan(tmp_path)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    text = f.read_text().replace("Notes.", "Notes.\nMore notes.")
    editor_saves(f, text)
    assert restore_lost_markers(f) == []
    assert f.read_text() == text


def test_restore_changes_only_the_restored_header_lines(tmp_path: Path) -> None:
    crlf = ("\ufeff" + PLAN.replace("Notes.", "Notes with trailing space   ")).replace("\n", "\r\n")
    f = tmp_path / "SPEC.md"
    f.write_bytes(crlf.encode())
    mark(f, 2, STATUS_DONE, "task_2_00000000", TS)
    marked = f.read_bytes()
    f2 = tmp_path / ".swap"
    f2.write_bytes(crlf.encode() + b"A line added.\r\n")
    os.replace(f2, f)
    assert len(restore_lost_markers(f)) == 1
    assert f.read_bytes() == marked + b"A line added.\r\n"


def test_no_journal_means_nothing_to_do_and_no_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_dotasks.plan import specmd

    f = plan(tmp_path)
    monkeypatch.setattr(specmd, "header_lines", lambda text: pytest.fail("parsed"))
    assert restore_lost_markers(f) == []
    assert restore_lost_markers(tmp_path / "missing.md") == []


def test_a_journal_whose_lines_are_not_in_the_plan_costs_no_parse(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_dotasks.plan import specmd

    f = plan(tmp_path)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    marking.reset_cache()
    monkeypatch.setattr(specmd, "header_lines", lambda text: pytest.fail("parsed"))
    assert restore_lost_markers(f) == []  # our marker is intact: the stale line is nowhere


def test_restore_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = plan(tmp_path)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    editor_saves(f, PLAN)
    os.chmod(f, 0o444)  # read-only: left alone, journal kept for a later run
    try:
        assert restore_lost_markers(f) == []
        assert f.read_text() == PLAN
    finally:
        os.chmod(f, 0o644)

    def broken(*a: object, **k: object) -> None:
        raise marking.MarkError("the plan kept changing", path=f)

    monkeypatch.setattr(filecas, "write", broken)
    messages = restore_lost_markers(f)
    assert len(messages) == 1 and "could not restore markers" in messages[0] and "kept changing" in messages[0]


def test_a_torn_journal_line_is_skipped(tmp_path: Path) -> None:
    f = plan(tmp_path)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    with open(journal.journal_path(f), "a") as fh:
        fh.write('{"step": 2, "task_id": "task_2_0000')  # a kill in the middle of an append
    editor_saves(f, PLAN)
    assert len(restore_lost_markers(f)) == 1
    assert statuses(f) == [STATUS_DONE, STATUS_TODO, STATUS_TODO]


def test_the_journal_is_compacted_to_the_last_entry_per_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "COMPACT_BYTES", 2000)
    f = plan(tmp_path)
    for k in range(30):
        mark(f, 1 + k % 3, STATUS_DONE if k % 2 else STATUS_RUNNING, f"task_{1 + k % 3}_{k:08x}", TS)
    entries = journal.read(f)
    assert len(entries) < 30 and journal.journal_path(f).stat().st_size <= 2000 + 400
    last = {e.step: e for e in entries}
    assert last[3].task_id == f"task_3_{29:08x}"


def test_two_plans_in_one_folder_keep_their_own_journals(tmp_path: Path) -> None:
    a = plan(tmp_path)
    b = tmp_path / "OTHER.md"
    b.write_text(PLAN)
    mark(a, 1, STATUS_DONE, "task_1_00000000", TS)
    mark(b, 2, STATUS_DONE, "task_2_00000000", TS)
    editor_saves(a, PLAN)
    assert len(restore_lost_markers(a)) == 1
    assert journal.read(b) and journal.read(b)[0].step == 2
    assert statuses(a) == [STATUS_DONE, STATUS_TODO, STATUS_TODO]


def test_restore_through_a_symlinked_plan(tmp_path: Path) -> None:
    real_dir = tmp_path / "plans"
    real_dir.mkdir()
    target = plan(real_dir)
    link = tmp_path / "SPEC.md"
    link.symlink_to(target)
    mark(link, 3, STATUS_DONE, "task_3_00000000", TS)
    editor_saves(target, PLAN)
    assert len(restore_lost_markers(link)) == 1
    assert link.is_symlink() and statuses(target) == [STATUS_TODO, STATUS_TODO, STATUS_DONE]
