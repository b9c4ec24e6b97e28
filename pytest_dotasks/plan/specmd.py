"""SPEC.md grammar (DESIGN.md section 1): markdown in, ``Step`` objects out.

A real markdown parser (markdown-it-py) decides what is a list item, a
heading, a code fence, an HTML comment or a block quote, so steps shown as
examples inside those are never run. We only use its block structure and
line maps; the text we keep is the raw source, byte for byte.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_dotasks.errors import SpecError
from pytest_dotasks.plan.header import INLINE_HEADER, MAX_STEP_DIGITS, parse_header, symbol_in_title
from pytest_dotasks.plan.model import FIELD_NAMES, STATUS_DONE, Field, Marker, Spec, Step

if TYPE_CHECKING:
    from pytest_dotasks.plan.fields import StepConfig

_FIELD = re.compile(r"^(?P<key>[A-Za-z][\w-]*)[ \t]*:(?:[ \t]+(?P<value>.*)|[ \t]*)$", re.DOTALL)
# "STEP 8: Title", "Step 8 - Title", "**Step 8**". Not "Step 1-2: Setup" or "Step 1.2"
# (ranges and sub-numbers are not one step's section).
_DETAIL = re.compile(
    r"^(?:\*\*)?[ \t]*step[ \t]+(\d+)[ \t]*(?:\*\*)?[ \t]*(?:(?:[:\u2013\u2014]|[.-](?!\d))[ \t]*(.*))?$",
    re.IGNORECASE,
)
_BOM = "\ufeff"
# Near misses difflib does not see as close, named in the warning all the same.
_ALIASES = {"retry": "retries", "depends": "needs", "depends_on": "needs", "depends-on": "needs",
            "dependencies": "needs", "deps": "needs"}
_CODE_SPAN = re.compile(r"^(`+)[ \t]*(.*?)[ \t]*\1$", re.DOTALL)
# A line a person meant as a step: a list item with a checkbox whose text starts with
# "step N" (bold or not). Not "Steps 1-2" (a range) nor "Step 1.2" (a sub-step).
_STEP_LIKE = re.compile(
    r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+\[[ xX]\][ \t]+(?:\*\*|__)?[ \t]*step[ \t]*(?P<n>\d+)(?![\d.]*\d|[ \t]*-[ \t]*\d)",
    re.IGNORECASE,
)


# markdown-it stops reading a document where nesting passes ``maxNesting`` (20 by
# default: a 10-level list), silently. 100 (about 50 list levels) leaves room for any
# real plan and stays far from Python's recursion limit; past it, the line scan in
# ``_unread_steps`` names every step line the parser did not read.
MAX_NESTING = 100


def _markdown() -> Any:
    # Imported here: the parser is needed only when a spec is collected.
    from markdown_it import MarkdownIt

    # Only the block structure and line maps are used: the inline pass (half
    # the parse time) would build children nobody reads.
    return _MD.setdefault("md", MarkdownIt("commonmark", {"maxNesting": MAX_NESTING}).disable(["inline", "text_join"]))


_MD: dict[str, Any] = {}


def read_text(path: Path) -> str:
    """Decode a plan file; errors name the file and the fix."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError("spec file not found", path=path, fix="check the --spec path") from None
    except IsADirectoryError:
        raise SpecError("spec path is a folder", path=path, fix="name the plan file itself") from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror}", path=path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"not valid UTF-8 (byte {exc.start})", path=path, line=line, fix="save the file as UTF-8"
        ) from None


def _strip_bom(text: str) -> str:
    """The text as markdown sees it: a leading BOM is no content (line numbers unchanged)."""
    return text[1:] if text.startswith(_BOM) else text


def split_lines(text: str) -> list[str]:
    """Lines without their endings (LF, CRLF or CR), as markdown-it numbers them."""
    return re.split(r"\r\n|\r|\n", text)


