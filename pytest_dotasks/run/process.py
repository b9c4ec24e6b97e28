"""Run a shell command in its own process group, bounded in time and output.

On timeout, or when the caller is interrupted (pytest-timeout's signal, a
KeyboardInterrupt), the whole group is killed: a step's grandchildren never
outlive it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

OUTPUT_CAP = 64 * 1024  # bytes kept in memory (the tail); the rest goes to ``tee``


@dataclasses.dataclass
class ProcessResult:
    command: str
    returncode: int | None  # None when killed on timeout
    output: str  # tail of stdout+stderr, at most OUTPUT_CAP bytes
    seconds: float
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


# Process groups run_shell has started and not yet reaped, with the name of the
# thread that started them: an interrupted check phase kills its checks' groups.
_live: dict[int, str] = {}
_live_lock = threading.Lock()


def kill_live(thread_prefix: str) -> int:
    """SIGKILL every live group started from a thread whose name has ``thread_prefix``."""
    with _live_lock:
        pids = [pid for pid, owner in _live.items() if owner.startswith(thread_prefix)]
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(pids)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def run_shell(
    command: str,
    cwd: Path,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    tee: Path | None = None,
    cap: int = OUTPUT_CAP,
    redact: Callable[[str], str] | None = None,
) -> ProcessResult:
    """Run ``command`` with ``/bin/sh -c``; merged output, tail kept in memory.

    ``on_line`` sees each output line as it comes (live display); ``tee``
    receives the whole output. ``redact`` rewrites every line first (secrets
    out), so no copy of the output ever holds what it removes.
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        shell=True,
        cwd=str(cwd),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    with _live_lock:
        _live[proc.pid] = threading.current_thread().name
    chunks: list[bytes] = []
    size = 0
    truncated = False
    # ``tee`` is closed on leaving the block: after the finally below has joined the reader.
    with contextlib.ExitStack() as stack:
        tee_fh = stack.enter_context(open(tee, "ab")) if tee is not None else None

        def pump() -> None:
            nonlocal size, truncated
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                if redact is not None:
                    raw = redact(raw.decode("utf-8", "replace")).encode("utf-8")
                if tee_fh is not None:
                    tee_fh.write(raw)
                    tee_fh.flush()
                chunks.append(raw)
                size += len(raw)
                while size > cap and len(chunks) > 1:
                    size -= len(chunks.pop(0))
                    truncated = True
                if on_line is not None:
                    on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc)
        except BaseException:
            # pytest-timeout (signal method), Ctrl-C: take the children down with us.
            kill_group(proc)
            raise
        finally:
            # The shell may have exited while a grandchild still holds the pipe.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            with _live_lock:
                _live.pop(proc.pid, None)
            reader.join(timeout=5)
    text = b"".join(chunks).decode("utf-8", "replace")
    if truncated and len(text.encode()) > cap:
        text = text[-cap:]
    return ProcessResult(
        command=command,
        returncode=None if timed_out else proc.returncode,
        output=text,
        seconds=time.monotonic() - start,
        timed_out=timed_out,
        truncated=truncated,
    )


def tail(text: str, lines: int = 20) -> str:
    parts = text.rstrip().splitlines()
    return "\n".join(parts[-lines:])
