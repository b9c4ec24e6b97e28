"""The one line the plugin owns: a step's header, its checkbox and its marker.

``- [x] **STEP 8**: Generate data ✓ [task_id: task_8_3fa2b8c1] [2026-11-24T10:30:12]``

Pure string work shared by the parser (reading status) and the marker
(rewriting it). Everything outside the checkbox character and the marker
region is returned byte for byte.
"""

from __future__ import annotations

import dataclasses
import re

from pytest_dotasks.plan.model import STATUS_DONE, STATUS_FAILED, STATUS_RUNNING, STATUS_TODO, Marker, number_of

# The label of a SPEC.md step as real plans write it (DESIGN.md section 9): "**STEP 8**:",
# "**Step 8:**", "**Step 8: Title**" (title inside the bold), "**Step 8** — Title" (em or
# en dash), "**Step 8**：Title" (fullwidth colon), "**Step 8** Title", "**Step 2A**".
# Not "**STEP 1.5**", "**STEP -1**" or "**Step 1-2**" (the line scan warns about them).
_SEP = "[:\uff1a\u2014\u2013]"
_ID = r"(?P<n>\d+[A-Za-z]?)"
LABEL = (
    r"\*\*[ \t]*step[ \t]+" + _ID + r"(?:"
    r"[ \t]*\*\*(?:[ \t]*(?:" + _SEP + r"|-(?=[ \t])))?"  # **Step 8**: / — / nothing
    r"|[ \t]*" + _SEP + r"[ \t]*\*\*"  # **Step 8:**
    r"|[ \t]*" + _SEP + r"(?P<inside>(?=[^*]*\*\*))"  # **Step 8: Title**
    r")"
)
HEADER = re.compile(
    r"^(?P<lead>[ \t]*[-*+][ \t]+\[)(?P<box>[ xX])(?P<mid>\][ \t]+" + LABEL + r")(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
# Checkbox + label as the inline text of a list item's first paragraph.
INLINE_HEADER = re.compile(r"^\[[ xX]\][ \t]+" + LABEL, re.IGNORECASE)
# Spec Kit's "- [ ] T001 [P] [US1] Text" ("T-001", "**T001**", "[P]" before the checkbox
# or the id); any box character, only x/X is done. Kiro's "- [ ] 1.1 Text", "- [-] 1. Text",
# "- [ ]* 2.3 Optional".
SPECKIT_TASK = re.compile(
    r"^(?P<lead>[ \t]*[-*+][ \t]+(?:\[P\][ \t]+)?\[)(?P<box>[^\]\n\r])(?P<mid>\][ \t]+(?:\[P\][ \t]+)?"
    r"(?P<b>\*\*)?(?P<n>T-?\d{1,9})(?:\*\*)?(?=[ \t:]|$))(?P<rest>.*)$",
    re.DOTALL,
)
KIRO_TASK = re.compile(
    r"^(?P<lead>[ \t]*[-*+][ \t]+\[)(?P<box>[^\]\n\r])(?P<mid>\](?P<opt>\*)?[ \t]+"
    r"(?P<n>\d{1,9}(?:\.\d{1,9}){0,8})\.?(?=[ \t]|$))(?P<rest>.*)$",
    re.DOTALL,
)
SYMBOLS = {"✓": STATUS_DONE, "✗": STATUS_FAILED, "⏳": STATUS_RUNNING}
# Step numbers up to 999,999,999: a longer number is no step (int() of thousands of
# digits is refused by Python, and no plan has a billion steps).
MAX_STEP_DIGITS = 9
_MARK_START = re.compile(r"[ \t](?:✓|✗|⏳)")
# A marker written right after the colon by the original command:
# "**STEP 8**: ✓ [task_id: ...] [2024-11-13T10:30:00] Title"
_LEADING_MARK = re.compile(
    r"^[ \t]*(?P<sym>✓|✗|⏳)[ \t]*(?:(?:Failed|Running|Done)\b[ \t]*)?"
    # only the marker's own brackets (task id, time): "[P] Title" or "[] Title" stays the title
    r"(?:\[(?:task_id:[^\]\n]*|task_[\w.-]+|\d{4}-\d\d-\d\d[^\]\n]*)\][ \t]*)*"
)
_TASK_ID = re.compile(r"task_id:[ \t]*([\w.-]+)|\[(task_[\w.-]+)\]")
_STAMP = re.compile(r"\[(\d{4}-\d\d-\d\d(?:[T ][\d:.]+)?)\]")


@dataclasses.dataclass(frozen=True)
class Header:
    lead: str  # indent, bullet, spaces and "["
    box: str  # " ", "x" or "X"
    label: str  # "] **STEP 8**:" exactly as written
    number: int
    title: str
    marker_text: str  # the marker region, "" when none
    trailing: str  # trailing white space of the line, kept on rewrite
    # The text between the label and the marker region exactly as written (spacing
    # included), so a rewrite changes nothing before the marker. None: " {title}".
    head: str | None = None
    ident: str = ""  # "8", "2A", "T001", "1.1" ("" means str(number))
    fmt: str = "specmd"
    optional: bool = False  # Kiro's "- [ ]*"

    @property
    def done_box(self) -> str:
        """What a done step's box holds: as written if done, else x (Spec Kit: X)."""
        return self.box if self.box in "xX" else ("X" if self.fmt == "speckit" else "x")

    @property
    def marker(self) -> Marker:
        return read_marker(self.box, self.marker_text)


def step_ident(raw: str) -> str:
    """"08" -> "8", "2a" -> "2a": a plain number without its leading zeros."""
    digits = raw.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    return str(int(digits)) + raw[len(digits):]


def parse_header(line: str, fmt: str | None = None) -> Header | None:
    """Split one header line (without its line ending). None if not a header.

    ``fmt`` None: any format's header line (the three never look alike).
    """
    m = HEADER.match(line) if fmt in (None, "specmd") else None
    kind = "specmd"
    if m is None and fmt in (None, "speckit"):
        m, kind = SPECKIT_TASK.match(line), "speckit"
    if m is None and fmt in (None, "kiro"):
        m, kind = KIRO_TASK.match(line), "kiro"
    if m is None:
        return None
    raw = m.group("n")
    if kind == "specmd":
        if len(raw.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")) > MAX_STEP_DIGITS:
            return None
        raw = step_ident(raw)
    rest = m.group("rest")
    body = rest.rstrip(" \t")
    trailing = rest[len(body):]
    lead_mark = _LEADING_MARK.match(body)
    if lead_mark and lead_mark.group("sym"):
        # The original command's "**STEP 4**: ✓ [...] [...] Title": read, and on
        # rewrite normalised to "**STEP 4**: Title ✓ [...]".
        marker_text = body[: lead_mark.end()].strip()
        title = body[lead_mark.end():]
        # Drop a trailing marker too, if a hand edit left both: a step never carries two.
        tail = _MARK_START.search(title)
        if tail:
            title = title[: tail.start()]
        title = title.strip()
        head = f" {title}" if title else ""
    else:
        start = _first_marker(body)
        if start:
            marker_text = body[start.start() + 1:]
            head = body[: start.start()]
        else:
            marker_text, head = "", body
        title = head
    title = title.strip()
    if kind == "specmd" and m.group("inside") is not None and title.endswith("**"):
        title = title[:-2].rstrip()  # "**Step 8: Title**"
    return Header(
        lead=m.group("lead"),
        box=m.group("box"),
        label=m.group("mid"),
        number=number_of(raw),
        title=title,
        marker_text=marker_text.strip(),
        trailing=trailing,
        head=head,
        ident=raw,
        fmt=kind,
        optional=kind == "kiro" and m.group("opt") is not None,
    )


# What may follow a status symbol in a marker: a status word, then brackets or a
# parenthesised note ("✓ [2025-11-13] (10 examples)"), or nothing.
_MARKER_TAIL = re.compile(r"^(?:✓|✗|⏳)[ \t]*(?:(?:Failed|Running|Done)\b[ \t]*)?(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)


def _first_marker(body: str) -> re.Match[str] | None:
    """The first status symbol that starts a marker: followed (after an optional status word) by
    nothing, ``[`` or ``(``. "Fix the ✓ icon" is a title, not a done step."""
    for m in _MARK_START.finditer(body):
        tail = _MARKER_TAIL.match(body[m.start() + 1:])
        rest = tail.group("rest").strip() if tail else ""
        if not rest or rest[0] in "[(" or rest[0].isdigit():
            return m
    return None


def read_marker(box: str, marker_text: str) -> Marker:
    status = STATUS_DONE if box in "xX" else STATUS_TODO
    sym = marker_text[:1]
    if sym in SYMBOLS and not (status == STATUS_DONE and SYMBOLS[sym] != STATUS_DONE):
        status = SYMBOLS[sym]
    if status == STATUS_DONE or sym in SYMBOLS:
        tid = _TASK_ID.search(marker_text)
        stamp = _STAMP.search(marker_text)
        return Marker(
            status=status,
            task_id=(tid.group(1) or tid.group(2)) if tid else None,
            timestamp=stamp.group(1) if stamp else None,
        )
    return Marker(status=status)


def format_marker(status: str, task_id: str, timestamp: str, note: str = "") -> str:
    word = {STATUS_DONE: "✓", STATUS_FAILED: "✗ Failed", STATUS_RUNNING: "⏳ Running"}[status]
    text = f"{word} [task_id: {task_id}] [{timestamp}]"
    # The marker must stay on its one line: a note with a line break (an error
    # message, say) would otherwise add lines to the file.
    note = " ".join(note.split())
    return f"{text} {note}" if note else text


def render_header(h: Header, status: str, task_id: str, timestamp: str, note: str = "") -> str:
    """The header line with a new checkbox and marker; all else as it was."""
    box = h.done_box if status == STATUS_DONE else " "
    head = h.head if h.head is not None else (f" {h.title}" if h.title else "")
    if not head.strip():
        # "**STEP 5**: ✗ Failed [...] [...] (exit 2)" would read back as the
        # original command's after-colon form with the title "(exit 2)".
        note = ""
    return f"{h.lead}{box}{h.label}{head} {format_marker(status, task_id, timestamp, note)}{h.trailing}"