class _Block:
    """A list item or heading with its source line range (0-based, end exclusive)."""

    __slots__ = ("bullet", "depth", "end", "inline", "kind", "level", "parent", "quoted", "start")

    def __init__(self, kind: str, start: int, end: int, level: int, depth: int, quoted: bool,
                 parent: _Block | None = None, bullet: bool = False) -> None:
        self.kind, self.start, self.end, self.level = kind, start, end, level
        self.depth, self.quoted = depth, quoted
        self.parent = parent  # enclosing list item, if any
        self.bullet = bullet  # a "-", "*" or "+" item (not "1." / "1)")
        self.inline = ""


# What markdown-it made of each source line (``_Read.lines``).
UNREAD, PROSE, SHADOW = 0, 1, 2  # not reached by the parser; ordinary blocks; code, HTML, quotes
_LEAVES = ("paragraph_open", "heading_open", "hr")
_SHADOWS = ("fence", "code_block", "html_block")


class _Read:
    """The blocks of a document and what each source line was read as."""

    __slots__ = ("blocks", "lines")

    def __init__(self, blocks: list[_Block], lines: bytearray) -> None:
        self.blocks, self.lines = blocks, lines


def _parse(text: str, path: Path | None = None) -> list[Any]:
    try:
        tokens: list[Any] = _markdown().parse(text)
    except RecursionError:
        raise SpecError("the plan nests lists or quotes too deeply to read", path=path,
                        fix="flatten the deepest lists or block quotes") from None
    return tokens


def _blocks(text: str, path: Path | None = None, n_lines: int = 0) -> _Read:
    """List items and headings, in order, with the first inline text of each.

    ``n_lines`` > 0 also records, per source line, whether markdown-it read it as
    ordinary text, as code/HTML/quote (never a step), or not at all (it stops
    reading past its nesting limit).
    """
    tokens = _parse(text, path)
    out: list[_Block] = []
    seen = bytearray(n_lines)
    quotes: list[tuple[int, int]] = []
    quote = 0
    items: list[_Block] = []
    pending: _Block | None = None  # block waiting for its first inline token
    for tok in tokens:
        t = tok.type
        if n_lines and tok.map is not None:
            if t in _LEAVES:
                seen[tok.map[0]:tok.map[1]] = b"\x01" * (tok.map[1] - tok.map[0])
            elif t in _SHADOWS:
                seen[tok.map[0]:tok.map[1]] = b"\x02" * (tok.map[1] - tok.map[0])
        if t == "blockquote_open":
            quote += 1
            if n_lines:
                quotes.append((tok.map[0], tok.map[1]))
        elif t == "blockquote_close":
            quote -= 1
        elif t == "list_item_open":
            blk = _Block("item", tok.map[0], tok.map[1], 0, len(items), quote > 0,
                         parent=items[-1] if items else None, bullet=tok.markup in ("-", "*", "+"))
            items.append(blk)
            out.append(blk)
            pending = blk
        elif t == "list_item_close":
            items.pop()
            pending = None
        elif t == "heading_open":
            blk = _Block("heading", tok.map[0], tok.map[1], int(tok.tag[1]), len(items), quote > 0,
                         parent=items[-1] if items else None)
            out.append(blk)
            pending = blk
        elif t == "inline" and pending is not None:
            pending.inline = tok.content
            pending = None
        elif t in ("fence", "code_block", "html_block", "hr"):
            pending = None
    for lo, hi in quotes:
        seen[lo:hi] = b"\x02" * (hi - lo)
    return _Read(out, seen)


def _clean_value(key: str, value: str) -> str:
    # Spaces and tabs only: str.strip() and str.splitlines() would also eat U+0085,
    # U+2028 and the like, which belong to the command as written.
    value = value.strip(" \t")
    m = _CODE_SPAN.match(value)
    # One code span around the whole value: `a.txt` or `` uses `ticks` ``; not
    # "`a` and `b`" (two spans), whose inner text holds a run as long as the fence.
    if m and all(len(run) != len(m.group(1)) for run in re.findall(r"`+", m.group(2))):
        value = m.group(2)
    return value


