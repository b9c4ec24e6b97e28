"""Reading a background step's ``monitor:`` file (run/background.py): bounded, regular files only."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from pytest_dotasks.run import background as bg


def task(tmp_path: Path, monitor: str = "train.log", **kw: object) -> bg.BgTask:
    state = tmp_path / ".dotasks" / "background" / "task_1_00000000"
    state.mkdir(parents=True, exist_ok=True)
    return bg.BgTask(task_id="task_1_00000000", step=1, spec=tmp_path / "SPEC.md", state=state, command="true",
                     pid=0, starttime=None, monitor=monitor, **kw)  # type: ignore[arg-type]


def within(seconds: float, fn, *args):  # a hang guard, not a timing assertion
    out: list = []

    def call() -> None:
        try:
            out.append(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            out.append(exc)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__} blocked"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def test_lines_are_read_once_and_a_partial_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("a\nb\npart")
    t = task(tmp_path)
    assert bg.read_new_lines(t, tmp_path) == ["a", "b"]
    assert bg.read_new_lines(t, tmp_path) == []
    with open(log, "a") as fh:
        fh.write("ial\nc\n")
    assert bg.read_new_lines(t, tmp_path) == ["partial", "c"]


def test_reading_starts_at_the_size_the_file_had_when_the_step_started(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("old nan\n" * 1000)
    start = bg._monitor_start(log)
    t = task(tmp_path, offset=start["offset"], monitor_id=tuple(start["id"]))
    with open(log, "a") as fh:
        fh.write("new\n")
    assert bg.read_new_lines(t, tmp_path) == ["new"]


def test_a_rotated_or_truncated_file_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("one\ntwo\n")
    t = task(tmp_path)
    assert bg.read_new_lines(t, tmp_path) == ["one", "two"]
    log.write_text("x\n")  # truncated
    assert bg.read_new_lines(t, tmp_path) == ["x"]
    (tmp_path / "new.log").write_text("fresh one\nfresh two\nfresh three\n")
    os.replace(tmp_path / "new.log", log)  # rotated: another file, already longer than our offset
    assert bg.read_new_lines(t, tmp_path) == ["fresh one", "fresh two", "fresh three"]


def test_reads_are_bounded_and_lines_cut(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    with open(log, "wb") as fh:
        fh.write(b"old line\n" * (3 * bg.MONITOR_CHUNK // 9))  # 3 MiB appended since the last look
        fh.write(b"x" * 10_000 + b"\n" + b"last\n")
    t = task(tmp_path)
    lines = bg.read_new_lines(t, tmp_path)
    assert lines[-1] == "last" and len(lines) == 200
    assert lines[-2] == "x" * bg.MONITOR_LINE_MAX + " [...]"
    assert t.offset == log.stat().st_size  # the latest chunk was read: the monitor is current


def test_one_line_longer_than_a_chunk_does_not_stall(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"y" * (bg.MONITOR_CHUNK + 10))
    t = task(tmp_path)
    first = bg.read_new_lines(t, tmp_path)
    assert len(first) == 1 and first[0].endswith(" [...]")
    assert t.offset == log.stat().st_size


def test_the_position_is_recorded_for_a_later_run(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("seen\n")
    t = task(tmp_path)
    (t.state / "meta.json").write_text(json.dumps({
        "task_id": t.task_id, "step": 1, "spec": str(t.spec), "command": "true", "monitor": "train.log",
        "monitor_start": {"offset": 0, "id": None}}))
    (t.state / "pid.json").write_text(json.dumps({"pid": 0, "starttime": None}))
    assert bg.read_new_lines(t, tmp_path) == ["seen"]
    with open(log, "a") as fh:
        fh.write("unseen\n")
    later = bg.BgTask.load(t.state)  # another run picks the task up: nothing replayed
    assert bg.read_new_lines(later, tmp_path) == ["unseen"]


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_anything_but_a_regular_file_is_refused_once_without_blocking(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "train.log"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    t = task(tmp_path)
    with pytest.raises(bg.MonitorRefused, match="named pipe" if kind == "fifo" else "a folder"):
        within(10, bg.read_new_lines, t, tmp_path)
    assert within(10, bg.read_new_lines, t, tmp_path) == []  # said once, then silent
    assert within(10, bg.tail_file, path) == ""


def test_a_fifo_swapped_in_after_the_check_does_not_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "train.log"
    path.write_text("regular\n")
    real_open = os.open

    def swap_then_open(p, flags, *a):  # the file becomes a FIFO between stat and open
        if Path(p) == path:
            path.unlink()
            os.mkfifo(path)
        return real_open(p, flags, *a)

    monkeypatch.setattr(bg.os, "open", swap_then_open)
    with pytest.raises(bg.MonitorRefused, match="named pipe"):
        within(10, bg.read_new_lines, task(tmp_path), tmp_path)


def test_tail_file_reads_only_the_end(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_bytes(b"line\n" * 1_000_000 + b"next to last\nlast\n")
    assert bg.tail_file(path, 2) == "next to last\nlast"
    assert bg.tail_file(tmp_path / "missing.log") == ""
