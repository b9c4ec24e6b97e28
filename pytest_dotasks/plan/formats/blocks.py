"""The markdown every plan format shares: blocks with line maps, raw lines, bodies.

A real markdown parser (markdown-it-py) decides what is a list item, a
heading, a code fence, an HTML comment or a block quote, so steps shown as
examples inside those are never run. We only use its block structure and
line maps; the text we keep is the raw source, byte for byte. A plain plan
(headings, "-" lists, paragraphs) is read by ``fastblocks`` instead, which
replays markdown-it's rules for that subset: the same ``Read``, several times
faster, and markdown-it is then not even imported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pytest_dotasks.errors import SpecError
from pytest_dotasks.plan.formats.structure import (  # noqa: F401 (public here, as they always were)
    PROSE,
    SHADOW,
    UNREAD,
    Block,
    Read,
)

_BOM = "\ufeff"


# markdown-it stops reading a document where nesting passes ``maxNesting`` (20 by
# default: a 10-level list), silently. 100 (about 50 list levels) leaves room for any
# real plan and stays far from Python's recursion limit; past it, the line scan in
# ``_unread_steps`` names every step line the parser did not read.
MAX_NESTING = 100


def markdown() -> Any:
    # Imported here: the parser is needed only when a spec is collected.
    from markdown_it import MarkdownIt

    # Only the block structure and line maps are used: the inline pass (half
    # the parse time) would build children nobody reads.
    return _MD.setdefault("md", MarkdownIt("commonmark", {"maxNesting": MAX_NESTING}).disable(["inline", "text_join"]))


_MD: dict[str, Any] = {}
_REPLAYED = markdown  # the parser formats.fastblocks replays (commonmark, block rules, MAX_NESTING)


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


def strip_bom(text: str) -> str:
    """The text as markdown sees it: a leading BOM is no content (line numbers unchanged)."""
    return text[1:] if text.startswith(_BOM) else text


def split_lines(text: str) -> list[str]:
    """Lines without their endings (LF, CRLF or CR), as markdown-it numbers them."""
    return re.split(r"\r\n|\r|\n", text)


_LEAVES = ("paragraph_open", "heading_open", "hr")
_SHADOWS = ("fence", "code_block", "html_block")


def parse_tokens(text: str, path: Path | None = None) -> list[Any]:
    try:
        tokens: list[Any] = markdown().parse(text)
    except RecursionError:
        raise SpecError("the plan nests lists or quotes too deeply to read", path=path,
                        fix="flatten the deepest lists or block quotes") from None
    return tokens


def blocks(text: str, path: Path | None = None, n_lines: int = 0) -> Read:
    """List items and headings, in order, with the first inline text of each.

    ``n_lines`` > 0 also records, per source line, whether markdown-it read it as
    ordinary text, as code/HTML/quote (never a step), or not at all (it stops
    reading past its nesting limit).
    """
    if markdown is _REPLAYED:  # the fast path replays this parser; one set in its place is used as is
        from pytest_dotasks.plan.formats.fastblocks import fast_read  # late: only a plan's parse needs it

        fast = fast_read(text, n_lines)  # the common layout, without markdown-it (same result)
        if fast is not None:
            return fast
    tokens = parse_tokens(text, path)
    out: list[Block] = []
    seen = bytearray(n_lines)
    quotes: list[tuple[int, int]] = []
    quote = 0
    items: list[Block] = []
    pending: Block | None = None  # block waiting for its first inline token
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
            blk = Block("item", tok.map[0], tok.map[1], 0, len(items), quote > 0,
                         parent=items[-1] if items else None, bullet=tok.markup in ("-", "*", "+"))
            items.append(blk)
            out.append(blk)
            pending = blk
        elif t == "list_item_close":
            items.pop()
            pending = None
        elif t == "heading_open":
            blk = Block("heading", tok.map[0], tok.map[1], int(tok.tag[1]), len(items), quote > 0,
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
    return Read(out, seen)


def blank(line: str) -> bool:
    """Blank as markdown sees it: spaces and tabs only (U+0085 is text)."""
    return not line.strip(" \t")


def dedent(lines: list[str]) -> str:
    while lines and blank(lines[0]):
        lines.pop(0)
    while lines and (blank(lines[-1]) or lines[-1].strip(" \t") in ("---", "***", "___")):
        lines.pop()
    widths = [len(ln) - len(ln.lstrip(" \t")) for ln in lines if not blank(ln)]
    cut = min(widths) if widths else 0
    return "\n".join("" if blank(ln) else ln[cut:] for ln in lines)


def body(lines: list[str], start: int, end: int, skip: set[int]) -> str:
    return dedent([lines[i] for i in range(start, end) if i not in skip])


def trim_end(lines: list[str], start: int, end: int) -> int:
    """Drop trailing blank lines markdown-it counts into a list item."""
    while end > start + 1 and blank(lines[end - 1]):
        end -= 1
    return end


