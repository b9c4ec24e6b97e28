"""The marker journal: what the plugin last wrote on each step's header line.

``.dotasks/marks/<plan name>.jsonl`` beside the plan, one JSON object a line:
``step``, ``task_id``, ``status``, ``before`` and ``after`` (the header line as
it was before our write and as we wrote it), ``time``. An editor that had the
plan open before a mark and saves afterwards puts ``before`` back over our
marker; the journal is how the next run sees that and restores the marker
(``marking.restore_lost_markers``). One file per plan, so two plans in one
folder never share one (each is written under its own plan's lock).

Best effort by design: a journal that cannot be written costs only the
restore, never the marker itself. Every function here is called under the
plan's lock.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

# Past this size, and again each time it doubles, the journal is compacted to the last
# entry of each step (doubling: a 10,000-step run's compacted journal is itself over
# 1 MB, and must not be rewritten on every append).
COMPACT_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Entry:
    step: int
    task_id: str
    status: str
    before: str
    after: str
    time: str = ""


def journal_path(real: Path) -> Path:
    return real.parent / ".dotasks" / "marks" / f"{real.name}.jsonl"


def append(real: Path, entry: Entry) -> None:
    path = journal_path(real)
    line = json.dumps(dataclasses.asdict(entry), ensure_ascii=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            data = line.encode("utf-8")
            fh.write(data)
            size = fh.tell()
        before = size - len(data)
        if size > COMPACT_BYTES and (size // COMPACT_BYTES).bit_length() > (before // COMPACT_BYTES).bit_length():
            _compact(path)
    except OSError:
        pass  # the restore is lost, not the marker


def read(real: Path) -> list[Entry]:
    """Every whole entry, in the order written (a line torn by a kill is skipped)."""
    try:
        text = journal_path(real).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out: list[Entry] = []
    for line in text.split("\n"):
        try:
            raw = json.loads(line)
            out.append(Entry(step=int(raw["step"]), task_id=str(raw["task_id"]), status=str(raw["status"]),
                             before=str(raw["before"]), after=str(raw["after"]), time=str(raw.get("time", ""))))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def clear(real: Path) -> None:
    try:
        os.unlink(journal_path(real))
    except OSError:
        pass


def _compact(path: Path) -> None:
    last: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        try:
            last[int(json.loads(line)["step"])] = line
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + ".compact")
    tmp.write_text("".join(line + "\n" for line in last.values()), encoding="utf-8")
    os.replace(tmp, path)
