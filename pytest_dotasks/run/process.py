"""Run a shell command in its own process group, bounded in time and output.

On timeout, or when the caller is interrupted (pytest-timeout's signal, a
KeyboardInterrupt), the whole group is killed: a step's grandchildren never
outlive it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
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


READ_SIZE = 1024 * 1024  # one read of the pipe (enlarged to this size where Linux allows)
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux; Python 3.10 has the name)
LINE_MAX = 1024 * 1024  # a "line" longer than this is passed on in pieces
_KEEP = 4096  # bytes held back at such a cut, so a secret spanning it is still found whole


class Tail:
    """The last ``cap`` bytes of a stream, cut to whole lines; counts what it dropped."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = bytearray()
        self.dropped = 0  # bytes no longer held

    def add(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > 2 * self.cap:  # trim now and then, not on every add
            self._trim()

    def _trim(self) -> None:
        extra = len(self.buf) - self.cap
        if extra > 0:
            del self.buf[:extra]
            self.dropped += extra

    @property
    def truncated(self) -> bool:
        self._trim()
        return self.dropped > 0

    def text(self) -> str:
        self._trim()
        data = bytes(self.buf)
        if self.dropped:
            # The first line was cut: start at the next whole line (if the tail holds one).
            nl = data.find(b"\n")
            if 0 <= nl < len(data) - 1:
                data = data[nl + 1:]
        return data.decode("utf-8", "replace")


def _cut(data: bytearray) -> int:
    """Where to pass on buffered output: after its last newline; in a run-away line, near
    the end (minus ``_KEEP``) on a UTF-8 character boundary; 0 to wait for more."""
    cut = data.rfind(b"\n") + 1
    if cut or len(data) < LINE_MAX:
        return cut
    cut = len(data) - _KEEP
    while cut > 0 and (data[cut] & 0xC0) == 0x80:  # never inside a multi-byte character
        cut -= 1
    return cut


def run_shell(
    command: str,
    cwd: Path,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    tee: Path | None = None,
    cap: int = OUTPUT_CAP,
    redact: Callable[[str], str] | None = None,
    on_output: Callable[[str], None] | None = None,
    kept: Tail | None = None,
) -> ProcessResult:
    """Run ``command`` with ``/bin/sh -c``; merged output, tail kept in memory.

    The output is read in blocks of whole lines (64 KiB reads), not line by
    line: 20 MB of output costs a few hundred reads, not a callback per line.
    ``redact`` rewrites each block first (secrets out), so no copy of the
    output ever holds what it removes; ``tee`` receives the whole (redacted)
    output; ``on_output`` sees each block of complete lines as it comes (live
    display), ``on_line`` each line of it. ``kept`` (a ``Tail``) receives the
    output as it comes, so a caller has its tail even if the command is interrupted.
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
    if kept is None:
        kept = Tail(cap)
    tail_of = kept
    decode = redact is not None or on_output is not None or on_line is not None
    # ``tee`` is closed on leaving the block: after the finally below has joined the reader.
    with contextlib.ExitStack() as stack:
        tee_fh = stack.enter_context(open(tee, "ab", buffering=0)) if tee is not None else None

        def block(raw: bytes) -> None:
            text = ""
            if decode:
                text = raw.decode("utf-8", "replace")
                if redact is not None:
                    text = redact(text)
                raw = text.encode("utf-8")
            if tee_fh is not None:
                tee_fh.write(raw)
            tail_of.add(raw)
            if on_output is not None:
                on_output(text)
            if on_line is not None:
                lines = text.split("\n")
                if lines[-1] == "":
                    lines.pop()
                for line in lines:
                    on_line(line.rstrip("\r"))

        def pump() -> None:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            with contextlib.suppress(OSError):  # fewer, larger reads: 20 MB in ~20 reads, not ~300
                fcntl.fcntl(fd, _F_SETPIPE_SZ, READ_SIZE)
            pending = bytearray()
            while True:
                data = os.read(fd, READ_SIZE)
                if not data:
                    break
                pending += data
                cut = _cut(pending)
                if cut:
                    block(bytes(pending[:cut]))
                    del pending[:cut]
            if pending:
                block(bytes(pending))

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
            if not reader.is_alive() and proc.stdout is not None:
                proc.stdout.close()
    return ProcessResult(
        command=command,
        returncode=None if timed_out else proc.returncode,
        output=kept.text(),
        seconds=time.monotonic() - start,
        timed_out=timed_out,
        truncated=kept.truncated,
    )


CAPTURED_CAP = 64 * 1024  # bytes of a command's output handed to pytest's capture (the tail)


def captured_text(kept: Tail, whole: Path | None) -> str:
    """What pytest captures of a command: its last lines, saying where the rest is."""
    text = kept.text()
    if text and not text.endswith("\n"):
        text += "\n"
    if not kept.truncated:
        return text
    where = f"; the whole output is in {whole}" if whole is not None else ""
    return (f"[pytest-dotasks: {kept.dropped:,} bytes of earlier output not shown here, only the last "
            f"{len(text.encode()):,}{where}]\n{text}")


class LiveLines:
    """A command's lines for the live display (``-v``), throttled.

    At most ``burst`` lines every ``every`` seconds reach ``emit``; lines that
    arrive faster are counted and replaced by one line saying how many were
    not shown. A few lines a second (a training log) all get through; 20 MB
    of output costs a few dozen terminal writes, not a quarter million.
    """

    def __init__(self, emit: Callable[[str], None], every: float = 0.5, burst: int = 20,
                 prefix: str = "  → ") -> None:
        self.emit = emit
        self.every = every
        self.burst = burst
        self.prefix = prefix
        self.pending: list[str] = []
        self.skipped = 0
        self.next = 0.0
        self.lock = threading.Lock()

    def add(self, text: str) -> None:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        with self.lock:
            self.pending.extend(lines)
            if len(self.pending) > self.burst:
                self.skipped += len(self.pending) - self.burst
                del self.pending[:-self.burst]
            now = time.monotonic()
            if now >= self.next:
                self.next = now + self.every
                self._flush("")

    def _flush(self, where: str) -> None:
        if self.skipped:
            self.emit(f"{self.prefix}... {self.skipped:,} lines not shown{where}")
            self.skipped = 0
        for line in self.pending:
            self.emit(self.prefix + line.rstrip("\r"))
        self.pending.clear()

    def close(self, whole: Path | None = None) -> None:
        """Show what is left (the command ended)."""
        with self.lock:
            self._flush(f" (the whole output is in {whole})" if whole is not None else "")


def tail(text: str, lines: int = 20) -> str:
    parts = text.rstrip().splitlines()
    return "\n".join(parts[-lines:])
