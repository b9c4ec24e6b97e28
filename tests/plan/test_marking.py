"""Status markers (DESIGN.md section 2): the header line, its rewrite, and the file operation."""

from __future__ import annotations

import multiprocessing
import os
import re
import stat
from pathlib import Path

import pytest

from pytest_dotasks.errors import MarkError
from pytest_dotasks.plan import filecas, fileops, marking
from pytest_dotasks.plan.header import format_marker, parse_header, read_marker, render_header
from pytest_dotasks.plan.marking import lock_path, mark, rewrite_header
from pytest_dotasks.plan.model import STATUS_DONE, STATUS_FAILED, STATUS_RUNNING, STATUS_TODO
from pytest_dotasks.plan.specmd import parse_file, parse_text, split_lines
from tests.paths import FIXTURES, SEED

P = Path("SPEC.md")
TS = "2026-11-24T10:30:12"
SYMBOLS = ("✓", "✗", "⏳")


def symbols_in(line: str) -> int:
    return sum(line.count(s) for s in SYMBOLS)


def only_line_changed(before: bytes, after: bytes, index: int) -> None:
    """Every byte outside line ``index`` is identical (endings included)."""
    b = re.split(rb"(\r\n|\r|\n)", before)
    a = re.split(rb"(\r\n|\r|\n)", after)
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(b, a)):
        if k != 2 * index:
            assert x == y, (k, x, y)


# --------------------------------------------------------------------------- header parse


@pytest.mark.parametrize(
    ("line", "status", "task_id", "stamp", "title"),
    [
        # forms the plugin writes (DESIGN.md section 2)
        ("- [x] **STEP 8**: Generate Full Training Dataset ✓ [task_id: task_8_3fa2b8c1] [2026-11-24T10:30:12]",
         STATUS_DONE, "task_8_3fa2b8c1", "2026-11-24T10:30:12", "Generate Full Training Dataset"),
        ("- [ ] **STEP 9**: Deduplicate ✗ Failed [task_id: task_9_0b1c2d3e] [2026-11-24T10:41:02]",
         STATUS_FAILED, "task_9_0b1c2d3e", "2026-11-24T10:41:02", "Deduplicate"),
        ("- [ ] **STEP 13**: Train the student ⏳ Running [task_id: task_13_77aa01ff] [2026-11-24T11:02:40]",
         STATUS_RUNNING, "task_13_77aa01ff", "2026-11-24T11:02:40", "Train the student"),
        ("- [ ] **STEP 9**: Deduplicate ✗ Failed [task_id: task_9_0b1c2d3e] [2026-11-24T10:41:02] exit 2",
         STATUS_FAILED, "task_9_0b1c2d3e", "2026-11-24T10:41:02", "Deduplicate"),
        # hand forms from the seed
        ("- [x] **STEP 1**: Setup Tinker API Access - Create account, obtain API key ✓ [2025-11-13]",
         STATUS_DONE, None, "2025-11-13", "Setup Tinker API Access - Create account, obtain API key"),
        (("- [x] **STEP 8**: Generate Full Training Dataset - Run teacher ✓ [2025-11-13] [task_3-10_4a70c4a2] (10 test"
          " examples)"), STATUS_DONE, "task_3-10_4a70c4a2", "2025-11-13",
         "Generate Full Training Dataset - Run teacher"),
        ("- [x] **STEP 11**: Configure - LoRA ✓ [2025-11-13] [task_11-20_75477e2f]",
         STATUS_DONE, "task_11-20_75477e2f", "2025-11-13", "Configure - LoRA"),
        ("- [x] **STEP 12**: Write script ✓ [2025-11-13] (scaled for 1000 steps)",
         STATUS_DONE, None, "2025-11-13", "Write script"),
        ("- [ ] **STEP 13**: Execute Training - Run training (pending data generation)",
         STATUS_TODO, None, None, "Execute Training - Run training (pending data generation)"),
        # the original command's form, marker right after the colon
        ("- [x] **STEP 4**: ✓ [task_id: task_4_1a2b3c4d] [2025-11-13T10:30:00.123456] Validate Character Data",
         STATUS_DONE, "task_4_1a2b3c4d", "2025-11-13T10:30:00.123456", "Validate Character Data"),
        ("- [ ] **STEP 4**: ✗ Failed [task_id: task_4_1a2b3c4d] [2025-11-13T10:30:00] Validate",
         STATUS_FAILED, "task_4_1a2b3c4d", "2025-11-13T10:30:00", "Validate"),
        # checkbox alone, upper-case X, no title
        ("- [X] **STEP 2**: Install", STATUS_DONE, None, None, "Install"),
        ("- [x] **STEP 2**: Install", STATUS_DONE, None, None, "Install"),
        ("- [ ] **STEP 2**: Install", STATUS_TODO, None, None, "Install"),
        ("- [ ] **STEP 2**:", STATUS_TODO, None, None, ""),
        # a tick written without checking the box still reads as done
        ("- [ ] **STEP 2**: Install ✓ [task_id: task_2_00000000] [2026-01-01T00:00:00]",
         STATUS_DONE, "task_2_00000000", "2026-01-01T00:00:00", "Install"),
    ],
)
def test_marker_forms_are_read(line: str, status: str, task_id: str | None, stamp: str | None, title: str) -> None:
    h = parse_header(line)
    assert h is not None
    assert (h.marker.status, h.marker.task_id, h.marker.timestamp, h.title) == (status, task_id, stamp, title)
    # and every form is replaced cleanly: one marker, same title
    for new in (STATUS_DONE, STATUS_FAILED, STATUS_RUNNING):
        out = render_header(h, new, "task_2_aaaaaaaa", TS)
        assert symbols_in(out) == 1
        h2 = parse_header(out)
        assert h2 is not None and h2.title == title and h2.number == h.number
        assert (h2.marker.status, h2.marker.task_id, h2.marker.timestamp) == (new, "task_2_aaaaaaaa", TS)
        assert out.startswith(line[: line.index("[") + 1])  # bullet and indent untouched
        assert out[line.index("]"):].startswith(line[line.index("]"): line.index(":") + 1])  # label untouched


