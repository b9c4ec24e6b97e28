"""What pytest-dotasks itself writes into protected files while an agent works.

The guard undoes what a tool call changed in the plan and the task log, but
the plugin writes both at the same time: other xdist workers and background
steps mark their steps in SPEC.md, and every process appends to the log.
These rules tell the plugin's writes from anyone else's:

- SPEC.md: the plugin only rewrites a step's header line (checkbox and status
  marker, title unchanged), and only with a task id it has already logged.
- The task log: the plugin only appends whole lines, each a JSON object with
  ``timestamp``, ``task_id`` and ``message``, stamped when they are written.
"""

from __future__ import annotations

import difflib
import json
import re

from pytest_dotasks.plan.header import parse_header

_LOG_TASK_ID = re.compile(rb'"task_id":\s*"([^"\\]+)"')


def is_log_entry(line: bytes, since: str = "") -> bool:
    """A whole task-log line as the plugin writes it (with a timestamp not before ``since``, when given)."""
    if not line.endswith(b"\n"):
        return False
    try:
        entry = json.loads(line)
    except ValueError:
        return False
    if not isinstance(entry, dict) or not {"timestamp", "task_id", "message"} <= entry.keys():
        return False
    return not since or str(entry["timestamp"]) >= since


def task_ids_in_log(data: bytes) -> set[str]:
    """Every task id the log has an entry for."""
    return {m.group(1).decode("utf-8", "replace") for m in _LOG_TASK_ID.finditer(data)}


def _marker_update(a: str, b: str, known_ids: set[str]) -> bool:
    """Could the plugin have turned line ``a`` into ``b``? Same step header and title, a logged task id."""
    a_body, b_body = a.rstrip("\r\n"), b.rstrip("\r\n")
    if a[len(a_body):] != b[len(b_body):]:
        return False
    ha, hb = parse_header(a_body), parse_header(b_body)
    if ha is None or hb is None:
        return False
    same = (ha.number, ha.lead, ha.label, ha.title) == (hb.number, hb.lead, hb.label, hb.title)
    return same and hb.marker.task_id is not None and hb.marker.task_id in known_ids


def merge_markers(old: str, new: str, known_ids: set[str]) -> tuple[str, bool]:
    """``old`` plus the marker updates in ``new`` the plugin could have made; True when ``new`` holds more."""
    a_lines, b_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out: list[str] = []
    rejected = False
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a_lines, b_lines, autojunk=False).get_opcodes():
        if tag == "equal":
            out += a_lines[i1:i2]
            continue
        # A changed stretch: each old line takes its marker update from it, if there is one; the rest is undone.
        block, used = b_lines[j1:j2], set()
        for a in a_lines[i1:i2]:
            k = next((k for k, b in enumerate(block) if k not in used and _marker_update(a, b, known_ids)), None)
            if k is None:
                out.append(a)
                rejected = True
            else:
                used.add(k)
                out.append(block[k])
        rejected = rejected or len(used) < len(block)
    return "".join(out), rejected