def _raw_value(key: str, raw: str, parsed: str) -> str:
    """The value as the source line has it (markdown-it turns NUL into U+FFFD)."""
    m = re.search(rf"(?<![\w-]){re.escape(key)}[ \t]*:", raw)
    return raw[m.end():] if m else parsed


def _field_of(blk: _Block, path: Path, warnings: list[str], lines: list[str]) -> Field | None:
    if not blk.bullet:  # "1. run: ..." in an Instructions list is prose, never a field
        return None
    m = _FIELD.match(blk.inline)
    if not m:
        return None
    key = m.group("key")
    if key in FIELD_NAMES:
        value = m.group("value") or ""
        if "\n" not in value:
            value = _raw_value(key, lines[blk.start], value)
        return Field(key, _clean_value(key, value), blk.start + 1)
    lowered = key.lower()
    if lowered in FIELD_NAMES:
        warnings.append(
            f"{path}:{blk.start + 1}: '{key}:' is not a field (fields are lowercase); "
            f"write '{lowered}:' to make it one, it is kept as description"
        )
    else:
        close = difflib.get_close_matches(lowered, FIELD_NAMES, n=1, cutoff=0.75)
        if not close and lowered in _ALIASES:
            close = [_ALIASES[lowered]]
        if close:
            warnings.append(
                f"{path}:{blk.start + 1}: '{key}:' looks like the field '{close[0]}:'; "
                "it is kept as description"
            )
    return None


def _blank(line: str) -> bool:
    """Blank as markdown sees it: spaces and tabs only (U+0085 is text)."""
    return not line.strip(" \t")


def _dedent(lines: list[str]) -> str:
    while lines and _blank(lines[0]):
        lines.pop(0)
    while lines and (_blank(lines[-1]) or lines[-1].strip(" \t") in ("---", "***", "___")):
        lines.pop()
    widths = [len(ln) - len(ln.lstrip(" \t")) for ln in lines if not _blank(ln)]
    cut = min(widths) if widths else 0
    return "\n".join("" if _blank(ln) else ln[cut:] for ln in lines)


def _body(lines: list[str], start: int, end: int, skip: set[int]) -> str:
    return _dedent([lines[i] for i in range(start, end) if i not in skip])


def parse_text(text: str, path: Path) -> Spec:
    """Parse plan text. Raises ``SpecError`` naming file and line."""
    return parse_with_configs(text, path)[0]


