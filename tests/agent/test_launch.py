"""Opening a session on the chosen backend, and what --dry-run shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_dotasks.agent.launch import open_session, render_prompt
from pytest_dotasks.errors import BodyFailed
from tests.agent.helpers import agent_project
from tests.paths import REPO
from tests.stubs.steps import make_ctx, write_agent


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return agent_project(tmp_path)


def test_a_broken_agent_file_fails_the_body_naming_it(root: Path) -> None:
    bad = root / ".claude" / "agents" / "AGENT.md"
    bad.write_text("---\nname: tinker-executor\n")
    with pytest.raises(BodyFailed, match="never closed") as info:
        open_session(make_ctx(root))
    assert str(bad) in str(info.value)


def test_render_prompt_shows_choices_and_prompts_without_importing_the_sdk(root: Path) -> None:
    write_agent(root, "AGENT.md", "Main body.", name="tinker-executor", tools="Read, Bash")
    code = (
        f"import sys; from pathlib import Path; sys.path.insert(0, {str(REPO)!r})\n"
        "from tests.stubs.steps import make_ctx\n"
        "from pytest_dotasks.agent.launch import render_prompt\n"
        f"text = render_prompt(make_ctx(Path({str(root)!r}), [('outputs', 'hello.py')]))\n"
        "assert 'anthropic' not in sys.modules, 'anthropic was imported'\n"
        "print(text)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "[agent] tinker-executor (.claude/agents/AGENT.md), model claude-sonnet-5-5, backend anthropic" in out.stdout
    assert "[tools] Bash, Read" in out.stdout
    assert "Main body." in out.stdout and "Execute STEP 1 of SPEC.md: Make the greeting" in out.stdout
    assert render_prompt(make_ctx(root, [("outputs", "hello.py")])) == out.stdout.rstrip("\n")
