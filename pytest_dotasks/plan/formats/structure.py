"""What a markdown reading is made of: blocks with line ranges, and a map of the lines.

Built by ``blocks.blocks`` from markdown-it's tokens, or by ``fastblocks.fast_read``
for a plain plan (the same result, without markdown-it).
"""

from __future__ import annotations


class Block:
    """A list item or heading with its source line range (0-based, end exclusive)."""

    __slots__ = ("bullet", "depth", "end", "inline", "kind", "level", "parent", "quoted", "start")

    def __init__(self, kind: str, start: int, end: int, level: int, depth: int, quoted: bool,
                 parent: Block | None = None, bullet: bool = False) -> None:
        self.kind, self.start, self.end, self.level = kind, start, end, level
        self.depth, self.quoted = depth, quoted
        self.parent = parent  # enclosing list item, if any
        self.bullet = bullet  # a "-", "*" or "+" item (not "1." / "1)")
        self.inline = ""


# What markdown-it made of each source line (``Read.lines``).
UNREAD, PROSE, SHADOW = 0, 1, 2  # not reached by the parser; ordinary blocks; code, HTML, quotes


class Read:
    """The blocks of a document and what each source line was read as."""

    __slots__ = ("blocks", "lines")

    def __init__(self, blocks: list[Block], lines: bytearray) -> None:
        self.blocks, self.lines = blocks, lines