def parse_with_configs(text: str, path: Path) -> tuple[Spec, dict[int, StepConfig]]:
    """Parse and validate plan text: the steps and their typed fields."""
    text = _strip_bom(text)
    lines = split_lines(text)
    read = _blocks(text, path, len(lines))
    blocks = read.blocks
    warnings: list[str] = []

    headers: dict[int, tuple[int, Any]] = {}  # number -> (0-based line, Header)
    step_items: list[tuple[_Block, Any]] = []
    detail: dict[int, _Block] = {}
    heading_stack: list[_Block] = []
    phase_of: dict[int, str | None] = {}

    for blk in blocks:
        if blk.quoted:
            continue
        if blk.kind == "heading":
            m = _DETAIL.match(blk.inline.strip())
            if m and len(m.group(1)) <= MAX_STEP_DIGITS:
                n = int(m.group(1))
                if n in detail:
                    raise SpecError(
                        f"two detail sections for STEP {n} (lines {detail[n].start + 1} and {blk.start + 1})",
                        path=path, line=blk.start + 1, fix="renumber or merge one of them",
                    )
                detail[n] = blk
            else:
                heading_stack.append(blk)
            continue
        if not INLINE_HEADER.match(blk.inline):
            continue
        if step_items and blk.start < step_items[-1][0].end:
            # A checkbox nested in a step is description. Blocks come in file order
            # and steps never nest, so only the last step can hold this one.
            continue
        h = parse_header(lines[blk.start])
        if h is None:  # label spread over lines or odd markup: not a step header line
            continue
        if h.number in headers:
            first = headers[h.number][0] + 1
            raise SpecError(
                f"STEP {h.number} is defined twice (lines {first} and {blk.start + 1})",
                path=path, line=blk.start + 1, fix="give each step a unique number",
            )
        if h.number < 1:
            raise SpecError("step numbers start at 1", path=path, line=blk.start + 1)
        headers[h.number] = (blk.start, h)
        step_items.append((blk, h))
        sym = symbol_in_title(h)
        if sym is not None:
            status = "done" if h.marker.status == STATUS_DONE else h.marker.status
            warnings.append(
                f"{path}:{blk.start + 1}: STEP {h.number}'s title has ' {sym}', which starts a status marker: "
                f"the step reads as {status} and the words after it are replaced when the step is marked; "
                f"write the symbol in backticks (`{sym}`) or without the space before it"
            )
        phase_of[h.number] = heading_stack[-1].inline.strip() if heading_stack else None

    # Section end of every detail heading: the next heading of its level or above, or
    # the next step's detail heading at any level (never two steps' text in one).
    section_end: dict[int, int] = {}
    heads = [b for b in blocks if b.kind == "heading" and not b.quoted]
    detail_heads = {id(b) for b in detail.values()}
    for n, blk in detail.items():
        end = len(lines)
        for other in heads:
            if other.start > blk.start and (other.level <= blk.level or id(other) in detail_heads):
                end = other.start
                break
        section_end[n] = end

    steps: list[Step] = []
    items = [b for b in blocks if b.kind == "item" and not b.quoted]
    # Lines of every checklist step item: a detail section never takes them (a plan
    # may put "- [ ] **STEP 8**" right under "## STEP 8:"), nor its field bullets.
    in_step: set[int] = set()
    for sblk, _ in step_items:
        in_step.update(range(sblk.start, sblk.end))
    children: dict[int, list[_Block]] = {}
    for it in items:
        if it.parent is not None:
            children.setdefault(id(it.parent), []).append(it)
    starts = [it.start for it in items]
    for blk, h in step_items:
        start = blk.start
        fields: list[Field] = []
        field_lines: set[int] = set()
        d = detail.get(h.number)
        # Fields are the step item's own sub-bullets, and the top-level bullets of its
        # detail section; bullets nested deeper are description (examples, notes).
        candidates = list(children.get(id(blk), ()))
        if d is not None:
            lo, hi = bisect.bisect_left(starts, d.end), bisect.bisect_left(starts, section_end[h.number])
            candidates += [it for it in items[lo:hi] if it.start not in in_step
                           and (it.parent is None or it.parent.start < d.start)]
        for it in candidates:
            f = _field_of(it, path, warnings, lines)
            if f is not None:
                _one_line(it, f, h.number, lines, path)
                fields.append(f)
                field_lines.update(range(it.start, _trim_end(lines, it.start, it.end)))
        parts = [_body(lines, blk.start + 1, _trim_end(lines, blk.start, blk.end), field_lines)]
        if d is not None:
            end = section_end[h.number]
            skip = field_lines | {i for i in range(d.end, end) if i in in_step}
            parts.append(_body(lines, d.end, end, skip))
        description = "\n\n".join(p for p in parts if p)
        steps.append(
            Step(
                number=h.number,
                title=h.title,
                description=description,
                fields=tuple(sorted(fields, key=lambda f: f.line)),
                phase=phase_of.get(h.number),
                path=path,
                line=start + 1,
                marker=h.marker,
                detail_line=d.start + 1 if d is not None else None,
            )
        )
    warnings += _unread_steps(lines, read, step_items, path)
    spec = Spec(path=path, steps=tuple(steps), warnings=tuple(warnings))
    from pytest_dotasks.plan.fields import validate_spec  # late: fields imports model only

    return spec, validate_spec(spec)