@pytest.mark.parametrize(
    "line",
    ["- [ ] not a step", "- **STEP 1**: no box", "# STEP 1: heading", "", "   ", "- [ ] STEP 1: plain",
     "1. [ ] **STEP 1**: ordered", "- [y] **STEP 1**: odd box", "-[ ] **STEP 1**: no space"],
)
def test_not_header_lines(line: str) -> None:
    assert parse_header(line) is None


def test_header_parts_and_trailing_space() -> None:
    h = parse_header("   * [ ] **Step 12:**  A  title   ")
    assert h is not None
    assert (h.lead, h.box, h.label, h.number, h.title, h.marker_text, h.trailing) == (
        "   * [", " ", "] **Step 12:**", 12, "A  title", "", "   ")
    out = render_header(h, STATUS_DONE, "task_12_0123abcd", TS)
    assert out == f"   * [x] **Step 12:**  A  title ✓ [task_id: task_12_0123abcd] [{TS}]   "


def test_render_keeps_every_byte_before_the_marker() -> None:
    line = "\t-   [X] **STEP 3**:Title\twith tab  ✗ Failed [task_id: task_3_00000000] [2026-01-01T00:00:00]  "
    h = parse_header(line)
    assert h is not None
    out = render_header(h, STATUS_DONE, "task_3_11111111", TS)
    assert out == f"\t-   [X] **STEP 3**:Title\twith tab  ✓ [task_id: task_3_11111111] [{TS}]  "


def test_box_follows_status() -> None:
    h = parse_header("- [x] **STEP 1**: a ✓ [task_id: task_1_00000000] [2026-01-01T00:00:00]")
    assert h is not None
    assert render_header(h, STATUS_FAILED, "task_1_11111111", TS).startswith("- [ ] ")
    assert render_header(h, STATUS_RUNNING, "task_1_11111111", TS).startswith("- [ ] ")
    assert render_header(h, STATUS_DONE, "task_1_11111111", TS).startswith("- [x] ")


def test_format_marker_and_note_stays_on_one_line() -> None:
    assert format_marker(STATUS_DONE, "task_8_3fa2b8c1", TS) == f"✓ [task_id: task_8_3fa2b8c1] [{TS}]"
    assert format_marker(STATUS_FAILED, "t", TS) == f"✗ Failed [task_id: t] [{TS}]"
    assert format_marker(STATUS_RUNNING, "t", TS) == f"⏳ Running [task_id: t] [{TS}]"
    assert format_marker(STATUS_FAILED, "t", TS, "exit 2\nTraceback:\r\n  boom") == \
        f"✗ Failed [task_id: t] [{TS}] exit 2 Traceback: boom"
    text = "- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n"
    out = rewrite_header(text, 1, STATUS_FAILED, "task_1_00000000", TS, note="line one\nline two")
    assert len(split_lines(out)) == len(split_lines(text))
    assert [s.number for s in parse_text(out, P).steps] == [1, 2]


def test_note_is_dropped_when_the_title_is_empty() -> None:
    """Otherwise the note would read back as the title of the after-colon form."""
    h = parse_header("- [ ] **STEP 5**:")
    assert h is not None
    out = render_header(h, STATUS_FAILED, "task_5_00000000", TS, "(exit 2)")
    assert out == f"- [ ] **STEP 5**: ✗ Failed [task_id: task_5_00000000] [{TS}]"
    assert parse_header(out).title == ""  # type: ignore[union-attr]
    titled = parse_header("- [ ] **STEP 5**: Train")
    assert render_header(titled, STATUS_FAILED, "t", TS, "(exit 2)").endswith("] (exit 2)")  # type: ignore[arg-type]


