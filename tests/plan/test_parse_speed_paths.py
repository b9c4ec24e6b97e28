"""The fast block reader (formats.fastblocks) gives exactly markdown-it's reading, or steps aside.

``blocks.blocks`` tries ``fastblocks.fast_read`` first; these tests compare it with
markdown-it on generated documents made of the lines plans are made of, tricky ones
included (lazy continuations, odd indents, headings with closing hashes, CRLF,
Unicode spaces), and on whole plans through ``parse_with_configs``: same steps,
ids, lines, fields, warnings and errors. Speed is measured in benchmarks/, never here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_dotasks.errors import SpecError
from pytest_dotasks.plan.formats import blocks as blocks_mod
from pytest_dotasks.plan.formats import fastblocks
from pytest_dotasks.plan.formats.blocks import Read, split_lines
from pytest_dotasks.plan.formats.fastblocks import fast_read
from pytest_dotasks.plan.specmd import header_lines, parse_with_configs
from tests.plan.test_properties import plans

SCALE = int(os.environ.get("DOTASKS_EXAMPLES", "0")) or None
MANY = settings(max_examples=SCALE or 150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
P = Path("SPEC.md")
pytest_plugins = ["pytester"]


def slow_read(text: str, n_lines: int) -> Read:
    """markdown-it's reading, as ``blocks.blocks`` does it without the fast path."""
    saved = blocks_mod._REPLAYED
    try:
        blocks_mod._REPLAYED = None  # type: ignore[assignment]
        return blocks_mod.blocks(text, None, n_lines)
    finally:
        blocks_mod._REPLAYED = saved


def shape(read: Read) -> tuple[list[tuple[Any, ...]], bytes]:
    index = {id(b): i for i, b in enumerate(read.blocks)}
    return ([(b.kind, b.start, b.end, b.level, b.depth, b.quoted, b.bullet, b.inline,
              None if b.parent is None else index[id(b.parent)]) for b in read.blocks], bytes(read.lines))


def same_or_aside(text: str) -> bool:
    """The fast path's answer equals markdown-it's; True when it answered."""
    n = len(split_lines(text))
    fast = fast_read(text, n)
    if fast is None:
        return False
    assert shape(fast) == shape(slow_read(text, n)), text
    assert shape(fast_read(text, 0)) == shape(slow_read(text, 0)), text  # type: ignore[arg-type]
    return True


# Lines as plans write them, and lines that make markdown-it read something else.
CONTENT = st.sampled_from([
    "[ ] **STEP 1**: Make data", "[x] **STEP 2**: Train ✓ [task_id: task_2_1a2b3c4d]", "[ ] **Step 3:** Eval",
    "[X] **STEP 4**: x", "run: python make.py --n 5", "needs: 1, 2", "kind: data", "Run: x", "outputs: a.txt",
    "Describe the step.", "**Note**: bold", "*em* text", "`code` span", "text with trailing space  ",
    "# Phase 1", "## STEP 2: Details", "### x ###", "#### a #b", "# #", "#", "####### seven", "#nospace",
    "[link](http://x) text", "[ref]: /url", "[ ]", "[x]:", "```", "~~~", "> quote", "<!-- c -->", "<div>",
    "1. ordered", "2) ordered", "* star", "+ plus", "-", "---", "***", "___", "===", "- - -", "-x", "\\- escaped",
    "a\u00a0nbsp", "\u2003em space", "\u00a0", "tab\there", "nul\0", "STEP 5: plain", "| a | b |",
])
INDENT = st.sampled_from(["", "", "", " ", "  ", "  ", "   ", "    ", "      ", "        "])
MARKER = st.sampled_from(["", "", "- ", "- ", "-  ", "-    ", "-     "])


@st.composite
def documents(draw: Any) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 25))):
        if draw(st.integers(0, 4)) == 0:
            lines.append(draw(st.sampled_from(["", "", "   "])))
        else:
            lines.append(draw(INDENT) + draw(MARKER) + draw(CONTENT))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return end.join(lines) + draw(st.sampled_from(["", end, end + end, end + "  "]))


# Plain documents: only what the fast path reads, so it must answer for all of them.
PLAIN = st.sampled_from([
    "[ ] **STEP 1**: Make data", "[x] **STEP 2**: Train", "run: true", "kind: quick", "needs: none",
    "Describe the step.", "# Phase", "## STEP 1: Details", "### Notes ##", "text  ", "a\u00a0b", "Run: x",
])


@st.composite
def plain_documents(draw: Any) -> str:
    lines = []
    for _ in range(draw(st.integers(1, 25))):
        if draw(st.integers(0, 3)) == 0:
            lines.append("")
        else:
            lines.append(draw(st.sampled_from(["", "", "  ", "    ", "      "])) + draw(st.sampled_from(["", "- "]))
                         + draw(PLAIN))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


@MANY
@given(documents())
def test_fast_path_equals_markdown_it_or_steps_aside(text: str) -> None:
    same_or_aside(text)


@MANY
@given(plain_documents())
def test_fast_path_answers_for_plain_documents(text: str) -> None:
    # An item's continuation indented 4+ past its list is code after a blank line: the
    # fast path may step aside for those; everything else it must answer.
    answered = same_or_aside(text)
    if not answered:
        assert fastblocks._BAIL.search(text) is None  # no bail line: only indented code sends it away


