"""Field bullets (DESIGN.md section 1): ``- key: value`` under a step of any format.

A value is one line; a misspelt field gets a warning naming the field it resembles.
"""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path

from pytest_dotasks.errors import SpecError
from pytest_dotasks.plan.formats.blocks import Block, blank, trim_end
from pytest_dotasks.plan.model import FIELD_NAMES, Field

_FIELD = re.compile(r"^(?P<key>[A-Za-z][\w-]*)[ \t]*:(?:[ \t]+(?P<value>.*)|[ \t]*)$", re.DOTALL)
# Near misses difflib does not see as close, named in the warning all the same.
_ALIASES = {"retry": "retries", "depends": "needs", "depends_on": "needs", "depends-on": "needs",
            "dependencies": "needs", "deps": "needs"}
_CODE_SPAN = re.compile(r"^(`+)[ \t]*(.*?)[ \t]*\1$", re.DOTALL)


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


@functools.lru_cache(maxsize=64)
def _key_at(key: str) -> re.Pattern[str]:
    """Where ``key:`` starts a field on a source line (compiled once per key: fields are a few names)."""
    return re.compile(rf"(?<![\w-]){re.escape(key)}[ \t]*:")


def _raw_value(key: str, raw: str, parsed: str) -> str:
    """The value as the source line has it (markdown-it turns NUL into U+FFFD)."""
    m = _key_at(key).search(raw)
    return raw[m.end():] if m else parsed


def field_of(blk: Block, path: Path, warnings: list[str], lines: list[str]) -> Field | None:
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


def one_line(it: Block, f: Field, ident: str, lines: list[str], path: Path) -> None:
    """A field's value is one line: text joined to the bullet is an error, never part of it.

    Markdown's lazy continuation makes the sentence under ``- run: rm -rf build``
    part of that bullet; run as written, the sentence would become arguments.
    """
    end = trim_end(lines, it.start, it.end)
    if end <= it.start + 1:
        return
    nxt = next((i for i in range(it.start + 1, end) if not blank(lines[i])), it.start + 1)
    shown = lines[nxt].strip(" \t")
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise SpecError(
        f"STEP {ident} field '{f.key}:' continues onto line {nxt + 1} ({shown!r}); a field's value is one line",
        path=path, line=f.line,
        fix="put a blank line before the text under it (indented no deeper than the bullet), "
            "or write the whole value on one line",
    )
