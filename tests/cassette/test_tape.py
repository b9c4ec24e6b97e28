"""A tape on its own: what a recording keeps of a request, and how a replay compares one."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pytest_dotasks.cassette.store import Cassette, Header
from pytest_dotasks.cassette.tape import RECORD, REPLAY, Tape

HEADER = Header("SPEC.md", "1", "Make the greeting", "claude-code")
SECRET = "tok-0123456789abcdef"


def request(root: Path, task: str, system_blocks: list[str], prompt: str) -> bytes:
    return json.dumps({
        "model": "claude-haiku-4-5", "max_tokens": 100,
        "system": [{"type": "text", "text": t} for t in system_blocks],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": f"<system-reminder>\n - Primary working directory: {root}\n - Platform: linux\n"
                                     "</system-reminder>"},
            {"type": "text", "text": prompt}]}],
    }).encode()


def scrub(text: str) -> str:
    return text.replace(SECRET, "***")


def claude_folder(path: Path) -> str:
    """Claude Code's name for a project folder under ~/.claude/projects (every non-alphanumeric a dash)."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(path))


def test_a_replay_compares_what_the_recording_kept(tmp_path: Path) -> None:
    laptop, ci = tmp_path / "Users" / "me" / "proj", tmp_path / "runner" / "work" / "proj"
    rec = Tape(RECORD, tmp_path / "c.jsonl", HEADER, root=laptop, task_id="task_1_0badc0de", scrub=scrub,
               homes=[str(tmp_path / "Users" / "me")])
    kept = rec.started(1, "POST", "/v1/messages", "beta=true", request(
        laptop, "task_1_0badc0de",
        ["You are Claude Code.", "x-anthropic-billing-header: cc_version=2.1.332.fb8; cc_entrypoint=sdk-py;",
         f"memory: {tmp_path}/Users/me/.claude/projects/{claude_folder(laptop)}/memory/ token {SECRET}"],
        "Execute STEP 1 (task id: task_1_0badc0de)"))
    assert kept.request["prompt"] == "Execute STEP 1 (task id: <dotasks:task_id>)"  # no machine reminder
    assert kept.request["system"] == ("You are Claude Code.\n\nx-anthropic-billing-header: <dotasks:volatile>\n\n"
                                      "memory: <dotasks:home>/.claude/projects/<dotasks:root>/memory/ token ***")
    kept.status, kept.headers, kept.body = 200, {"content-type": "application/json"}, {"content": []}

    play = Tape(REPLAY, tmp_path / "c.jsonl", HEADER, root=ci, task_id="task_1_feedbeef", scrub=scrub,
                cassette=Cassette(HEADER, [kept]), homes=[str(tmp_path / "runner")])
    reply = play.answer("POST", "/v1/messages", request(
        ci, "task_1_feedbeef",
        ["You are Claude Code.", "x-anthropic-billing-header: cc_version=2.1.332.a07; cc_entrypoint=sdk-py;",
         f"memory: {tmp_path}/runner/.claude/projects/{claude_folder(ci)}/memory/ token {SECRET}"],
        "Execute STEP 1 (task id: task_1_feedbeef)"))
    assert play.mismatches == [] and reply.status == 200
