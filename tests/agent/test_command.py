"""The command backend: any CLI agent, run with the whole prompt."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from pytest_dotasks.agent.command import CommandSession, render_command
from pytest_dotasks.agent.launch import open_session
from pytest_dotasks.errors import BodyFailed
from tests.agent.helpers import agent_project, events
from tests.stubs.steps import make_ctx


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return agent_project(tmp_path)


@pytest.fixture
def cli_agent(tmp_path: Path) -> Path:
    """A tiny CLI agent: writes its prompt to a file, obeys a line in it, prints a result."""
    script = tmp_path / "fake-agent"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, pathlib\n"
        "prompt = sys.argv[1]\n"
        "pathlib.Path('seen-prompt.txt').write_text(prompt)\n"
        "if 'post-validation failed' in prompt:\n"
        "    print('fixed it'); print('STEP RESULT: SUCCESS'); sys.exit(0)\n"
        "mode = pathlib.Path('mode.txt').read_text().strip() if pathlib.Path('mode.txt').exists() else 'ok'\n"
        "if mode == 'crash':\n"
        "    print('Traceback: boom', file=sys.stderr); sys.exit(2)\n"
        "if mode == 'declare-failure':\n"
        "    print('STEP RESULT: FAILURE: no GPU'); sys.exit(0)\n"
        "pathlib.Path('hello.py').write_text('print(1)\\n')\n"
        "print('wrote hello.py')\n"
        "print('STEP RESULT: SUCCESS')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_command_backend_runs_a_cli_agent(root: Path, cli_agent: Path) -> None:
    ctx = make_ctx(root, [("outputs", "hello.py")], cli={"agent_backend": "command",
                                                          "agent_command": f"{cli_agent} {{prompt}}"})
    session = open_session(ctx)
    assert isinstance(session, CommandSession)
    result = session.run()
    assert result.ok and result.summary == "agent command exited 0 and declared SUCCESS"
    assert (root / "hello.py").exists() and "wrote hello.py" in result.output
    seen = (root / "seen-prompt.txt").read_text()
    assert "You are the executor." in seen and "Execute STEP 1 of SPEC.md" in seen and "- hello.py" in seen
    # a retry runs it again with the failure in the prompt
    result = session.run("The work finished but post-validation failed: x")
    assert result.ok and "post-validation failed" in (root / "seen-prompt.txt").read_text()
    assert [e["attempt"] for e in events(root, "agent_end")] == [1, 2]


@pytest.mark.parametrize("mode, summary", [
    ("crash", "agent command exited 2: Traceback: boom"),
    ("declare-failure", "agent command declared FAILURE: no GPU"),
])
def test_command_backend_failures(root: Path, cli_agent: Path, mode: str, summary: str) -> None:
    (root / "mode.txt").write_text(mode)
    ctx = make_ctx(root, cli={"agent_backend": "command", "agent_command": f"{cli_agent} {{prompt}}"})
    result = open_session(ctx).run()
    assert not result.ok and result.summary == summary


def test_command_backend_needs_a_command(root: Path) -> None:
    with pytest.raises(BodyFailed, match="needs --agent-command"):
        open_session(make_ctx(root, cli={"agent_backend": "command"})).run()


def test_render_command_quotes_the_prompt() -> None:
    assert render_command("agent -p {prompt}", "it's $HOME; rm -rf /", "/p.md") == \
        "agent -p 'it'\"'\"'s $HOME; rm -rf /'"
    assert render_command("agent --file {prompt_file}", "x", "/tmp/a b.md") == "agent --file '/tmp/a b.md'"
    assert render_command("agent", "do it", "/p.md") == "agent 'do it'"


def test_what_a_cli_agent_does_to_protected_files_is_put_back(root: Path, tmp_path: Path) -> None:
    plan_before = (root / "SPEC.md").read_text()
    script = tmp_path / "cheating-agent"
    script.write_text("#!/bin/sh\n"
                      "echo '- [x] **STEP 9**: done' >> SPEC.md\n"
                      "echo 'collect_ignore = [\"tests\"]' > conftest.py\n"
                      "echo '{\"exit_code\": 0}' > .dotasks/forged.json\n"
                      "echo work > hello.py\n"
                      "echo 'STEP RESULT: SUCCESS'\n")
    script.chmod(0o755)
    ctx = make_ctx(root, cli={"agent_backend": "command", "agent_command": f"{script} {{prompt}}"})
    result = open_session(ctx).run()
    assert result.ok and result.summary == ("agent command exited 0 and declared SUCCESS "
                                            "(it changed 2 protected path(s); put back)")
    assert (root / "SPEC.md").read_text() == plan_before and not (root / "conftest.py").exists()
    assert (root / "hello.py").read_text() == "work\n"  # the work itself stays
    assert "SPEC.md: changed, restored" in result.output and "conftest.py: created, restored" in result.output
    [guard] = events(root, "agent_guard")
    assert sorted(Path(c["path"]).name for c in guard["changes"]) == ["SPEC.md", "conftest.py"]


def test_a_cli_agent_keeps_its_credentials(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-for-the-cli-000000")
    ctx = make_ctx(root, cli={"agent_backend": "command",
                              "agent_command": "sh -c 'test -n \"$ANTHROPIC_API_KEY\" && echo STEP RESULT: SUCCESS' "
                                               "{prompt_file}"})
    assert open_session(ctx).run().ok