def _one_line(it: _Block, f: Field, number: int, lines: list[str], path: Path) -> None:
    """A field's value is one line: text joined to the bullet is an error, never part of it.

    Markdown's lazy continuation makes the sentence under ``- run: rm -rf build``
    part of that bullet; run as written, the sentence would become arguments.
    """
    end = _trim_end(lines, it.start, it.end)
    if end <= it.start + 1:
        return
    nxt = next((i for i in range(it.start + 1, end) if not _blank(lines[i])), it.start + 1)
    shown = lines[nxt].strip(" \t")
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise SpecError(
        f"STEP {number} field '{f.key}:' continues onto line {nxt + 1} ({shown!r}); a field's value is one line",
        path=path, line=f.line,
        fix="put a blank line before the text under it (indented no deeper than the bullet), "
            "or write the whole value on one line",
    )


def _unread_steps(lines: list[str], read: _Read, step_items: list[tuple[_Block, Any]], path: Path) -> list[str]:
    """A warning for every line that looks like a step but is none (DESIGN.md section 1).

    A cheap line scan, compared with what the parser collected: a step is never
    dropped in silence, whether markdown-it stopped reading (nesting), the line
    sits in another step's description, or its label is malformed. Lines in code
    blocks, fences, HTML comments and block quotes are examples, never steps.
    """
    collected = {blk.start for blk, _ in step_items}
    holders = [(blk.start, blk.end, h.number) for blk, h in step_items]
    starts = [s for s, _, _ in holders]
    out: list[str] = []
    for i, line in enumerate(lines):
        m = _STEP_LIKE.match(line)
        if m is None or i in collected or read.lines[i] == SHADOW:
            continue
        k = bisect.bisect_right(starts, i) - 1
        holder = holders[k] if k >= 0 and i < holders[k][1] else None
        where = f"{path}:{i + 1}: '{_clip(line)}' looks like a step but "
        if read.lines[i] == UNREAD:
            why = (f"was not read: the lists or quotes above it nest too deeply (over {MAX_NESTING // 2} levels); "
                   "flatten them to make it a step")
        elif holder is not None:
            why = (f"is inside STEP {holder[2]}'s description (line {holder[0] + 1}), so it does not run; "
                   "unindent it to make it a step of its own")
        elif len(m.group("n")) > MAX_STEP_DIGITS:
            why = f"is none: step numbers have at most {MAX_STEP_DIGITS} digits"
        elif parse_header(line) is None:
            why = "is none: write it as '- [ ] **STEP N**: Title' to make it a step"
        else:
            why = "is not read as one; put a blank line before it to make it a step"
        out.append(where + why)
    return out


def _clip(text: str, width: int = 50) -> str:
    text = text.strip(" \t")
    return text if len(text) <= width else text[: width - 3] + "..."


def _trim_end(lines: list[str], start: int, end: int) -> int:
    """Drop trailing blank lines markdown-it counts into a list item."""
    while end > start + 1 and _blank(lines[end - 1]):
        end -= 1
    return end


def parse_file(path: Path) -> Spec:
    return parse_text(read_text(path), path)


def header_lines(text: str) -> dict[int, int]:
    """Step number -> 0-based line of its header, for the marker."""
    text = _strip_bom(text)
    lines = split_lines(text)
    out: dict[int, int] = {}
    step_ranges: list[tuple[int, int]] = []
    for blk in _blocks(text).blocks:
        if blk.quoted or blk.kind != "item" or not INLINE_HEADER.match(blk.inline):
            continue
        if step_ranges and blk.start < step_ranges[-1][1]:
            continue  # nested in the last step: description, as in parse_text
        h = parse_header(lines[blk.start])
        if h is not None:
            step_ranges.append((blk.start, blk.end))
            out.setdefault(h.number, blk.start)  # a duplicate (a parse error) keeps the first
    return out


def iter_markers(text: str) -> Iterator[tuple[int, Marker]]:
    lines = split_lines(_strip_bom(text))
    for n, i in header_lines(text).items():
        h = parse_header(lines[i])
        if h is not None:
            yield n, h.marker