def test_read_marker_checkbox_wins_over_a_contradicting_symbol() -> None:
    assert read_marker("x", "✗ Failed [task_id: t] [2026-01-01]").status == STATUS_DONE
    assert read_marker(" ", "").status == STATUS_TODO
    assert read_marker(" ", "⏳ Running [task_id: task_1_00000000]").task_id == "task_1_00000000"


# --------------------------------------------------------------------------- rewrite_header (pure)


def test_remark_replaces_the_whole_region_never_two_markers() -> None:
    text = "# Plan\n\n- [ ] **STEP 8**: Generate data\n  - kind: data\n"
    seq = [(STATUS_RUNNING, "task_8_00000001"), (STATUS_FAILED, "task_8_00000002"), (STATUS_RUNNING, "task_8_00000003"),
           (STATUS_DONE, "task_8_00000004"), (STATUS_DONE, "task_8_00000005")]
    for status, tid in seq:
        text = rewrite_header(text, 8, status, tid, TS, note="(note)" if status == STATUS_FAILED else "")
        line = split_lines(text)[2]
        assert symbols_in(line) == 1 and line.count("task_id") == 1 and line.count("[20") == 1
        s = parse_text(text, P).steps[0]
        assert (s.marker.status, s.marker.task_id, s.title) == (status, tid, "Generate data")
        assert "(note)" not in line or status == STATUS_FAILED
    assert text == f"# Plan\n\n- [x] **STEP 8**: Generate data ✓ [task_id: task_8_00000005] [{TS}]\n  - kind: data\n"


def test_after_colon_form_is_normalised_keeping_title() -> None:
    text = ("- [x] **STEP 4**: ✓ [task_id: task_4_1a2b3c4d] [2025-11-13T10:30:00.123456] Validate Character Data - "
            "Filter to Beethoven\n")
    out = rewrite_header(text, 4, STATUS_DONE, "task_4_99999999", TS)
    assert out == (f"- [x] **STEP 4**: Validate Character Data - Filter to Beethoven ✓ [task_id: task_4_99999999] "
                   f"[{TS}]\n")


def test_both_a_leading_and_a_trailing_marker_leave_one() -> None:
    text = ("- [x] **STEP 4**: ✓ [task_id: task_4_1a2b3c4d] [2025-11-13T10:30:00] Title ✓ [task_id: task_4_aaaaaaaa] "
            "[2026-01-01T00:00:00]\n")
    out = rewrite_header(text, 4, STATUS_FAILED, "task_4_bbbbbbbb", TS)
    assert out == f"- [ ] **STEP 4**: Title ✗ Failed [task_id: task_4_bbbbbbbb] [{TS}]\n"


def test_seed_hand_markers_are_replaced_cleanly() -> None:
    if not SEED.exists():
        pytest.skip(f"{SEED} not available")
    text = SEED.read_text(encoding="utf-8")
    before = parse_text(text, P)
    for s in before.steps:
        text = rewrite_header(text, s.number, STATUS_DONE, f"task_{s.number}_0000abcd", TS)
    after = parse_text(text, P)
    assert [s.title for s in after.steps] == [s.title for s in before.steps]
    assert [s.description for s in after.steps] == [s.description for s in before.steps]
    lines = split_lines(text)
    for s in after.steps:
        assert s.marker.task_id == f"task_{s.number}_0000abcd" and s.done
        assert symbols_in(lines[s.line - 1]) == 1
        assert "(10 test examples)" not in lines[s.line - 1] and "[task_3-10" not in lines[s.line - 1]
    # every other line of the seed is untouched
    orig = split_lines(SEED.read_text(encoding="utf-8"))
    header_rows = {s.line - 1 for s in after.steps}
    assert [ln for i, ln in enumerate(orig) if i not in header_rows] == \
        [ln for i, ln in enumerate(lines) if i not in header_rows]


def test_missing_step_is_mark_error() -> None:
    with pytest.raises(MarkError) as info:
        rewrite_header("- [ ] **STEP 1**: a\n", 2, STATUS_DONE, "t", TS, path=P)
    assert "STEP 2" in info.value.message and info.value.fix


def test_step_in_fence_is_not_marked() -> None:
    text = "```\n- [ ] **STEP 1**: example\n```\n- [ ] **STEP 2**: real\n"
    with pytest.raises(MarkError):
        rewrite_header(text, 1, STATUS_DONE, "t", TS)
    out = rewrite_header(text, 2, STATUS_DONE, "t", TS)
    assert out.startswith("```\n- [ ] **STEP 1**: example\n```\n- [x] **STEP 2**: real ✓")


