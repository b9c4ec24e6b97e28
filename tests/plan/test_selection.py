"""--steps: which steps a run selects (pure logic)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from pytest_dotasks.errors import SettingsError
from pytest_dotasks.plan.selection import Selection, continue_point, parse_steps, select
from pytest_dotasks.plan.specmd import parse_text


def _spec(done: set[int], n: int = 10):  # type: ignore[no-untyped-def]
    lines = [f"- [{'x' if i in done else ' '}] **STEP {i}**: step {i}" for i in range(1, n + 1)]
    return parse_text("\n".join(lines) + "\n", Path("SPEC.md")).steps


@pytest.mark.parametrize(
    ("text", "ranges"),
    [
        ("8", ((8, 8),)),
        ("1-5", ((1, 5),)),
        ("1-5,8", ((1, 5), (8, 8))),
        (" 1 - 3 , 8 ,10-10", ((1, 3), (8, 8), (10, 10))),
        ("3,3,2-4", ((2, 4),)),
        ("12", ((12, 12),)),
        ("7,1-2,3", ((1, 3), (7, 7))),  # adjacent and overlapping ranges merge
    ],
)
def test_numbers(text: str, ranges: tuple[tuple[int, int], ...]) -> None:
    sel = parse_steps(text)
    assert sel == Selection("numbers", ranges)
    assert sel.explicit()
    wanted = {n for lo, hi in ranges for n in range(lo, hi + 1)}
    assert {n for n in range(20) if n in sel} == wanted
    assert "3" not in sel  # only step numbers are members


@pytest.mark.parametrize("text", ["1-20000000", "1-99999999999999", "5-999999999999999999,2"])
def test_a_huge_range_stays_a_pair(text: str) -> None:
    """``--steps 1-20000000`` took 2.2 GB (a set of every number); ``1-99999999999999`` hung."""
    tracemalloc.start()
    try:
        sel = parse_steps(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, peak
    assert len(sel.ranges) <= 2
    assert 19_999_999 in sel and 0 not in sel and 10**18 not in sel


def test_a_million_steps_selected_by_range_costs_nothing() -> None:
    """What fails before the fix without taking the machine with it: 1-1000000 built a set."""
    tracemalloc.start()
    try:
        parse_steps("1-1000000")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, peak


def test_a_long_list_of_numbers_selects_in_file_order() -> None:
    text = ",".join(str(n) for n in range(10_000, 0, -2))
    sel = parse_steps(text)
    steps = _spec(done=set(), n=12)
    assert [s.number for s in select(steps, sel)] == [2, 4, 6, 8, 10, 12]


def test_a_step_number_with_too_many_digits_is_a_settings_error() -> None:
    with pytest.raises(SettingsError) as info:
        parse_steps("1-" + "9" * 5000)
    assert "digits" in info.value.message and "\n" not in str(info.value) and len(str(info.value)) < 300


@pytest.mark.parametrize("text", ["all", "ALL", " all ", "", None])
def test_all_is_the_default(text: str | None) -> None:
    sel = parse_steps(text)
    assert sel.mode == "all" and not sel.explicit()


@pytest.mark.parametrize("text", ["continue", "Continue", " CONTINUE "])
def test_continue(text: str) -> None:
    assert parse_steps(text).mode == "continue"


@pytest.mark.parametrize("text", ["abc", "1-", "-3", "1..5", "1-5;8", "8,", "1,,2", "step", "1-2-3", "0", "0-3",
                                  "all,3", "contin"])
def test_bad_values_are_one_line_settings_errors_with_a_fix(text: str) -> None:
    # ("2.5" is a Kiro sub-task id now: on a plan without it, "--steps 2.5" is the
    # "no such step" usage error of test_plan_formats.py.)
    with pytest.raises(SettingsError) as info:
        parse_steps(text)
    err = info.value
    assert err.fix and "--steps" in err.fix
    assert "\n" not in str(err)
    assert "--steps" in err.message


def test_reversed_range_suggests_the_right_order() -> None:
    with pytest.raises(SettingsError) as info:
        parse_steps("5-1")
    assert "5-1" in info.value.message and info.value.fix == "write --steps 1-5"
    assert "\n" not in str(info.value)


def test_select_numbers_keeps_file_order_and_done_steps() -> None:
    steps = _spec(done={2})
    got = select(steps, parse_steps("8,1-3,99"))
    assert [s.number for s in got] == [1, 2, 3, 8]  # done step 2 stays: it skips at setup


def test_select_all() -> None:
    steps = _spec(done={1, 2})
    assert [s.number for s in select(steps, parse_steps("all"))] == list(range(1, 11))


def test_continue_selects_the_steps_after_the_last_completed_one() -> None:
    steps = _spec(done={1, 2, 3, 5})
    assert continue_point(steps) == 5
    assert [s.number for s in select(steps, parse_steps("continue"))] == [6, 7, 8, 9, 10]


def test_continue_with_nothing_done_selects_everything() -> None:
    steps = _spec(done=set())
    assert continue_point(steps) is None
    assert [s.number for s in select(steps, parse_steps("continue"))] == list(range(1, 11))


def test_continue_with_everything_done_selects_nothing() -> None:
    steps = _spec(done=set(range(1, 11)))
    assert select(steps, parse_steps("continue")) == []


def test_continue_follows_file_order_not_numbers() -> None:
    text = "- [ ] **STEP 3**: c\n- [x] **STEP 1**: a\n- [ ] **STEP 2**: b\n"
    steps = parse_text(text, Path("SPEC.md")).steps
    assert continue_point(steps) == 1
    assert [s.number for s in select(steps, parse_steps("continue"))] == [2]


def test_continue_counts_failed_and_running_as_not_completed() -> None:
    text = ("- [x] **STEP 1**: a\n"
            "- [ ] **STEP 2**: b ✗ Failed [task_id: task_2_00000000] [2026-01-01T00:00:00]\n"
            "- [ ] **STEP 3**: c ⏳ Running [task_id: task_3_00000000] [2026-01-01T00:00:00]\n")
    steps = parse_text(text, Path("SPEC.md")).steps
    assert continue_point(steps) == 1
    assert [s.number for s in select(steps, parse_steps("continue"))] == [2, 3]
