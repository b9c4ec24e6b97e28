"""The step model: what every plan format parses into.

Nothing here knows markdown or pytest. A second parser (Spec Kit's or Kiro's
``tasks.md``) only has to produce these objects for selection, marking, the
task log and the pytest items to work unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

# Field names a step may carry (DESIGN.md section 1).
FIELD_NAMES: tuple[str, ...] = (
    "needs",
    "requires",
    "env",
    "inputs",
    "check",
    "run",
    "agent",
    "skills",
    "model",
    "retries",
    "background",
    "monitor",
    "alert",
    "outputs",
    "validate",
    "metrics",
    "timeout",
    "kind",
)
# Fields that may be written several times; every occurrence is kept.
REPEATABLE_FIELDS = frozenset({"check", "validate", "metrics", "outputs", "inputs", "requires", "env"})
KINDS = ("quick", "data", "training", "evaluation")

STATUS_TODO = "todo"
STATUS_DONE = "done"
STATUS_FAILED = "failed"
STATUS_RUNNING = "running"


@dataclasses.dataclass(frozen=True)
class Field:
    """One ``- key: value`` bullet, with where it was written."""

    key: str
    value: str
    line: int  # 1-based line in the source file


@dataclasses.dataclass(frozen=True)
class Marker:
    """The status a header line carries (checkbox plus optional marker)."""

    status: str  # one of STATUS_*
    task_id: str | None = None
    timestamp: str | None = None


@dataclasses.dataclass(frozen=True)
class Step:
    """One executable step of a plan.

    ``ident`` is the step's id as people see and write it (``"8"``, ``"2A"``,
    ``"T001"``, ``"1.2"``): ``needs:``, ``--steps``, ``-k``, the log's ``step``.
    ``number`` is the internal int key, ``number_of(ident)``: equal to N for a
    plain ``STEP N``. ``line`` is the 1-based line of the header that carries the
    checkbox; ``detail_line`` the 1-based line of its detail heading, if any.
    """

    number: int
    title: str
    description: str
    fields: tuple[Field, ...]
    phase: str | None
    path: Path
    line: int
    marker: Marker
    detail_line: int | None = None
    ident: str = ""  # "" means str(number)
    fmt: str = "specmd"  # FORMATS: which parser read it
    labels: tuple[str, ...] = ()  # Spec Kit's [P], [US1]: keywords and markers
    parallel: bool = False  # Spec Kit's [P]
    optional: bool = False  # Kiro's "- [ ]*"
    group: str | None = None  # Kiro: the id of the parent task this one belongs to
    context: tuple[tuple[str, str], ...] = ()  # (label, path or pasted text) handed to the agent
    # Ids needed when no 'needs:' bullet says otherwise; None: the previous step in the file.
    default_needs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.ident:
            object.__setattr__(self, "ident", str(self.number))

    @property
    def name(self) -> str:
        """The pytest item name: ``step8``, ``step2A``; ``T001`` and ``1.1`` for tasks.md."""
        return f"step{self.ident}" if self.fmt == "specmd" else self.ident

    @property
    def log_step(self) -> int | str:
        """The log's ``step`` field: the number for a plain STEP N (as ever), else the id."""
        return self.number if self.ident == str(self.number) else self.ident

    def values(self, key: str) -> list[str]:
        """Every value given for ``key``, in file order (raw strings)."""
        return [f.value for f in self.fields if f.key == key]

    def value(self, key: str) -> str | None:
        vals = self.values(key)
        return vals[-1] if vals else None

    def field(self, key: str) -> Field | None:
        for f in reversed(self.fields):
            if f.key == key:
                return f
        return None

    def items(self, key: str) -> list[str]:
        """Comma-separated list values of ``key`` across all its bullets."""
        out: list[str] = []
        for v in self.values(key):
            out.extend(split_list(v))
        return out

    @property
    def done(self) -> bool:
        return self.marker.status == STATUS_DONE

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


@dataclasses.dataclass(frozen=True)
class Spec:
    path: Path
    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()
    fmt: str = "specmd"
    # Kiro: (group id, 1-based header line, sub-task ids, status); ticked when they are all done.
    groups: tuple[tuple[str, int, tuple[str, ...], str], ...] = ()

    def by_number(self) -> dict[int, Step]:
        return {s.number: s for s in self.steps}

    def by_ident(self) -> dict[str, Step]:
        return {s.ident: s for s in self.steps}

    def header_lines(self) -> dict[int, int]:
        """Number -> 0-based header line of every step and group: what the marker looks up."""
        out = {s.number: s.line - 1 for s in self.steps}
        out.update((number_of(g), line - 1) for g, line, _, _ in self.groups)
        return out


FORMATS = ("specmd", "speckit", "kiro")
# Past every plain step number (at most 9 digits): ids that are not one.
_IDENT_BASE = 10**9
_PLAIN = re.compile(r"[1-9]\d{0,8}")


def number_of(ident: str) -> int:
    """The internal int key of a step id: N for ``"N"``, a value past every N otherwise.

    A function of the id alone, so the marker finds a step by the id its header
    line shows, whatever else changed in the file.
    """
    if _PLAIN.fullmatch(ident):
        return int(ident)
    return _IDENT_BASE + int.from_bytes(ident.encode("utf-8"), "big")


def ident_of(number: int) -> str:
    """The id ``number_of`` made ``number`` from."""
    if number < _IDENT_BASE:
        return str(number)
    n = number - _IDENT_BASE
    return n.to_bytes((n.bit_length() + 7) // 8, "big").decode("utf-8", "replace")


_DUPLICATE = re.compile(r"^(?P<base>.+)-(?P<k>[2-9]|[1-9]\d+)$")


def base_number(number: int) -> int:
    """The number the header line itself shows: ``T320-2`` (a repeated id) -> ``T320``."""
    m = _DUPLICATE.match(ident_of(number)) if number > _IDENT_BASE else None
    return number_of(m.group("base")) if m and not m.group("base").endswith("-") else number


_SPLIT = re.compile(r"\s*,\s*")


def split_list(value: str) -> list[str]:
    """Split a list field value on commas, dropping empties."""
    return [p for p in _SPLIT.split(value.strip()) if p]