def test_cache_follows_external_edits_that_shift_lines() -> None:
    text = "# Plan\n\n- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n- [ ] **STEP 3**: c\n"
    text = rewrite_header(text, 1, STATUS_DONE, "task_1_00000000", TS)  # fills the cache
    assert marking._cache.text == text
    edited = "# Plan\n\nA new paragraph\nover two lines.\n\n" + text.split("\n\n", 1)[1]
    out = rewrite_header(edited, 2, STATUS_DONE, "task_2_00000000", TS)
    lines = split_lines(out)
    assert lines[2:4] == ["A new paragraph", "over two lines."]
    assert lines[6].startswith("- [x] **STEP 2**: b ✓ [task_id: task_2_00000000]")
    assert lines[5].startswith("- [x] **STEP 1**: a ✓ [task_id: task_1_00000000]")
    assert lines[7] == "- [ ] **STEP 3**: c"
    # and removing lines above works as well
    shorter = out.replace("# Plan\n\nA new paragraph\nover two lines.\n\n", "")
    out2 = rewrite_header(shorter, 3, STATUS_FAILED, "task_3_00000000", TS)
    assert split_lines(out2)[2].startswith("- [ ] **STEP 3**: c ✗ Failed")


def test_cache_is_not_fooled_by_a_renumbered_step() -> None:
    text = "- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n"
    text = rewrite_header(text, 1, STATUS_DONE, "task_1_00000000", TS)
    renumbered = text.replace("**STEP 2**", "**STEP 5**")
    with pytest.raises(MarkError):
        rewrite_header(renumbered, 2, STATUS_DONE, "t", TS)
    swapped = "- [ ] **STEP 2**: b\n- [ ] **STEP 1**: a\n"
    out = rewrite_header(swapped, 1, STATUS_RUNNING, "task_1_11111111", TS)
    assert split_lines(out)[1].startswith("- [ ] **STEP 1**: a ⏳ Running")
    assert split_lines(out)[0] == "- [ ] **STEP 2**: b"


# --------------------------------------------------------------------------- bytes preserved


PLAN = (
    "# Plan  \n"
    "\n"
    "Intro with trailing tab\t\n"
    "- [ ] **STEP 1**: First   \n"
    "  detail line  \n"
    "  - needs: none\n"
    "- [x] **STEP 2**: Second ✓ [2025-11-13] [task_3-10_4a70c4a2] (10 test examples)\n"
    "- [ ] **STEP 3**: Café — 数据 🚀\n"
    "\n"
    "## STEP 3: Café\n"
    "Détails.\n"
)


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("final_newline", [True, False])
def test_mark_preserves_every_other_byte(tmp_path: Path, ending: str, bom: bool, final_newline: bool) -> None:
    text = PLAN.replace("\n", ending)
    if not final_newline:
        text = text[: -len(ending)]
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    f = tmp_path / "SPEC.md"
    f.write_bytes(data)
    for number, row in ((1, 3), (2, 6), (3, 7)):
        before = f.read_bytes()
        mark(f, number, STATUS_DONE, f"task_{number}_abcdef01", TS)
        after = f.read_bytes()
        only_line_changed(before, after, row)
        assert after.startswith(b"\xef\xbb\xbf") == bom
        assert after.count(b"\xef\xbb\xbf") == (1 if bom else 0)
    out = f.read_bytes().decode("utf-8")
    rows = re.split(r"\r\n|\r|\n", out.removeprefix("\ufeff"))
    assert rows[3] == f"- [x] **STEP 1**: First ✓ [task_id: task_1_abcdef01] [{TS}]   "
    assert rows[6] == f"- [x] **STEP 2**: Second ✓ [task_id: task_2_abcdef01] [{TS}]"
    assert rows[7] == f"- [x] **STEP 3**: Café — 数据 🚀 ✓ [task_id: task_3_abcdef01] [{TS}]"
    spec = parse_file(f)
    assert [s.title for s in spec.steps] == ["First", "Second", "Café — 数据 🚀"]
    assert all(s.done for s in spec.steps)


@pytest.mark.parametrize("variant", ["as-is", "crlf+bom"])
@pytest.mark.parametrize("source", [FIXTURES / "character-plan.md", SEED], ids=["character", "seed"])
def test_marking_every_step_of_a_real_plan_touches_only_header_lines(tmp_path: Path, source: Path,
                                                                      variant: str) -> None:
    if not source.exists():
        pytest.skip(f"{source} not available")
    data = source.read_bytes()
    if variant == "crlf+bom":
        data = b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n")
    f = tmp_path / "SPEC.md"  # a copy: the plan itself is never written
    f.write_bytes(data)
    before = parse_file(f)
    for i, s in enumerate(before.steps):
        status = (STATUS_DONE, STATUS_FAILED, STATUS_RUNNING)[i % 3]
        prev = f.read_bytes()
        mark(f, s.number, status, f"task_{s.number}_0f0f0f0f", TS, note="(exit 1)" if status == STATUS_FAILED else "")
        only_line_changed(prev, f.read_bytes(), s.line - 1)
    after = parse_file(f)
    assert [(s.number, s.title, s.description, s.fields, s.phase) for s in after.steps] == \
        [(s.number, s.title, s.description, s.fields, s.phase) for s in before.steps]
    assert [s.marker.task_id for s in after.steps] == [f"task_{s.number}_0f0f0f0f" for s in before.steps]
    rows = split_lines(f.read_bytes().decode("utf-8").removeprefix("\ufeff"))
    assert all(symbols_in(rows[s.line - 1]) == 1 for s in after.steps)


