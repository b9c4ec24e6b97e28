"""The block structure of a plain plan without markdown-it: the same ``Read``, faster.

Most plans use four things only: ATX headings, ``-`` bullet lists, paragraphs and
blank lines. For a text made of nothing else, ``fast_read`` replays markdown-it's
block rules as ``blocks.markdown()`` runs them (commonmark: ``tokenize``, ``list``,
``paragraph``, ``heading`` and their terminators, line for line) and returns what
``blocks.blocks`` would build from markdown-it's tokens: the same blocks, line
ranges, parents, inline text and per-line map. It is about ten times faster.

Anything else returns None and the caller runs markdown-it: a tab, a NUL, a fence,
a block quote, HTML, a reference definition (a line starting ``[`` that is no
``[ ]``/``[x]`` checkbox), an ordered or ``*``/``+`` list, an empty list item, a
list item nested on its parent's line, a thematic break or setext underline,
indented code, or deep nesting. Those rules are the only ones that could change
the structure, so the two paths agree wherever the fast one answers;
tests/plan/test_parse_speed_paths.py compares them on generated plans.
"""

from __future__ import annotations

import re

from pytest_dotasks.plan.formats.structure import Block, Read

# A line (after its indent, or after its "- " marker) that may start a construct
# other than a paragraph, heading or "-" item: the whole text goes to markdown-it.
_CONTENT = r"(?:```|~~~|[<>]|\[(?![ xX]\] )|[-*+](?: |$)|\d{1,9}[.)](?: |$))"
_BAIL = re.compile(
    r"^ *- {1,4}(?=[^ \n])" + _CONTENT  # after an item's marker
    + r"|^ *(?=[^ \n])(?!- )" + _CONTENT  # any other line
    + r"|^ *[-*_=][-*_= ]*$"  # thematic break, setext underline, empty item
    + r"|^ *- {5}",  # indented code right after a marker
    re.MULTILINE,
)
_HEADING = re.compile(r"#{1,6}(?: |$)")
# markdown-it's mdTrim: CommonMark white space plus U+2000-U+200A, U+2028, U+2029.
_TRIM = "".join(chr(c) for c in sorted(
    {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0xA0, 0x1680, 0x202F, 0x205F, 0x3000, 0x2028, 0x2029}
    | set(range(0x2000, 0x200B))))
_MAX_DEPTH = 16  # list items inside each other; deeper plans go to markdown-it


class _Bail(Exception):
    pass


def fast_read(text: str, n_lines: int = 0) -> Read | None:
    """``blocks.blocks(text, n_lines=n_lines)`` for a plain plan; None: use markdown-it."""
    if not text or "\t" in text or "\0" in text:
        return None
    src = text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
    if _BAIL.search(src):
        return None
    try:
        return _Replay(src, n_lines).run()
    except _Bail:
        return None


