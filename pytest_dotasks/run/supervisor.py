"""Supervisor of a background step: ``python -m pytest_dotasks.run.supervisor DIR``.

It forks once, so the launching pytest never has a child to reap: the
parent prints the supervisor's pid and exits; the supervisor starts a new
session, runs the command with its output in ``DIR/output.log``, and writes
``DIR/exit.json`` atomically when the command ends. That file is how any
later pytest run learns the result, even after the launching run is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _restore(state: Path, meta: dict) -> None:
    """Put back what a later run needs to settle this task if its folder was deleted while the
    body ran (``rm -rf .dotasks``, ``git clean -X``): without it the result would be lost."""
    if (state / "meta.json").exists():
        return
    from pytest_dotasks.run.background import proc_start

    state.mkdir(parents=True, exist_ok=True)
    _write_json(state / "meta.json", {**meta, "state_lost": True})
    _write_json(state / "pid.json", {"pid": os.getpid(), "starttime": proc_start(os.getpid())})


def _finish(state: Path, meta: dict, result: dict) -> None:
    try:
        _restore(state, meta)
    except OSError:
        pass
    _write_json(state / "exit.json", {**result, "finished": time.time()})


def supervise(state: Path) -> int:
    meta = json.loads((state / "meta.json").read_text())
    with open(state / "output.log", "ab") as out:
        proc = subprocess.Popen(meta["command"], shell=True, cwd=meta["cwd"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **meta.get("env", {})},
                                start_new_session=True)
        _write_json(state / "child.json", {"pid": proc.pid})

        def forward(signum: int, _frame: object) -> None:
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                pass

        signal.signal(signal.SIGTERM, forward)
        limit = meta.get("timeout")
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            # The step's timeout: is a whole-step limit, background or not.
            forward(signal.SIGTERM, None)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                forward(signal.SIGKILL, None)
                proc.wait()
            _finish(state, meta, {"exit_code": 124, "timed_out": True, "timeout": limit})
            return 124
    _finish(state, meta, {"exit_code": code})
    return code


def main(argv: list[str]) -> int:
    state = Path(argv[0])
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        return 0
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        code = supervise(state)
    except BaseException as exc:  # noqa: BLE001 - record why, never leave the step Running forever
        _write_json(state / "exit.json", {"exit_code": 255, "error": repr(exc), "finished": time.time()})
        code = 255
    os._exit(code & 0xFF if code >= 0 else 128 + (-code))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