def test_mark_first_line_with_bom(tmp_path: Path) -> None:
    f = tmp_path / "SPEC.md"
    f.write_bytes(b"\xef\xbb\xbf- [ ] **STEP 1**: top\r\n- [ ] **STEP 2**: next\r\n")
    mark(f, 1, STATUS_RUNNING, "task_1_00000000", TS)
    assert f.read_bytes() == (b"\xef\xbb\xbf- [ ] **STEP 1**: top \xe2\x8f\xb3 Running [task_id: task_1_00000000] ["
                              + TS.encode() + b"]\r\n- [ ] **STEP 2**: next\r\n")
    assert marking.read_marker(f, 1).status == STATUS_RUNNING  # type: ignore[union-attr]


def test_read_marker_from_file(tmp_path: Path) -> None:
    f = tmp_path / "SPEC.md"
    f.write_text("- [ ] **STEP 1**: a\n- [x] **STEP 2**: b ✓ [task_id: task_2_12345678] [2026-01-01T00:00:00]\n")
    assert marking.read_marker(f, 1).status == STATUS_TODO  # type: ignore[union-attr]
    assert marking.read_marker(f, 2).task_id == "task_2_12345678"  # type: ignore[union-attr]
    assert marking.read_marker(f, 3) is None
    assert marking.read_marker(tmp_path / "gone.md", 1) is None


# --------------------------------------------------------------------------- the file operation


def test_mark_is_atomic_and_keeps_the_mode(tmp_path: Path) -> None:
    f = tmp_path / "SPEC.md"
    f.write_text("- [ ] **STEP 1**: a\n")
    os.chmod(f, 0o640)
    inode = f.stat().st_ino
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert f.stat().st_ino != inode  # a new file renamed over the old one, not written in place
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("SPEC.md", ".dotasks")]
    assert leftovers == []
    assert lock_path(f).parent.is_dir()


def test_mark_through_a_symlink_updates_the_target(tmp_path: Path) -> None:
    real_dir = tmp_path / "plans"
    real_dir.mkdir()
    target = real_dir / "plan.md"
    target.write_text("- [ ] **STEP 1**: a\n")
    os.chmod(target, 0o600)
    link = tmp_path / "SPEC.md"
    link.symlink_to(target)
    mark(link, 1, STATUS_DONE, "task_1_00000000", TS)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "✓ [task_id: task_1_00000000]" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_read_only_file_is_mark_error_and_unchanged(tmp_path: Path) -> None:
    f = tmp_path / "SPEC.md"
    f.write_text("- [ ] **STEP 1**: a\n")
    before = f.read_bytes()
    os.chmod(f, 0o444)
    try:
        with pytest.raises(MarkError) as info:
            mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
        assert "read-only" in info.value.message
        assert info.value.fix and ("chmod" in info.value.fix or "--no-mark" in info.value.fix)
        assert f.read_bytes() == before
        assert stat.S_IMODE(f.stat().st_mode) == 0o444
    finally:
        os.chmod(f, 0o644)


def test_deleted_file_is_mark_error(tmp_path: Path) -> None:
    f = tmp_path / "SPEC.md"
    with pytest.raises(MarkError) as info:
        mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    assert "deleted" in info.value.message and info.value.fix
    assert not f.exists()


def test_invalid_utf8_is_mark_error(tmp_path: Path) -> None:
    f = tmp_path / "SPEC.md"
    f.write_bytes(b"- [ ] **STEP 1**: caf\xe9\n")
    with pytest.raises(MarkError):
        mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    assert f.read_bytes() == b"- [ ] **STEP 1**: caf\xe9\n"


def test_a_persons_edit_between_marks_survives(tmp_path: Path) -> None:
    f = tmp_path / "SPEC.md"
    f.write_text("# Plan\n\n- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n\nNotes.\n")
    mark(f, 1, STATUS_RUNNING, "task_1_00000000", TS)
    # a person edits the file while the step runs: a line above, a word below
    text = f.read_text()
    f.write_text(text.replace("# Plan\n", "# Plan\n\nAdded by hand.\n").replace("Notes.", "Notes, edited."))
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    mark(f, 2, STATUS_FAILED, "task_2_00000000", TS)
    assert f.read_text() == (
        "# Plan\n\nAdded by hand.\n\n"
        f"- [x] **STEP 1**: a ✓ [task_id: task_1_00000000] [{TS}]\n"
        f"- [ ] **STEP 2**: b ✗ Failed [task_id: task_2_00000000] [{TS}]\n\nNotes, edited.\n"
    )