class _Replay:
    """markdown-it's StateBlock and block rules, for the subset ``fast_read`` admits.

    Per line, precomputed: ``ts`` (tShift, where the content starts; the same as
    sCount without tabs), blank, a "- " item starts here, a heading starts here.
    markdown-it moves an item's first line to the content after the marker while
    it reads the item; ``tokenize(line, first=True)`` reads that line as content.
    """

    def __init__(self, src: str, n_lines: int) -> None:
        lines = src.split("\n")
        # markdown-it's lineMax: the empty text after a final newline, or a last line
        # of spaces only with no newline after it, is no line.
        n = len(lines)
        if not lines[-1].strip(" "):
            n -= 1
        self.lines = lines
        self.n = n
        self.ts = ts = [len(ln) - len(ln.lstrip(" ")) for ln in lines]
        self.blank = [t == len(ln) for t, ln in zip(ts, lines)]
        self.bul = [ln.startswith("- ", t) for t, ln in zip(ts, lines)]
        self.head = [ln.startswith("#", t) and _HEADING.match(ln, t) is not None for t, ln in zip(ts, lines)]
        self.blk = 0  # blkIndent
        self.list_indent = -1
        self.line = 0
        self.out: list[Block] = []
        self.items: list[Block] = []
        self.pending: Block | None = None
        self.seen = bytearray(n_lines)
        self.n_lines = n_lines
        self.content_start = 0

    def run(self) -> Read:
        self.tokenize(0)
        return Read(self.out, self.seen)

    def tokenize(self, line: int, first: bool = False) -> None:
        n, blank, ts, blk = self.n, self.blank, self.ts, self.blk
        if first:  # an item's first line: its content (after the marker) is a heading or a paragraph
            start = self.content_start
            if _HEADING.match(self.lines[line], start):
                self.heading(line, start)
            else:
                self.paragraph(line, start)
            line = self.line
            if line < n and blank[line]:
                line += 1
                self.line = line
        while line < n:
            while line < n and blank[line]:
                line += 1
            self.line = line
            if line >= n or ts[line] < blk:
                break
            if ts[line] - blk >= 4:
                raise _Bail  # indented code
            if self.bul[line]:
                self.list_block(line)
            elif self.head[line]:
                self.heading(line, ts[line])
            else:
                self.paragraph(line, ts[line])
            line = self.line
            if line < n and blank[line]:
                line += 1
                self.line = line

    def list_block(self, start: int) -> None:
        n, lines, ts, bul, items = self.n, self.lines, self.ts, self.bul, self.items
        list_blk = self.blk
        nxt = start
        while nxt < n:
            if len(items) >= _MAX_DEPTH:
                raise _Bail
            text = lines[nxt]
            marker = ts[nxt]
            content = marker + 2
            while text[content] == " ":  # 1 to 4 spaces, then content (the bail scan's promise)
                content += 1
            blk = Block("item", nxt, 0, 0, len(items), False, parent=items[-1] if items else None, bullet=True)
            items.append(blk)
            self.out.append(blk)
            self.pending = blk
            old_list = self.list_indent
            self.list_indent = list_blk
            self.blk = content  # sCount of the content: the item's blkIndent
            self.content_start = content
            self.tokenize(nxt, first=True)
            self.blk, self.list_indent = list_blk, old_list
            items.pop()
            self.pending = None
            nxt = self.line
            blk.end = nxt
            if nxt >= n or ts[nxt] < list_blk or ts[nxt] - list_blk >= 4 or not bul[nxt]:
                break
        self.line = nxt

    def heading(self, line: int, start: int) -> None:
        text = self.lines[line]
        level = len(text) - start - len(text[start:].lstrip("#"))
        rest = text[start + level:].rstrip(" ")
        cut = rest.rstrip("#")
        if cut and cut[-1] == " ":
            rest = cut
        blk = Block("heading", line, line + 1, level, len(self.items), False,
                    parent=self.items[-1] if self.items else None)
        blk.inline = rest.strip(_TRIM)
        self.out.append(blk)
        self.pending = None
        if self.n_lines:
            self.seen[line] = 1
        self.line = line + 1

    def paragraph(self, start: int, first_ts: int) -> None:
        n, blk, ts, blank, bul, head = self.n, self.blk, self.ts, self.blank, self.bul, self.head
        li = self.list_indent
        nxt = start + 1
        while nxt < n and not blank[nxt]:
            s = ts[nxt]
            if s - blk > 3:
                nxt += 1  # deeper than code: a lazy continuation all the same
                continue
            if (bul[nxt] and not (li >= 0 and s - li >= 4 and s < blk)) or head[nxt]:
                break  # a "-" item or a heading interrupts a paragraph
            nxt += 1
        if self.pending is not None:
            lines = self.lines
            text = lines[start][min(blk, first_ts):]
            if nxt > start + 1:
                text = "\n".join([text, *(lines[i][min(blk, ts[i]):] for i in range(start + 1, nxt))])
            self.pending.inline = text.strip(_TRIM)
            self.pending = None
        if self.n_lines:
            self.seen[start:nxt] = b"\x01" * (nxt - start)
        self.line = nxt