def full_parse(text: str, fast: bool) -> Any:
    saved = blocks_mod._REPLAYED
    if not fast:
        blocks_mod._REPLAYED = None  # type: ignore[assignment]
    try:
        return ("ok", parse_with_configs(text, P, "specmd")[0], header_lines(text, "specmd"))
    except SpecError as exc:
        return ("error", exc.render())
    finally:
        blocks_mod._REPLAYED = saved


@MANY
@given(plans())
def test_whole_plans_parse_the_same_on_both_paths(plan: Any) -> None:
    text = plan[0]
    assert full_parse(text, fast=True) == full_parse(text, fast=False)


@MANY
@given(documents())
def test_generated_documents_parse_the_same_on_both_paths(text: str) -> None:
    assert full_parse(text, fast=True) == full_parse(text, fast=False)


def test_the_benchmark_plan_takes_the_fast_path() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    try:
        from _common import plan_text
    finally:
        sys.path.pop(0)
    text = plan_text(300)
    assert same_or_aside(text)
    spec = full_parse(text, fast=True)
    assert spec == full_parse(text, fast=False) and len(spec[1].steps) == 300


@pytest.mark.parametrize("text", [
    "- [ ] **STEP 1**: a\n  - run: x\nlazy line\n",
    "- [ ] **STEP 1**: a\n\n  - run: x\n\n\n- [ ] **STEP 2**: b\n",
    "# T\n- [ ] **STEP 1**: a\n  text\n    deeper\n          deepest\n  - run: x\n",
    "- a\n - b\n  - c\n   - d\n    - e\n     - f\n",
    "- [ ] **STEP 1**: a\n  ## STEP 1: detail\n  - run: x\n",
    "- # heading item\n  text\n",
    "## STEP 1: x ##\n\n- run: y\n",
    "para\n- item\n# head\npara\n",
    "- a\r\n\r\n  b\r\n- c",
    "- a\n\n      code?\n",
    "  \n- a\n   ",
])
def test_known_corners(text: str) -> None:
    same_or_aside(text)


@pytest.mark.parametrize("text", [
    "```\n- [ ] **STEP 1**: a\n```\n", "> - [ ] **STEP 1**: a\n", "<!--\n- [ ] **STEP 1**: a\n-->\n",
    "- [ ] **STEP 1**: a\n\ttab\n", "1. [ ] **STEP 1**: a\n", "* [ ] **STEP 1**: a\n", "Title\n---\n",
    "- [ ] **STEP 1**: a\n-\n", "[ref]: /url\n", "    code\n",
])
def test_what_the_fast_path_leaves_to_markdown_it(text: str) -> None:
    assert fast_read(text, 0) is None or same_or_aside(text)


def test_the_replayed_rules_are_markdown_its() -> None:
    """The replay models these block rules and this trim set: a markdown-it upgrade that changes them fails here."""
    from markdown_it.common.utils import MD_TRIM_CHARS

    active = blocks_mod.markdown().block.ruler.get_active_rules()
    assert active == ["code", "fence", "blockquote", "hr", "list", "reference", "html_block", "heading",
                      "lheading", "paragraph"]
    assert set(fastblocks._TRIM) == set(MD_TRIM_CHARS)
    assert blocks_mod.markdown().options["maxNesting"] == blocks_mod.MAX_NESTING


# ------------------------------------------------ collection: fixture info shared per file

def test_every_step_gets_the_files_fixtures_in_its_own_lists(pytester: pytest.Pytester) -> None:
    """items.py works the fixture closure out once per plan file; each item still has its own copy."""
    pytester.makeconftest("""\
import pytest

@pytest.fixture
def helper():
    return "h"

@pytest.fixture(autouse=True)
def seen(helper, request):
    with open("seen.txt", "a") as f:
        f.write(f"{request.node.name} {helper}\\n")

def pytest_collection_modifyitems(items):
    assert len({id(i.fixturenames) for i in items}) == len(items)
    assert len({id(i._fixtureinfo) for i in items}) == len(items)
    assert all({"seen", "helper"} <= set(i.fixturenames) for i in items)
    items[0].fixturenames.append("not-shared")
    assert "not-shared" not in items[1].fixturenames
    items[0].fixturenames.remove("not-shared")
""")
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: One
  - run: true
  - kind: data
- [ ] **STEP 2**: Two
  - run: true
- [ ] **STEP 3**: Three
  - run: true
  - kind: data
""")
    res = pytester.runpytest("--spec", "SPEC.md", "--no-mark", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=3)
    assert (pytester.path / "seen.txt").read_text().split("\n")[:3] == ["step1 h", "step2 h", "step3 h"]


def test_markdown_it_is_imported_only_when_the_fast_path_steps_aside(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from pytest_dotasks.plan.specmd import parse_file; "
            "parse_file(Path(sys.argv[1])); print('markdown_it' in sys.modules)")
    plain = tmp_path / "plain.md"
    plain.write_text("# Plan\n\n- [ ] **STEP 1**: a\n  - run: true\n")
    fenced = tmp_path / "fenced.md"
    fenced.write_text("# Plan\n\n```\n- [ ] **STEP 9**: example\n```\n\n- [ ] **STEP 1**: a\n  - run: true\n")
    seen = [subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).parents[2]).stdout.strip() for p in (plain, fenced)]
    assert seen == ["False", "True"]
