"""Properties of the parser and the marker over generated plans (hypothesis)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_dotasks.errors import MarkError, SpecError
from pytest_dotasks.plan.fields import SINGLE_FIELDS
from pytest_dotasks.plan.marking import rewrite_header
from pytest_dotasks.plan.model import KINDS, STATUS_DONE, STATUS_FAILED, STATUS_RUNNING
from pytest_dotasks.plan.specmd import parse_file, parse_text

P = Path("SPEC.md")
TS = "2026-11-24T10:30:12"
# Small by default (the suite stays fast); DOTASKS_EXAMPLES=5000 for a long bug hunt.
SCALE = int(os.environ.get("DOTASKS_EXAMPLES", "0")) or None
FAST = settings(max_examples=SCALE or 100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ building blocks

WORD = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Lo", "Nd")), min_size=1, max_size=8)
PROSE = st.lists(WORD, min_size=1, max_size=6).map(" ".join)
# Titles: anything printable on one line, bar the marker symbols (they start the marker region).
TITLE = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Co", "Cn"), blacklist_characters="✓✗⏳\ufeff"),
    max_size=30,
)
FIELD = st.one_of(
    st.just(("needs", "none")),
    st.sampled_from(KINDS).map(lambda k: ("kind", k)),
    st.sampled_from(["90s", "15m", "2h", "1.5h"]).map(lambda t: ("timeout", t)),
    st.sampled_from(["data/a.jsonl", "out/*.txt, b.csv", "`x y.txt`"]).map(lambda v: ("outputs", v)),
    st.sampled_from(["a.txt", "in/*.json, c.yaml"]).map(lambda v: ("inputs", v)),
    st.sampled_from(["test -s a.txt", "python check.py --min 5", "make test (advisory)"]).map(lambda v: ("validate", v)),
    st.sampled_from(["tinker", "anthropic", "curl -sf http://x"]).map(lambda v: ("check", v)),
    st.integers(0, 5).map(lambda n: ("retries", str(n))),
    st.sampled_from(["yes", "no"]).map(lambda v: ("background", v)),
)
MARKER = st.sampled_from([
    "", " ✓ [2025-11-13]", " ✓ [2025-11-13] [task_3-10_4a70c4a2] (10 test examples)",
    " ✓ [task_id: task_1_3fa2b8c1] [2026-11-24T10:30:12]", " ✗ Failed [task_id: task_1_0b1c2d3e] [2026-11-24T10:41:02]",
    " ⏳ Running [task_id: task_1_77aa01ff] [2026-11-24T11:02:40]", "LEADING",
])
FAKE_STEP = st.integers(1, 30).map(lambda n: f"- [ ] **STEP {n}**: not a step")


def single(fields: list[tuple[str, str]], seen: set[str]) -> list[tuple[str, str]]:
    """Drop a second bullet of a one-value field (that is an error, proven in test_spec)."""
    out = []
    for k, v in fields:
        if k in SINGLE_FIELDS:
            if k in seen:
                continue
            seen.add(k)
        out.append((k, v))
    return out


def clean(value: str) -> str:
    m = re.fullmatch(r"`([^`]*)`", value)
    return m.group(1) if m else value


@st.composite
def plans(draw):  # type: ignore[no-untyped-def]
    """A plan in the two-part layout with noise; returns (text, expected, header line indexes)."""
    n = draw(st.integers(1, 8))
    numbers = draw(st.permutations(list(range(1, 13))))[:n]
    lines: list[str] = ["# " + draw(PROSE), ""]
    phase = lines[0][2:]
    expected: dict[int, dict] = {}
    detail_later: list[int] = []
    for number in numbers:
        # noise before the step
        for kind in draw(st.lists(st.sampled_from(["heading", "prose", "fence", "comment", "quote"]), max_size=3)):
            if kind == "heading":
                phase = draw(PROSE)
                lines += [f"{'#' * draw(st.integers(1, 4))} {phase}", ""]
            elif kind == "prose":
                lines += [draw(PROSE), ""]
            elif kind == "fence":
                lines += ["```", draw(FAKE_STEP), "```", ""]
            elif kind == "comment":
                lines += ["<!--", draw(FAKE_STEP), "", draw(FAKE_STEP), "-->", ""]
            else:
                lines += ["> " + draw(FAKE_STEP), ""]
        title = draw(TITLE)
        marker = draw(MARKER)
        if not title.strip() and marker.endswith(")"):
            # "**STEP 1**: ✓ [...] (note)" with no title is the after-colon form, whose title is "(note)"
            marker = ""
        box = draw(st.sampled_from(" xX"))
        bullet = draw(st.sampled_from("-*+"))
        label = draw(st.sampled_from(["**STEP {}**:", "**Step {}**:", "**step {}**:", "**STEP {}:**"])).format(number)
        trailing = draw(st.sampled_from(["", " ", "  ", "\t"]))
        if marker == "LEADING":
            head = f"{bullet} [{box}] {label} ✓ [task_id: task_{number}_1a2b3c4d] [2025-11-13T10:30:00.123456] {title}"
        else:
            sep = draw(st.sampled_from([" ", "  ", ""])) if title.strip() else " "
            head = f"{bullet} [{box}] {label}{sep}{title}{marker}"
        lines.append(head + trailing)
        body = draw(st.lists(PROSE, max_size=3))
        once: set[str] = set()
        fields = single(draw(st.lists(FIELD, max_size=4)), once)
        lines += ["  " + b for b in body]
        lines += [f"  - {k}: {v}" for k, v in fields]
        lines.append("")
        expected[number] = {"title": title.strip(), "phase": phase, "desc": "\n".join(body),
                            "fields": [(k, clean(v)) for k, v in fields], "once": once}
        if draw(st.booleans()):
            detail_later.append(number)
    if detail_later:
        lines += ["---", "", "## FULL SPECIFICATION", ""]
    for number in detail_later:
        dbody = draw(st.lists(PROSE, min_size=1, max_size=3))
        dfields = single(draw(st.lists(FIELD, max_size=2)), expected[number]["once"])
        level = draw(st.sampled_from(["##", "###"]))
        lines += [f"{level} STEP {number}: {draw(PROSE)}", ""]
        lines += [f"- {k}: {v}" for k, v in dfields]
        lines += ["", "**What to Accomplish:**", *dbody, "", "```", draw(FAKE_STEP), "```", "", "---", ""]
        exp = expected[number]
        detail_text = "**What to Accomplish:**\n" + "\n".join(dbody) + "\n\n```\n" + lines[-5] + "\n```"
        exp["desc"] = "\n\n".join(p for p in (exp["desc"], detail_text) if p)
        exp["fields"] += [(k, clean(v)) for k, v in dfields]
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return bom + ending.join(lines), numbers, expected


def summary(spec):  # type: ignore[no-untyped-def]
    return [(s.number, s.title, s.description, [(f.key, f.value) for f in s.fields], s.phase, s.line, s.detail_line)
            for s in spec.steps]


def pieces(text: str) -> list[str]:
    """Lines and their endings, alternating: every byte of the text."""
    return re.split(r"(\r\n|\r|\n)", text)


# ------------------------------------------------------------------ properties


@FAST
@given(plans())
def test_generated_plans_parse_as_written(plan) -> None:  # type: ignore[no-untyped-def]
    text, numbers, expected = plan
    spec = parse_text(text, P)
    assert [s.number for s in spec.steps] == numbers
    for s in spec.steps:
        exp = expected[s.number]
        assert s.title == exp["title"]
        assert s.phase == exp["phase"]
        assert s.description == exp["desc"]
        assert [(f.key, f.value) for f in s.fields] == exp["fields"]


@FAST
@given(plans(), st.data())
def test_marking_changes_only_the_header_line_and_keeps_the_steps(plan, data) -> None:  # type: ignore[no-untyped-def]
    text, numbers, _ = plan
    before = current = parse_text(text, P)
    for _ in range(data.draw(st.integers(1, 3))):
        number = data.draw(st.sampled_from(numbers))
        status = data.draw(st.sampled_from([STATUS_DONE, STATUS_FAILED, STATUS_RUNNING]))
        tid = f"task_{number}_{data.draw(st.integers(0, 2**32 - 1)):08x}"
        row = before.by_number()[number].line - 1
        new = rewrite_header(text, number, status, tid, TS)
        old_p, new_p = pieces(text), pieces(new)
        assert len(old_p) == len(new_p)
        changed = [i for i, (a, b) in enumerate(zip(old_p, new_p)) if a != b]
        assert changed in ([], [2 * row])
        assert new.startswith("\ufeff") == text.startswith("\ufeff")
        after = parse_text(new, P)
        assert summary(after) == summary(before)
        s = after.by_number()[number]
        assert (s.marker.status, s.marker.task_id, s.marker.timestamp) == (status, tid, TS)
        line = pieces(new)[2 * row]
        assert sum(line.count(c) for c in "✓✗⏳") == 1
        for other in after.steps:
            if other.number != number:
                assert other.marker == current.by_number()[other.number].marker
        text, current = new, after


FRAGMENTS = [
    "- [ ] **STEP 1**: one", "- [x] **STEP 2**: two ✓ [2025-11-13]", "* [ ] **Step 3**: three",
    "+ [X] **step 4**: ✓ [task_id: task_4_1a2b3c4d] [2025-11-13T10:30:00] four", "  - [ ] **STEP 5**: nested",
    "- [ ] **STEP 2**: dup", "  - needs: 1", "  - needs: 9", "  - needs: none", "  - timeout: 5m", "  - timeout: never",
    "  - kind: data", "  - output: x", "  - Needs: 1", "- outputs: a.txt", "- validate: make", "## STEP 1: detail",
    "### Step 3 - detail", "# Phase", "## STEP 9: orphan", "```", "~~~", "> - [ ] **STEP 6**: quoted", "<!--", "-->",
    "---", "===", "", "", "    - [ ] **STEP 7**: code", "1. run: x", "text", "  text", "- item", "  1. [ ] **STEP 8**: o",
    "- [ ] **STEP 10**:", "- [ ] **STEP 11**: a ⏳ Running [task_id: t] [x]", "\t- [ ] **STEP 12**: tab",
    "<div>", "</div>", "- [ ] **STEP 0**: zero", "  ```", "  - [ ] **STEP 13**: x\\", "- [ ] **STEP 14**: `code",
]


@settings(max_examples=SCALE or 250, deadline=None, database=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=25),
       st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_markdown_soup_only_spec_errors_and_marking_is_stable(parts, ending, bom) -> None:  # type: ignore[no-untyped-def]
    text = ("\ufeff" if bom else "") + ending.join(parts)
    try:
        spec = parse_text(text, P)
    except SpecError:
        return
    for s in spec.steps:
        try:
            new = rewrite_header(text, s.number, STATUS_DONE, f"task_{s.number}_00000000", TS)
        except MarkError:
            raise AssertionError(f"STEP {s.number} parsed but could not be marked") from None
        old_p, new_p = pieces(text), pieces(new)
        assert len(old_p) == len(new_p)
        assert [i for i, (a, b) in enumerate(zip(old_p, new_p)) if a != b] in ([], [2 * (s.line - 1)])
        after = parse_text(new, P)
        assert summary(after) == summary(spec)
        assert after.by_number()[s.number].marker.task_id == f"task_{s.number}_00000000"
        text, spec = new, after


@settings(max_examples=SCALE or 200, deadline=None, database=None)
@given(st.text(max_size=300))
def test_random_text_never_crashes_the_parser(text: str) -> None:
    try:
        parse_text(text, P)
    except SpecError:
        pass


_TMP = tempfile.TemporaryDirectory(prefix="dotasks-props-")


@settings(max_examples=SCALE or 150, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_parse_file(data: bytes) -> None:
    f = Path(_TMP.name) / "SPEC.md"
    f.write_bytes(data)
    try:
        parse_file(f)
    except SpecError as exc:
        assert exc.path == f


# ------------------------------------------------------------------ the marker's cache


def cold_rewrite(text: str, number: int, status: str, tid: str) -> str | None:
    """What a marker with no cache writes: parse, find the header line, re-render it."""
    from pytest_dotasks.plan.header import parse_header, render_header
    from pytest_dotasks.plan.specmd import header_lines

    at = header_lines(text)
    if number not in at:
        return None
    parts = re.split(r"(\r\n|\r|\n)", text)
    k = 2 * at[number]
    bom = "\ufeff" if k == 0 and parts[0].startswith("\ufeff") else ""
    h = parse_header(parts[k][len(bom):])
    assert h is not None
    parts[k] = bom + render_header(h, status, tid, TS)
    return "".join(parts)


EDIT = st.one_of(
    st.tuples(st.just("mark"), st.integers(1, 14), st.sampled_from([STATUS_DONE, STATUS_FAILED, STATUS_RUNNING])),
    st.tuples(st.just("append"), st.lists(st.sampled_from(FRAGMENTS), max_size=3), st.sampled_from(["\n", "\r\n"])),
    st.tuples(st.just("replace"), st.integers(0, 40), st.sampled_from(FRAGMENTS)),
    st.tuples(st.just("insert"), st.integers(0, 40), st.sampled_from(FRAGMENTS)),
    st.tuples(st.just("endings"), st.sampled_from(["\n", "\r\n", "\r"]), st.just(0)),
)


@settings(max_examples=SCALE or 150, deadline=None, database=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=20), st.lists(EDIT, max_size=14), st.booleans())
def test_the_cached_marker_writes_what_a_cold_one_would(parts, edits, bom) -> None:  # type: ignore[no-untyped-def]
    """Marks, a person's appends, same-shape edits, inserted lines and new line endings, in any
    order: the cache (header lines kept across marks and appends, offsets shifted in place)
    always finds the line a fresh parse finds."""
    text = ("\ufeff" if bom else "") + "\n".join(parts) + "\n"
    k = 0
    for op, a, b in edits:
        if op == "mark":
            k += 1
            tid = f"task_{a}_{k:08x}"
            try:
                expected = cold_rewrite(text, a, b, tid)
            except SpecError:
                continue
            try:
                got = rewrite_header(text, a, b, tid, TS)
            except MarkError:
                got = None
            assert got == expected
            if got is not None:
                text = got
        elif op == "append":
            text += b.join(a) + (b if a else "")
        elif op in ("replace", "insert"):
            rows = re.split(r"(\r\n|\r|\n)", text)
            i = 2 * (a % (len(rows) // 2 + 1))
            rows[i:i + (op == "replace")] = [b, "\n"] if op == "insert" else [b]
            text = "".join(rows)
        else:
            text = re.sub(r"\r\n|\r|\n", a, text)
