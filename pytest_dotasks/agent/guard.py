"""Agents cannot change the rules: what configures or records the run is protected.

Protected (DESIGN.md section 6): the plan (SPEC.md), the task log,
``.dotasks/``, the ini file pytest used (``StepContext.ini_path``), every
``conftest.py`` under the root (and between the root and the ini file's
folder, where pytest loads them too), and ``.claude/``. Two layers, for any
backend that can use them:

1. The file tools refuse to write them (``write_refusal``, given
   ``protected_paths(ctx)``); reading stays allowed.
2. Every tool call that can write (Bash above all: ``echo ... >> SPEC.md``)
   is bracketed by ``Guard.snapshot()`` and ``Guard.check(snapshot)``, which
   finds what the call changed in the protected set, puts it back, keeps the
   changed version under ``.dotasks/guard/TASK_ID/`` (a person's concurrent
   edit is never lost) and says what happened (``describe``, for the model).
   Only the protected set is looked at, never the tree (``snapshot.py``).

The plugin writes some of these files itself while an agent works (other
xdist workers, background steps settling, the log), so "put back" differs:

- SPEC.md: changes the plugin could have made (``plugin_writes``: a header
  line's marker, with a logged task id) are kept; everything else is undone
  line by line, under the plan's lock. A marker forged with a task id the
  log already holds passes: a known limit.
- The task log: append-only. Appended log entries stay; other appended lines
  are dropped; a rewritten or truncated log gets its old content back plus
  the entries appended since.
- The ini file, conftest.py files and ``.claude/``: exactly as before the
  call; created files are moved away, deleted ones restored. A new
  ``conftest.py`` (or ``pytest.ini``) is looked for in the root, in folders
  directly under it, and up to the ini file's folder; not deeper (Write
  refuses that name anywhere).
- ``.dotasks/``: the file tools refuse all of it, but after a call only a
  background step's write-once state is checked (``background/TASK/``:
  ``meta.json``, ``pid.json``, ``child.json``, ``exit.json``, ``settling``,
  ``settled``): changed or deleted, it comes back. Everything else there
  (locks, claims, the marker journal, transcripts, outputs) is created,
  rewritten and removed by the plugin itself, from other processes too,
  at any moment: a change cannot be told from the plugin's own. An
  ``exit.json`` forged for a background step still running cannot be told
  from its supervisor's either: a known limit.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_dotasks.agent.fileio import atomic_write
from pytest_dotasks.agent.plugin_writes import is_log_entry, merge_markers, task_ids_in_log
from pytest_dotasks.agent.snapshot import Looker, Seen, signature
from pytest_dotasks.run.tasklog import now_iso

if TYPE_CHECKING:
    from pytest_dotasks.run.context import StepContext

KEEP_CAP = 8 << 20  # bytes of a protected file held for restoring it
STATE_CAP = 64 << 10  # ... of a file under .dotasks/
LOG_CAP = 1 << 62  # the whole task log
CLAUDE_DIR = ".claude"
CONFIG_NAMES = ("conftest.py", "pytest.ini", ".pytest.ini")
BACKGROUND = "background"  # .dotasks/background/TASK_ID/: a background step's state
WRITE_ONCE = ("meta.json", "pid.json", "child.json", "exit.json", "settling", "settled")
_PRUNE = {".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".nox", ".mypy_cache",
          ".pytest_cache", ".ruff_cache", ".dotasks", "site-packages"}


# ------------------------------------------------------------ what is protected

def find_conftests(root: Path, ini: Path | None = None) -> list[Path]:
    """Every conftest.py under ``root`` (tool and cache folders pruned) and between it and ``ini``'s folder."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _PRUNE]
        if "conftest.py" in files:
            found.append(Path(folder) / "conftest.py")
    found += [d / "conftest.py" for d in _ancestors(root, ini) if (d / "conftest.py").is_file()]
    return found


def _ancestors(root: Path, ini: Path | None) -> list[Path]:
    """The folders above ``root`` up to the ini file's, when the ini file sits above the root."""
    if ini is None:
        return []
    top = ini.parent
    return [p for p in root.parents if p == top or top in p.parents]


def protected_paths(ctx: StepContext) -> list[Path]:
    """Files and folders the agent's file tools may read but never write (real paths)."""
    return Guard.for_step(ctx).protected