@pytest.mark.parametrize("edit", ["renumber", "remove"])
def test_step_renumbered_or_removed_is_mark_error(tmp_path: Path, edit: str) -> None:
    f = tmp_path / "SPEC.md"
    f.write_text("- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n")
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    text = f.read_text()
    text = text.replace("**STEP 2**", "**STEP 3**") if edit == "renumber" else text.split("- [ ] **STEP 2**")[0]
    f.write_text(text)
    with pytest.raises(MarkError) as info:
        mark(f, 2, STATUS_DONE, "task_2_00000000", TS)
    assert "STEP 2" in info.value.message and info.value.fix
    assert f.read_text() == text


def test_step_found_again_after_lines_inserted_above(tmp_path: Path) -> None:
    f = tmp_path / "SPEC.md"
    f.write_text("- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n- [ ] **STEP 3**: c\n")
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)  # cache now knows the header lines
    f.write_text("# Heading added\n\nand a paragraph\n\n" + f.read_text())
    mark(f, 3, STATUS_DONE, "task_3_00000000", TS)
    lines = f.read_text().splitlines()
    assert lines[4].startswith("- [x] **STEP 1**: a ✓")
    assert lines[5] == "- [ ] **STEP 2**: b"
    assert lines[6].startswith("- [x] **STEP 3**: c ✓ [task_id: task_3_00000000]")


# --------------------------------------------------------------------------- concurrency

N_STEPS, N_PROCS, ROUNDS = 40, 4, 10


def _worker(path: str, proc: int) -> None:
    mine = [n for n in range(1, N_STEPS + 1) if n % N_PROCS == proc]
    statuses = (STATUS_RUNNING, STATUS_FAILED, STATUS_DONE)
    for r in range(ROUNDS):
        for n in mine:
            status = STATUS_DONE if r == ROUNDS - 1 else statuses[(r + n) % 3]
            mark(Path(path), n, status, f"task_{n}_{r:08x}", f"2026-01-01T00:00:{r:02d}")


