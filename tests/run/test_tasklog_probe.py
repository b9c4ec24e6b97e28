"""tasklog.probe: can the task log be appended to? Asked before any step runs; creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dotasks.errors import LogError
from pytest_dotasks.run.tasklog import probe


def test_usable_logs_pass_and_nothing_is_created(tmp_path: Path) -> None:
    existing = tmp_path / "log.jsonl"
    existing.write_text("kept\n")
    probe(existing)
    assert existing.read_text() == "kept\n"
    probe(tmp_path / "new.jsonl")
    probe(tmp_path / ".dotasks" / "logs" / "new.jsonl")  # the plan's state folder is made on the first event
    probe(Path("/dev/null"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]


def test_a_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(LogError) as info:
        probe(tmp_path)
    line = info.value.one_line()
    assert line.startswith(f"{tmp_path}: the task log is a folder, not a file; name a file with --task-log")


def test_a_path_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "SPEC.md").write_text("")
    with pytest.raises(LogError, match="is not a folder"):
        probe(tmp_path / "SPEC.md" / "log.jsonl")