def write_refusal(path: Path, protected: Iterable[Path], root: Path) -> str | None:
    """Why a file tool may not write ``path`` (a real path), as the end of "refused: FILE ...", or None."""
    for p in protected:
        if path == p or p in path.parents:
            return ("belongs to pytest-dotasks or configures this run (the plan, the task log, .dotasks/, the "
                    "pytest ini file, conftest.py, .claude/); pytest-dotasks updates what it owns itself")
    if path.name == "conftest.py":
        return ("is a conftest.py: those configure pytest, which runs this plan; put shared test code in a "
                "module the tests import instead")
    if path.name in CONFIG_NAMES and path.parent == root:
        return "would be a pytest ini file in the project root, changing how pytest runs this plan"
    return None


# ------------------------------------------------------------ snapshot, compare, revert

@dataclasses.dataclass
class Snapshot:
    files: dict[Path, Seen]  # the ini file, conftest.py files, config names that must not appear
    spec: Seen
    log: Seen
    claude: dict[str, Seen]  # everything under .claude/, the folder itself included
    state: dict[str, Seen]  # background steps' folders and write-once files
    taken: str = ""  # when (the task log's timestamp format)


@dataclasses.dataclass
class Change:
    """Something a tool call did to a protected path, and what the guard did about it."""

    path: Path
    what: str  # changed, created, deleted, rewritten, appended
    restored: bool = False
    kept: Path | None = None  # where the changed version went
    note: str = ""