def test_concurrent_marks_from_four_processes(tmp_path: Path) -> None:
    f = tmp_path / "SPEC.md"
    body = ["# Forty steps", ""]
    for n in range(1, N_STEPS + 1):
        body += [f"- [ ] **STEP {n}**: Step number {n}", f"  Description of {n}."]
    f.write_text("\n".join(body) + "\n")
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    procs = [ctx.Process(target=_worker, args=(str(f), p)) for p in range(N_PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * N_PROCS
    spec = parse_file(f)
    assert [s.number for s in spec.steps] == list(range(1, N_STEPS + 1))
    lines = f.read_text().splitlines()
    assert len(lines) == 2 + 2 * N_STEPS
    for s in spec.steps:
        assert s.done and s.marker.task_id == f"task_{s.number}_{ROUNDS - 1:08x}"
        assert s.title == f"Step number {s.number}" and s.description == f"Description of {s.number}."
        assert symbols_in(lines[s.line - 1]) == 1


# --------------------------------------------------------------------------- issue 12: nothing lost


def plan_file(tmp_path: Path, text: str = "# Plan\n\n- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n\nNotes.\n") -> Path:
    f = tmp_path / "SPEC.md"
    f.write_text(text)
    return f


def test_a_symlink_planted_at_the_old_temp_name_is_never_followed(tmp_path: Path) -> None:
    """The temp file had one fixed name: a link planted there made marking overwrite its target."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("not yours\n")
    project = tmp_path / "project"
    project.mkdir()
    f = plan_file(project)
    (project / ".SPEC.md.marking.dotasks-tmp").symlink_to(victim)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    assert victim.read_text() == "not yours\n"
    assert not f.is_symlink() and "✓ [task_id: task_1_00000000]" in f.read_text()


def test_temp_files_are_exclusive_and_random_and_leftovers_are_swept(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    f = plan_file(tmp_path)
    left = tmp_path / ".SPEC.md.k1ll3d00.dotasks-tmp"  # what a kill between write and rename leaves
    left.write_text("half")
    other = tmp_path / ".SPEC.md.notours.txt"
    other.write_text("a person's file")
    names: list[str] = []
    real_mkstemp = fileops.tempfile.mkstemp

    def spy(**kw: object) -> tuple[int, str]:
        fd, name = real_mkstemp(**kw)  # type: ignore[call-overload]
        names.append(Path(name).name)
        return fd, name

    monkeypatch.setattr(fileops.tempfile, "mkstemp", spy)
    monkeypatch.setattr(fileops, "swept", set())
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    mark(f, 2, STATUS_DONE, "task_2_00000000", TS)
    assert len(names) == 2 and names[0] != names[1]
    assert all(re.fullmatch(r"\.SPEC\.md\.[a-z0-9_]{8}\.dotasks-tmp", n) for n in names)
    assert not left.exists() and other.read_text() == "a person's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".SPEC.md.notours.txt", ".dotasks", "SPEC.md"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a file to another owner")
def test_marking_as_root_keeps_owner_group_and_mode(tmp_path: Path) -> None:
    """A plan owned by uid 1000, mode 640, became root:root after root marked it."""
    f = plan_file(tmp_path)
    os.chown(f, 1000, 1000)
    os.chmod(f, 0o640)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    st = f.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o640)
    assert "✓ [task_id: task_1_00000000]" in f.read_text()


def test_a_plan_whose_owner_a_new_file_cannot_take_is_written_in_place(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's group-writable plan: a new file would be ours, so the file itself is rewritten."""
    f = plan_file(tmp_path)
    inode = f.stat().st_ino
    monkeypatch.setattr(os, "geteuid", lambda: f.stat().st_uid + 1)  # "not the owner"

    def refuse(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", refuse)
    mark(f, 2, STATUS_FAILED, "task_2_00000000", TS)
    assert f.stat().st_ino == inode
    assert f.read_text() == f"# Plan\n\n- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b ✗ Failed [task_id: task_2_00000000] [{TS}]\n\nNotes.\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".dotasks-tmp")] == []


def test_a_hard_linked_plan_is_written_in_place_so_both_names_see_the_mark(tmp_path: Path) -> None:
    """A rename would cut the link: the other name would keep the old plan forever."""
    f = plan_file(tmp_path)
    other = tmp_path / "PLAN-copy.md"
    os.link(f, other)
    inode = f.stat().st_ino
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    mark(other, 2, STATUS_RUNNING, "task_2_00000000", TS)
    assert f.stat().st_ino == other.stat().st_ino == inode and f.stat().st_nlink == 2
    assert f.read_text() == other.read_text()
    spec = parse_file(f)
    assert [s.marker.status for s in spec.steps] == [STATUS_DONE, STATUS_RUNNING]
    assert f.read_text().endswith("\n\nNotes.\n")


def test_a_hard_linked_plan_shrinking_is_truncated(tmp_path: Path) -> None:
    f = plan_file(tmp_path, f"- [x] **STEP 1**: a ✓ [task_id: task_1_00000000] [{TS}] a long note here\nEnd.\n")
    os.link(f, tmp_path / "twin.md")
    mark(f, 1, STATUS_RUNNING, "task_1_11111111", TS)
    assert f.read_text() == f"- [ ] **STEP 1**: a ⏳ Running [task_id: task_1_11111111] [{TS}]\nEnd.\n"


class _Person:
    """Writes to the plan at the one moment a test wants (between our read and our swap)."""

    def __init__(self, f: Path, times: int = 1, how: str = "append") -> None:
        self.f, self.times, self.how = f, times, how
        self.lines: list[str] = []

    def __call__(self) -> None:
        if len(self.lines) >= self.times:
            return
        line = f"A person's line {len(self.lines)}.\n"
        if self.how == "append":
            with open(self.f, "a") as fh:
                fh.write(line)
        else:  # an editor's save: a new file renamed over the plan
            swap = self.f.with_name(".SPEC.md.swp")
            swap.write_text(self.f.read_text() + line)
            os.replace(swap, self.f)
        self.lines.append(line)


@pytest.mark.parametrize("how", ["append", "editor"])
def test_a_write_after_our_read_is_kept_and_the_mark_redone_on_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  how: str) -> None:
    f = plan_file(tmp_path)
    person = _Person(f, how=how)
    real_temp = fileops.temp_file

    def temp_then_person(*a: object) -> object:
        person()  # the person writes while our new text is being written
        return real_temp(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(fileops, "temp_file", temp_then_person)
    mark(f, 2, STATUS_DONE, "task_2_00000000", TS)
    assert f.read_text() == (f"# Plan\n\n- [ ] **STEP 1**: a\n- [x] **STEP 2**: b ✓ [task_id: task_2_00000000] [{TS}]"
                             "\n\nNotes.\nA person's line 0.\n")


def test_a_write_between_the_check_and_the_swap_is_swapped_back(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if fileops.renameat2() is None:
        pytest.skip("no renameat2 here")
    f = plan_file(tmp_path)
    person = _Person(f)
    real_exchange = fileops.exchange
    calls: list[str] = []

    def person_then_exchange(a: str, b: str) -> bool:
        calls.append(a)
        person()  # lands after our check, before the swap: only the swapped-out file shows it
        return real_exchange(a, b)

    monkeypatch.setattr(fileops, "exchange", person_then_exchange)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    assert len(calls) == 3  # swap, swap back, swap again on the person's text
    assert f.read_text().endswith("\nNotes.\nA person's line 0.\n")
    assert "✓ [task_id: task_1_00000000]" in f.read_text()


def test_without_rename_exchange_a_write_reaching_the_old_file_is_put_back(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    f = plan_file(tmp_path)
    person = _Person(f)
    real_replace = os.replace
    monkeypatch.setattr(fileops, "exchange", lambda a, b: False)  # macOS, or a file system without it

    def person_then_replace(a: str, b: object) -> None:
        person()  # into the old file, after our check
        real_replace(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", person_then_replace)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    text = f.read_text()
    assert text.endswith("\nNotes.\nA person's line 0.\n") and "✓ [task_id: task_1_00000000]" in text


def test_a_plan_that_never_stops_changing_is_a_mark_error_and_keeps_the_persons_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = plan_file(tmp_path)
    person = _Person(f, times=100)
    real_temp = fileops.temp_file

    def temp_then_person(*a: object) -> object:
        person()
        return real_temp(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(fileops, "temp_file", temp_then_person)
    monkeypatch.setattr(filecas, "CAS_ATTEMPTS", 4)
    monkeypatch.setattr(filecas, "CAS_SECONDS", 0.0)
    with pytest.raises(MarkError) as info:
        mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    assert "kept changing" in info.value.message and info.value.fix and "as you left it" in info.value.fix
    assert f.read_text() == "# Plan\n\n- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n\nNotes.\n" + "".join(person.lines)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".dotasks-tmp")] == []


def test_a_late_append_to_the_replaced_file_is_carried_into_the_plan(tmp_path: Path) -> None:
    """``echo >> SPEC.md`` opened the file just before our swap and wrote just after it."""
    f = plan_file(tmp_path)
    mark(f, 1, STATUS_RUNNING, "task_1_00000000", TS)
    late = open(f, "a")  # noqa: SIM115 - held across the next mark on purpose
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    late.write("Written late.\n")
    late.close()
    mark(f, 2, STATUS_DONE, "task_2_00000000", TS)
    text = f.read_text()
    assert text.endswith("\nNotes.\nWritten late.\n") and text.count("Written late.") == 1
    assert [s.marker.status for s in parse_file(f).steps] == [STATUS_DONE, STATUS_DONE]
    # ... and when no mark follows, the process carries it over as it exits.
    late = open(f, "a")  # noqa: SIM115
    mark(f, 2, STATUS_FAILED, "task_2_11111111", TS)
    late.write("Written later still.\n")
    late.close()
    filecas.carry_late_writes()
    assert f.read_text().endswith("Written late.\nWritten later still.\n")


@pytest.mark.parametrize("char", ["\u0085", "\u2028", "\x0c", "\x1e"])
def test_marking_splits_lines_only_at_lf_crlf_and_cr(tmp_path: Path, char: str) -> None:
    """str.splitlines() would split at U+0085 and the like: a line-based rewrite must not."""
    text = (f"# Plan{char}title\n\n- [ ] **STEP 1**: a{char}b\n  - run: printf 'x{char}y'\n\n"
            f"  Prose{char}more.\n- [ ] **STEP 2**: c\n")
    f = plan_file(tmp_path, text)
    mark(f, 2, STATUS_DONE, "task_2_00000000", TS)
    mark(f, 1, STATUS_DONE, "task_1_00000000", TS)
    after = f.read_bytes().decode("utf-8")
    assert after == text.replace(f"**STEP 1**: a{char}b\n", f"**STEP 1**: a{char}b ✓ [task_id: task_1_00000000] [{TS}]\n")\
        .replace("**STEP 2**: c\n", f"**STEP 2**: c ✓ [task_id: task_2_00000000] [{TS}]\n").replace("- [ ]", "- [x]")


def test_cache_is_not_fooled_by_a_same_shaped_edit_that_nests_the_header() -> None:
    """Found by the soup property: a cached line index held a nested, same-numbered line."""
    first = "a\nb\nc\nd\ne\nf\ng\n- [ ] **STEP 13**: x\n"
    rewrite_header(first, 13, STATUS_DONE, "task_13_00000000", TS)
    second = "a\nb\n- [ ] **STEP 13**: top\n  text\n  text\n  text\n  text\n  - [ ] **STEP 13**: nested\n"
    out = rewrite_header(second, 13, STATUS_DONE, "task_13_00000000", TS)
    assert split_lines(out)[2].startswith("- [x] **STEP 13**: top ✓")
    assert split_lines(out)[7] == "  - [ ] **STEP 13**: nested"


def test_a_persons_appended_lines_cost_no_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CAS re-read after a person's append reuses the cached header lines."""
    from pytest_dotasks.plan import specmd

    f = plan_file(tmp_path)
    marking.reset_cache()
    parses: list[int] = []
    real = specmd.header_lines
    monkeypatch.setattr(specmd, "header_lines", lambda text: parses.append(1) or real(text))
    mark(f, 1, STATUS_RUNNING, "task_1_00000000", TS)
    for k in range(5):
        with open(f, "a") as fh:
            fh.write(f"Appended {k}.\n")
        mark(f, 1 + k % 2, STATUS_DONE, f"task_{1 + k % 2}_0000000{k}", TS)
    assert len(parses) == 1
    assert f.read_text().endswith("Appended 3.\nAppended 4.\n")
