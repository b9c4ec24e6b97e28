"""Plans as people write them (issue 14): label variants, Spec Kit and Kiro tasks.md,
detection and the diagnostics that keep a plan from collecting zero steps in silence.
Pure: no pytest run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_dotasks.errors import SettingsError, SpecError
from pytest_dotasks.plan.formats import detect as detect_mod
from pytest_dotasks.plan.formats.detect import by_path, detect
from pytest_dotasks.plan.formats.kiro import groups_to_tick
from pytest_dotasks.plan.header import parse_header, render_header
from pytest_dotasks.plan.marking import rewrite_header
from pytest_dotasks.plan.model import ident_of, number_of
from pytest_dotasks.plan.selection import parse_steps, select, unknown
from pytest_dotasks.plan.specmd import header_lines, parse_text, parse_with_configs, read_text
from tests.paths import FIXTURES

FORMATS = FIXTURES / "formats"
VARIANTS = FORMATS / "variants-plan.md"
SPECKIT = FORMATS / "specs" / "001-photo-albums" / "tasks.md"
KIRO = FORMATS / ".kiro" / "specs" / "todo-app" / "tasks.md"
NOISE = FORMATS / "checkboxes-only.md"
P = Path("SPEC.md")


def load(path: Path):  # type: ignore[no-untyped-def]
    return parse_with_configs(read_text(path), path)


def needs(path: Path) -> dict[str, list[str]]:
    spec, cfgs = load(path)
    return {s.ident: [ident_of(n) for n in cfgs[s.number].needs] for s in spec.steps}


# --------------------------------------------------------------------------- ids


def test_number_of_keeps_plain_numbers_and_is_a_function_of_the_id() -> None:
    assert number_of("8") == 8 and number_of("999999999") == 999999999
    others = ["2A", "2a", "T001", "T-001", "1.1", "T320-2", "0"]
    numbers = [number_of(i) for i in others]
    assert len(set(numbers)) == len(others) and all(n > 999999999 for n in numbers)
    assert [ident_of(n) for n in numbers] == others and ident_of(8) == "8"


# --------------------------------------------------------------------------- SPEC.md label variants


@pytest.mark.parametrize(
    ("line", "ident", "title"),
    [
        ("- [ ] **Step 1: Create the folders**", "1", "Create the folders"),
        ("- [ ] **Step 2** — Fetch the data", "2", "Fetch the data"),
        ("- [ ] **Step 2** – En dash", "2", "En dash"),
        ("- [ ] **Step 3**：Fullwidth colon", "3", "Fullwidth colon"),
        ("- [ ] **Step 4** No separator", "4", "No separator"),
        ("- [ ] **Step 2A**: Lettered", "2A", "Lettered"),
        ("- [ ] **STEP 08**: Leading zero", "8", "Leading zero"),
        ("- [ ] **Step 5:** Colon inside", "5", "Colon inside"),
    ],
)
def test_step_label_variants(line: str, ident: str, title: str) -> None:
    spec = parse_text(line + "\n", P)
    (step,) = spec.steps
    assert (step.ident, step.title, step.name) == (ident, title, f"step{ident}")
    assert spec.warnings == ()


def test_variants_fixture_ids_order_and_needs_by_ident() -> None:
    spec, _ = load(VARIANTS)
    assert [s.ident for s in spec.steps] == ["1", "2", "2A", "3", "4", "5"]
    assert [s.number for s in spec.steps if s.ident.isdigit()] == [1, 2, 3, 4, 5]
    assert needs(VARIANTS)["4"] == ["2A", "3"] and needs(VARIANTS)["3"] == ["2A"]
    assert all(s.phase == "Phase 1: Set-up" for s in spec.steps)


@pytest.mark.parametrize("path", [VARIANTS, SPECKIT, KIRO])
def test_marking_round_trips_byte_for_byte(path: Path) -> None:
    """Marking every step and group changes only its box and the end of its header line."""
    text = path.read_bytes().decode()
    spec, _ = load(path)
    numbers = [s.number for s in spec.steps] + [number_of(g[0]) for g in spec.groups]
    new = text
    for n in numbers:
        new = rewrite_header(new, n, "done", f"task_{ident_of(n)}_0123abcd", "2026-11-27T10:00:00", path=path)
    old_lines, new_lines = text.split("\n"), new.split("\n")
    assert len(old_lines) == len(new_lines)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
    assert len(changed) == len(numbers)
    for i in changed:
        a, b = old_lines[i], new_lines[i]
        box = a.index("[", a.index(next(c for c in a if c in "-*+"))) + 1
        if a[box] == "P":  # "- [P] [ ] T001"
            box = a.index("[", box) + 1
        assert b[:box] == a[:box] and b[box] in "xX" and b[box + 1:].startswith(a[box + 1:])
        assert b.endswith(" [2026-11-27T10:00:00]") and " ✓ [task_id: task_" in b[len(a):]
    again, _ = parse_with_configs(new, path)
    assert all(s.done for s in again.steps)
    # and back: failed markers leave the box open and the title as it was
    for n in numbers:
        new = rewrite_header(new, n, "failed", "task_x_0000aaaa", "2026-11-27T10:00:01", path=path)
    assert [s.title for s in parse_with_configs(new, path)[0].steps] == [s.title for s in spec.steps]


def test_base_number_strips_a_duplicate_suffix() -> None:
    from pytest_dotasks.plan.model import base_number

    assert base_number(number_of("T320-2")) == number_of("T320") and base_number(number_of("1.1-3")) == number_of("1.1")
    assert base_number(8) == 8 and base_number(number_of("T-001")) == number_of("T-001")


def test_a_repeated_speckit_id_is_marked_at_its_own_line() -> None:
    text = read_text(SPECKIT)
    new = rewrite_header(text, number_of("T005-2"), "done", "task_T005-2_0123abcd", "2026-11-27T10:00:00")
    changed = [i for i, (a, b) in enumerate(zip(text.split("\n"), new.split("\n"))) if a != b]
    assert changed == [22]


def test_speckit_marks_with_a_capital_x() -> None:
    h = parse_header("- [~] T003 [P] Do it")
    assert h is not None and render_header(h, "done", "t", "s").startswith("- [X] T003 [P] Do it ✓")
    k = parse_header("- [-] 2. Group")
    assert k is not None and render_header(k, "done", "t", "s").startswith("- [x] 2. Group ✓")


# --------------------------------------------------------------------------- never a silent zero / drop


def test_checkboxes_without_a_step_are_an_error_naming_count_formats_and_line() -> None:
    with pytest.raises(SpecError) as info:
        load(NOISE)
    err = info.value
    assert err.line == 5 and "3 checkboxes but no step" in err.message
    assert "SPEC.md" in err.message and "Spec Kit" in err.message and "Kiro" in err.message
    assert err.fix and "**STEP 8**" in err.fix and "\n" not in str(err)


def test_a_plan_without_checkboxes_is_no_error() -> None:
    assert parse_text("# Notes\n\nNothing to do yet.\n", P).steps == ()


def test_checkboxes_in_code_are_not_counted() -> None:
    assert parse_text("```\n- [ ] **STEP 1**: example\n```\n", P).steps == ()


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("- [ ] **STEP 1.5**: a sub-number", "a step id is a whole number"),
        ("- [ ] **STEP -1**: negative", "a step id is a whole number"),
        ("1. [ ] **STEP 2**: ordered", "an ordered-list item"),
        ("- [ ] STEP 2: no bold", "write it as '- [ ] **STEP N**: Title'"),
    ],
)
def test_step_like_lines_warn_with_their_line(line: str, why: str) -> None:
    spec = parse_text("- [ ] **STEP 1**: one\n\n" + line + "\n", P)
    assert [s.ident for s in spec.steps] == ["1"]
    (w,) = spec.warnings
    assert w.startswith("SPEC.md:3: ") and why in w


def test_task_lines_in_an_ordered_list_warn() -> None:
    spec = parse_text("## Phase 1\n\n- [ ] T001 First\n\n1. [ ] T002 Second\n", Path("tasks.md"))
    assert [s.ident for s in spec.steps] == ["T001"]
    assert len(spec.warnings) == 1 and spec.warnings[0].startswith("tasks.md:5: ")


# --------------------------------------------------------------------------- Spec Kit


def test_speckit_ids_titles_labels_and_status() -> None:
    spec, _ = load(SPECKIT)
    assert spec.fmt == "speckit"
    assert [s.ident for s in spec.steps] == ["T001", "T002", "T003", "T004", "T005", "T-006", "T007", "T005-2", "T008"]
    assert [s.name for s in spec.steps] == [s.ident for s in spec.steps]
    by = spec.by_ident()
    assert by["T-006"].labels == ("P", "US1") and by["T-006"].parallel
    assert by["T005"].title == "Album service in src/albums/service.py" and by["T005"].labels == ("US1",)
    assert by["T004"].done and not by["T007"].done  # [X] done, [~] not
    assert by["T005"].phase == "Phase 2: Foundational"
    assert by["T005"].values("validate") == ['python -c "import sys"']


def test_speckit_order_phases_and_parallel_tasks() -> None:
    assert needs(SPECKIT) == {
        "T001": [], "T002": [], "T003": [],  # the first phase: roots ([P] need only the previous phase)
        "T004": ["T001", "T002", "T003"],  # first of its phase: the last tasks of the previous one
        "T005": ["T004"],  # file order in a phase
        "T-006": ["T001", "T002", "T003"],  # [P]: only the previous phase
        "T007": ["T005", "T-006"],  # a plain task after a [P] one joins the run before it
        "T005-2": ["T007"], "T008": ["T007"],
    }


def test_speckit_duplicate_id_gets_a_suffix_and_a_warning_naming_both_lines() -> None:
    spec, _ = load(SPECKIT)
    (w,) = [w for w in spec.warnings if "T005" in w]
    assert w.startswith(f"{SPECKIT}:23: ") and "line 16" in w and "T005-2" in w
    lines = header_lines(read_text(SPECKIT))
    assert lines[number_of("T005")] == 15 and lines[number_of("T005-2")] == 22


def test_speckit_context_lists_the_feature_documents() -> None:
    spec, _ = load(SPECKIT)
    labels = [label for label, _ in spec.steps[0].context]
    assert labels == ["spec.md", "plan.md", "data-model.md", "contracts"]
    assert all(Path(p).exists() for _, p in spec.steps[0].context)


# --------------------------------------------------------------------------- Kiro


def test_kiro_sub_tasks_are_items_parents_are_groups() -> None:
    spec, _ = load(KIRO)
    assert spec.fmt == "kiro"
    assert [s.ident for s in spec.steps] == ["1", "2.1", "2.2", "2.3", "3.1"]
    assert [(g, children) for g, _, children, _ in spec.groups] == [("2", ("2.1", "2.2", "2.3")), ("3", ("3.1",))]
    by = spec.by_ident()
    assert by["2.3"].optional and not by["2.2"].optional
    assert by["2.1"].done and by["2.1"].group == "2" and by["1"].group is None
    assert by["2.2"].phase == "2. Build the data layer"
    assert by["3.1"].values("validate") == ['python -c "print(1)"']


def test_kiro_order_skips_optional_tasks() -> None:
    assert needs(KIRO) == {"1": [], "2.1": ["1"], "2.2": ["2.1"], "2.3": ["2.2"], "3.1": ["2.2"]}


def test_kiro_context_lists_documents_and_pastes_requirements() -> None:
    spec, _ = load(KIRO)
    ctx = dict(spec.by_ident()["2.1"].context)
    assert set(ctx) == {"requirements.md", "design.md", "Requirement 1.1", "Requirement 2.2"}
    assert ctx["Requirement 2.2"] == "WHEN a todo is marked done THEN the system SHALL record the time"


def test_kiro_last_sub_task_ticks_its_group(tmp_path: Path) -> None:
    folder = tmp_path / ".kiro" / "specs" / "todo-app"
    shutil.copytree(KIRO.parent, folder)
    plan = folder / "tasks.md"
    text = plan.read_text()
    spec, _ = parse_with_configs(text, plan)
    assert groups_to_tick(spec, "3.1") == []
    text = rewrite_header(text, number_of("3.1"), "done", "t", "s", path=plan)
    assert groups_to_tick(parse_text(text, plan), "3.1") == ["3"]
    # group 2 waits for its optional 2.3 too
    text = rewrite_header(text, number_of("2.2"), "done", "t", "s", path=plan)
    assert groups_to_tick(parse_text(text, plan), "2.2") == []


# --------------------------------------------------------------------------- selection


def test_steps_selects_by_ident_and_reports_unknown_ids() -> None:
    spec, _ = load(SPECKIT)
    assert [s.ident for s in select(spec.steps, parse_steps("T001,t-006"))] == ["T001", "T-006"]
    assert unknown(parse_steps("T001,T999"), [spec.steps]) == ["T999"]
    kiro, _ = load(KIRO)
    assert [s.ident for s in select(kiro.steps, parse_steps("2"))] == ["2.1", "2.2", "2.3"]
    variants, _ = load(VARIANTS)
    assert [s.ident for s in select(variants.steps, parse_steps("2A,5"))] == ["2A", "5"]
    assert unknown(parse_steps("7"), [variants.steps]) == ["7"] and unknown(parse_steps("1-3"), [variants.steps]) == []


# --------------------------------------------------------------------------- detection


def test_detection_from_content_and_path() -> None:
    assert detect(read_text(SPECKIT), SPECKIT) == "speckit"
    assert detect(read_text(KIRO), KIRO) == "kiro"
    assert detect(read_text(VARIANTS), VARIANTS) == "specmd"
    assert detect(read_text(SPECKIT), Path("SPEC.md")) == "speckit"  # content wins
    assert detect("# empty\n", Path(".kiro/specs/x/tasks.md")) == "kiro"
    assert detect("# empty\n", Path("specs/001-x/tasks.md")) == "speckit"
    assert by_path(Path("SPEC.md")) is None and detect("# empty\n", Path("SPEC.md")) == "specmd"


def test_plan_format_forces_a_parser() -> None:
    try:
        detect_mod.force("kiro")
        assert detect(read_text(SPECKIT), SPECKIT) == "kiro"
        with pytest.raises(SpecError):  # no Kiro task line in a Spec Kit file: the silent zero is an error
            load(SPECKIT)
    finally:
        detect_mod.force(None)
    with pytest.raises(SettingsError):
        detect_mod.force("markdown")
