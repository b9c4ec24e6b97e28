"""Which format a plan file is written in (DESIGN.md section 9).

From the content first: the format with the most step lines wins (SPEC.md's
``- [ ] **STEP 8**``, Spec Kit's ``- [ ] T001``, Kiro's ``- [ ] 1.1``). With no
step line, or a tie, the path decides (``.kiro/specs/NAME/tasks.md`` is Kiro,
``specs/NAME/tasks.md`` and any other ``tasks.md`` Spec Kit), else SPEC.md.
``--plan-format`` (``force``) overrides both for every plan of the run.
"""

from __future__ import annotations

import re
from pathlib import Path

from pytest_dotasks.errors import SettingsError
from pytest_dotasks.plan.model import FORMATS

CHOICES = ("auto", *FORMATS)
_LINES = {
    "specmd": re.compile(r"^[ \t]*[-*+][ \t]+\[[ xX]\][ \t]+\*\*[ \t]*step[ \t]+\d", re.IGNORECASE | re.MULTILINE),
    "speckit": re.compile(r"^[ \t]*[-*+][ \t]+(?:\[P\][ \t]+)?\[[^\]\n]\][ \t]+(?:\[P\][ \t]+)?(?:\*\*)?T-?\d",
                          re.MULTILINE),
    "kiro": re.compile(r"^[ \t]*[-*+][ \t]+\[[^\]\n]\]\*?[ \t]+\d+(?:\.\d+)*\.?[ \t]", re.MULTILINE),
}
_forced: dict[str, str] = {}
_SAMPLE = 1 << 16


def force(fmt: str | None) -> None:
    """``--plan-format``: every plan of this process is read as ``fmt`` ("auto": detected)."""
    fmt = (fmt or "auto").strip().lower()
    if fmt not in CHOICES:
        raise SettingsError(f"invalid --plan-format {fmt!r}", fix=f"choose one of {', '.join(CHOICES)}")
    _forced.clear()
    if fmt != "auto":
        _forced["fmt"] = fmt


def detect(text: str, path: Path | None = None, fmt: str | None = None) -> str:
    """The plan's format: ``fmt`` if given (not "auto"), else forced, else detected."""
    if fmt and fmt != "auto":
        return fmt
    if "fmt" in _forced:
        return _forced["fmt"]
    # The first 64 KB decide when they hold step lines (a 5,000-step plan is 600 KB:
    # counting all of it would cost collection time for nothing).
    head = text[:_SAMPLE]
    counts = {name: len(pattern.findall(head)) for name, pattern in _LINES.items()}
    top, second = sorted(counts.values())[-2:][::-1]
    if len(head) < len(text) and top <= second * 2:
        counts = {name: len(pattern.findall(text)) for name, pattern in _LINES.items()}
    best = max(counts.values())
    winners = [name for name, n in counts.items() if n == best]
    if best and len(winners) == 1:
        return winners[0]
    hinted = by_path(path)
    if hinted is not None and (not best or hinted in winners):
        return hinted
    return winners[0] if best else "specmd"


def by_path(path: Path | None) -> str | None:
    """What the path says: Kiro's ``.kiro/specs/NAME/tasks.md``, Spec Kit's ``tasks.md``."""
    if path is None or path.name.lower() != "tasks.md":
        return None
    parts = [p.lower() for p in path.parts]
    if len(parts) >= 4 and parts[-3] == "specs" and parts[-4] == ".kiro":
        return "kiro"
    return "speckit"
