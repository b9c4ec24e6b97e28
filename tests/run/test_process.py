"""run_shell (run/process.py): output read in blocks, redacted, tee'd whole, tail kept; live lines throttled."""

from __future__ import annotations

from pathlib import Path

from pytest_dotasks.run import process
from pytest_dotasks.run.process import LiveLines, Tail, captured_text, run_shell

SECRET = "s3cr3t-value-0123456789"


def scrub(text: str) -> str:
    return text.replace(SECRET, "***")


def test_output_is_tee_d_whole_redacted_and_its_tail_kept(tmp_path: Path) -> None:
    tee = tmp_path / "out.log"
    lines: list[str] = []
    blocks: list[str] = []
    cmd = f"i=0; while [ $i -lt 20000 ]; do echo \"line $i {SECRET}\"; i=$((i+1)); done; printf 'no newline'"
    res = run_shell(cmd, tmp_path, tee=tee, redact=scrub, on_line=lines.append, on_output=blocks.append,
                    cap=4096)
    assert res.ok and res.truncated
    whole = tee.read_text()
    assert SECRET not in whole and whole.count("***") == 20000
    assert whole.endswith("line 19999 ***\nno newline")
    assert "".join(blocks) == whole
    assert lines[0] == "line 0 ***" and lines[-1] == "no newline" and len(lines) == 20001
    assert len(res.output.encode()) <= 4096 and res.output.endswith("line 19999 ***\nno newline")
    assert res.output.startswith("line ")  # the tail starts at a whole line


def test_a_secret_in_a_line_longer_than_a_block_is_still_redacted(tmp_path: Path) -> None:
    tee = tmp_path / "out.log"
    pad = process.LINE_MAX - 10  # the secret straddles the point where a run-away line is cut
    cmd = f"head -c {pad} /dev/zero | tr '\\0' x; printf '{SECRET}'; head -c {pad} /dev/zero | tr '\\0' y; echo"
    res = run_shell(cmd, tmp_path, tee=tee, redact=scrub)
    assert res.ok
    data = tee.read_bytes()
    assert SECRET.encode() not in data and b"x***y" in data


def test_crlf_lines_and_utf8_split_across_reads(tmp_path: Path) -> None:
    lines: list[str] = []
    res = run_shell("printf 'a\\r\\nb\\n'; python3 -c \"import sys; sys.stdout.write('é' * 70000 + '\\n')\"",
                    tmp_path, on_line=lines.append)
    assert res.ok
    assert lines[:2] == ["a", "b"] and lines[2] == "é" * 70000


def test_tail_drops_whole_lines_and_counts() -> None:
    t = Tail(10)
    t.add(b"first line\nsecond\nthird\n")
    assert t.truncated and t.text() == "third\n" and t.dropped == 14
    text = captured_text(t, Path("/x/out.log"))
    assert text.startswith("[pytest-dotasks: 14 bytes of earlier output not shown here") and "/x/out.log" in text
    small = Tail(100)
    small.add(b"all of it")
    assert captured_text(small, None) == "all of it\n"


def test_live_lines_are_throttled_and_the_last_ones_shown() -> None:
    shown: list[str] = []
    live = LiveLines(shown.append, every=3600, burst=5)  # one flush per hour: only the first add and close
    live.add("1\n2\n")
    for k in range(3, 1001):
        live.add(f"{k}\n")
    live.close(Path("out.log"))
    assert shown[:2] == ["  → 1", "  → 2"]
    assert shown[2] == "  → ... 993 lines not shown (the whole output is in out.log)"
    assert shown[3:] == [f"  → {k}" for k in range(996, 1001)]


def test_the_callers_tail_holds_the_output_of_an_interrupted_command(tmp_path: Path) -> None:
    kept = Tail(1024)
    res = run_shell("echo before the hang; sleep 30", tmp_path, timeout=1, kept=kept)
    assert res.timed_out
    assert kept.text() == "before the hang\n" == res.output


def test_without_secrets_or_a_live_view_the_bytes_pass_untouched(tmp_path: Path) -> None:
    tee = tmp_path / "out.log"
    res = run_shell("printf 'ok \\377\\376 raw\\n'", tmp_path, tee=tee)
    assert tee.read_bytes() == b"ok \xff\xfe raw\n"  # nothing decoded, nothing replaced
    assert res.output == "ok \ufffd\ufffd raw\n"