class Guard:
    """Snapshot the protected set before a tool call; after it, find and undo what changed.

    ``check(snapshot)`` is ``compare`` then ``revert``; each returns the
    ``Change`` list (empty: nothing protected was touched). Never raises for
    what it finds or fails to restore: that is in the changes' notes.
    """

    def __init__(self, root: Path, *, spec: Path, log: Path, state_dir: Path, ini: Path | None = None,
                 task_id: str = "agent") -> None:
        real = os.path.realpath
        self.root = Path(real(root))
        self.spec = Path(real(spec))
        self.log = Path(real(log))
        self.state_dir = Path(real(state_dir))
        self.ini = Path(real(ini)) if ini is not None else None
        self.claude_dir = self.root / CLAUDE_DIR
        self.conftests = find_conftests(self.root, self.ini)
        self.keep_dir = self.state_dir / "guard" / task_id
        self._kept = 0
        self._looker = Looker()

    @classmethod
    def for_step(cls, ctx: StepContext) -> Guard:
        return cls(ctx.root, spec=ctx.spec_path, log=ctx.log.path, state_dir=ctx.state_dir, ini=ctx.ini_path,
                   task_id=ctx.task_id)

    @property
    def protected(self) -> list[Path]:
        """The files and folders the file tools refuse to write (what ``protected_paths(ctx)`` returns)."""
        out = [self.spec, self.log, self.state_dir, self.claude_dir, *self.conftests]
        return out + ([self.ini] if self.ini is not None else [])

    def _config_candidates(self) -> list[Path]:
        """Where a new conftest.py or pytest.ini would change how pytest runs the plan."""
        above = _ancestors(self.root, self.ini)
        folders = [self.root, *above]
        try:
            with os.scandir(self.root) as it:
                folders += [Path(e.path) for e in it
                            if e.name not in _PRUNE and e.name != CLAUDE_DIR and e.is_dir(follow_symlinks=False)]
        except OSError:
            pass
        return [f / "conftest.py" for f in folders] + [d / n for d in (self.root, *above) for n in CONFIG_NAMES[1:]]

    def snapshot(self) -> Snapshot:
        look = self._looker.look
        files = {p: look(p, KEEP_CAP) for p in (*self.conftests, *self._config_candidates())}
        if self.ini is not None:
            files[self.ini] = look(self.ini, KEEP_CAP)
        return Snapshot(files=files, spec=look(self.spec, KEEP_CAP), log=look(self.log, LOG_CAP),
                        claude=self._looker.tree(self.claude_dir, KEEP_CAP),
                        state=self._background(), taken=now_iso())

    def _background(self) -> dict[str, Seen]:
        """The folders of background steps and their write-once files (not their output, not the rest)."""
        tree = self._looker.tree(self.state_dir / BACKGROUND, STATE_CAP)
        return {name: seen for name, seen in tree.items()
                if seen.kind == "dir" or os.path.basename(name) in WRITE_ONCE}

    def compare(self, before: Snapshot) -> list[Change]:
        """What changed in the protected set since ``before`` that the plugin did not do itself."""
        same = self._looker.same
        changes: list[Change] = []
        files = dict(before.files)
        for p in self._config_candidates():
            files.setdefault(p, Seen(None))  # in a folder made during the call: nothing was there
        changes += [Change(p, _verb(seen, p)) for p, seen in files.items() if not same(seen, p, KEEP_CAP)]
        log_change = self._log_change(before.log)
        if log_change is not None:
            changes.append(log_change)
        if not same(before.spec, self.spec, KEEP_CAP) and (
                self._spec_merge(before.spec)[1] or self._looker.look(self.spec, KEEP_CAP).mode != before.spec.mode):
            changes.append(Change(self.spec, _verb(before.spec, self.spec)))
        now_claude = self._looker.tree(self.claude_dir, KEEP_CAP)
        for name in sorted(set(before.claude) | set(now_claude)):
            old = before.claude.get(name, Seen(None))
            if name not in now_claude or not same(old, name, KEEP_CAP):
                changes.append(Change(Path(name), _verb(old, Path(name))))
        for name, old in before.state.items():
            try:
                st = os.lstat(name)
            except OSError:
                changes.append(Change(Path(name), "deleted"))
                continue
            if old.kind == "dir":
                if not stat.S_ISDIR(st.st_mode):  # a folder replaced by a link or a file
                    changes.append(Change(Path(name), "changed"))
            elif signature(st) != old.sig and not same(old, name, STATE_CAP):
                changes.append(Change(Path(name), "changed"))
        return changes

    def revert(self, before: Snapshot, changes: list[Change]) -> list[Change]:
        """Put each change back; ``changes`` are updated in place (restored, kept, note) and returned."""
        def old_of(c: Change) -> Seen:
            name = str(c.path)
            return before.files.get(c.path) or before.claude.get(name) or before.state.get(name) or Seen(None)

        # Folders first, outermost first (what is restored into them must not land in a link's target);
        # then the rest, innermost first (files leave a created folder before the folder goes).
        folders = sorted((c for c in changes if old_of(c).kind == "dir"), key=lambda c: len(c.path.parts))
        rest = sorted((c for c in changes if old_of(c).kind != "dir"), key=lambda c: len(c.path.parts), reverse=True)
        for change in [*folders, *rest]:
            try:
                if change.path == self.spec:
                    self._revert_spec(before.spec, change)
                elif change.path == self.log:
                    self._revert_log(before.log, change, before.taken)
                else:
                    self._restore(change.path, old_of(change), change)
            except Exception as exc:  # noqa: BLE001 - reported to the model and the log, never raised into the loop
                change.note = f"could not restore it: {getattr(exc, 'strerror', None) or exc}"
            self._looker.forget(change.path)
        return changes

    def check(self, before: Snapshot) -> list[Change]:
        """``compare`` then ``revert``: what the call changed, each put back."""
        changes = self.compare(before)
        return self.revert(before, changes) if changes else changes

    # ---------------------------------------------------------------- the plan and the log

    def _log_change(self, before: Seen) -> Change | None:
        if self._looker.same(before, self.log, LOG_CAP):
            return None
        now = self._looker.look(self.log, LOG_CAP)
        old = before.data or b""
        if now.kind == "file" and now.data is not None and now.data.startswith(old):
            foreign = [ln for ln in now.data[len(old):].splitlines(keepends=True) if not is_log_entry(ln)]
            return Change(self.log, "appended", note=f"{len(foreign)} line(s) that are not log entries dropped") \
                if foreign else None
        return Change(self.log, "rewritten" if before.sig is not None else "created")

    def _spec_merge(self, before: Seen) -> tuple[bytes | None, bool]:
        """(the plan with only the plugin's marker changes kept, whether anything else changed)."""
        now = self._looker.look(self.spec, KEEP_CAP)
        if before.data is None:
            return None, now.kind != before.kind
        if now.kind != "file" or now.data is None:
            return before.data, True
        try:
            old_text, new_text = before.data.decode("utf-8"), now.data.decode("utf-8")
        except UnicodeDecodeError:
            return before.data, True
        known = task_ids_in_log(self._looker.look(self.log, LOG_CAP).data or b"")
        merged, rejected = merge_markers(old_text, new_text, known)
        return merged.encode("utf-8"), rejected

    def _revert_spec(self, before: Seen, change: Change) -> None:
        from pytest_dotasks.plan.marking import spec_lock

        with spec_lock(self.spec):  # no marker is written while we merge
            merged, rejected = self._spec_merge(before)
            if not rejected:  # only another writer's markers by now, or the mode
                if before.mode is not None and os.path.isfile(self.spec):
                    os.chmod(self.spec, before.mode)
                change.restored = True
                return
            if merged is None:
                change.note = "its old content was too large to keep; it was not restored"
                return
            now = self._looker.look(self.spec, KEEP_CAP)
            change.kept = self._keep(self.spec, now.data)
            if os.path.lexists(self.spec) and now.kind != "file":
                _remove(self.spec)
            atomic_write(self.spec, merged, before.mode)
            change.restored = True

    def _revert_log(self, before: Seen, change: Change, since: str) -> None:
        old = before.data or b""
        now = self._looker.look(self.log, LOG_CAP)
        if now.data is not None and now.data.startswith(old):
            lines = now.data[len(old):].splitlines(keepends=True)
            since = ""  # all appended during the call
        else:  # rewritten: what the plugin appended meanwhile is new, and stamped after the snapshot
            known = set(old.splitlines(keepends=True))
            lines = [ln for ln in (now.data or b"").splitlines(keepends=True) if ln not in known]
        change.kept = self._keep(self.log, now.data)
        if os.path.lexists(self.log) and now.kind != "file":
            _remove(self.log)
        atomic_write(self.log, old + b"".join(ln for ln in lines if is_log_entry(ln, since)), before.mode)
        change.restored = True

    # ---------------------------------------------------------------- everything else

    def _restore(self, path: Path, old: Seen, change: Change) -> None:
        if old.kind == "file" and old.data is None or old.kind in ("link", "other"):
            change.note = "its old content was not kept (too large, or not a regular file); it was left as it is"
            return
        if os.path.lexists(path):
            now = self._looker.look(path, KEEP_CAP)
            if old.kind == "dir" and now.kind == "dir":
                os.chmod(path, old.mode or 0o755)
                change.restored = True
                return
            both_files = old.kind == "file" and now.kind == "file" and now.data is not None
            change.kept = self._keep(path, now.data if both_files else None)  # without data: moved away
            if os.path.lexists(path) and not both_files:
                _remove(path)
        if old.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, old.mode or 0o755)
        elif old.kind == "file" and old.data is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, old.data, old.mode)
        change.restored = True

    def _keep(self, path: Path, data: bytes | None = None) -> Path | None:
        """Keep the changed version of ``path`` under the keep folder: ``data`` copied, else the path moved."""
        self._kept += 1
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            rel = Path(path.name)
        dest = self.keep_dir / f"{self._kept:03d}" / rel
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if data is not None:
                atomic_write(dest, data)
            elif os.path.lexists(path):
                os.replace(path, dest)
            else:
                return None
            return dest
        except OSError:
            return None


def _remove(path: Path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _verb(before: Seen, path: Path) -> str:
    if before.sig is None:
        return "created"
    return "changed" if os.path.lexists(path) else "deleted"


def describe(changes: Sequence[Change], root: Path) -> str:
    """What the tool result tells the model about the changes put back."""
    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(root))
        except ValueError:
            return str(p)

    lines = [("[pytest-dotasks] This call changed files that configure or record the run. They are protected "
              "and were put back:")]
    for c in changes:
        done = "restored" if c.restored else "NOT restored"
        note = f"; {c.note}" if c.note else ""
        kept = f"; the changed version is kept at {rel(c.kept)}" if c.kept else ""
        lines.append(f"- {rel(c.path)}: {c.what}, {done}{note}{kept}")
    lines.append("Do not change SPEC.md, the task log, .dotasks/, .claude/, conftest.py files or the pytest ini "
                 "file: pytest-dotasks marks steps and logs the run itself.")
    return "\n".join(lines)
