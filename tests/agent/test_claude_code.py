"""The claude-code backend end to end: the real Claude Agent SDK, the real ``claude`` CLI it
bundles, and the local Messages stub on 127.0.0.1 (no mocks).

Facts these tests rest on (claude-agent-sdk 0.2.189, bundled CLI 2.1.332):

- the CLI posts to ``/v1/messages?beta=true`` with ``x-api-key``, always
  streams, and under the ``per-turn-control-2026-07-01`` beta (asked for with
  some models) puts ``role: "system"`` turns inside ``messages``;
- a run that ends in an error result (``error_max_turns``...) yields the
  ``ResultMessage``, then the SDK raises ``ResultError`` carrying it;
- without credentials the CLI answers itself "Not logged in · Please run
  /login" and sends nothing;
- a rejected key is retried 10 times with backoff (about 185 s in all), each
  retry announced as a ``system``/``api_retry`` message with
  ``error: authentication_failed``;
- it refuses ``bypassPermissions`` as root;
- without ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` it reaches for
  api.anthropic.com itself (seen through the recording proxy below), whatever
  ``ANTHROPIC_BASE_URL`` says.

Every test runs the CLI with its own empty HOME (no login, no user settings)
and with HTTP(S)_PROXY pointing at a local proxy that records and refuses
every connection, so nothing leaves the machine and any attempt shows.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent import helpers
from tests.agent.helpers import AGENT, SUCCESS, greeting, write_executor
from tests.stubs.anthropic_stub import API_KEY, PER_TURN_CONTROL, AnthropicStub, text, tool_use, validate

pytest_plugins = ["pytester"]

DONE = text(SUCCESS)
CREDENTIALS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


# ------------------------------------------------------------ the bundled CLI

def _bundled_cli() -> Path:
    import claude_agent_sdk  # the test extra installs it: its absence is a failure, not a skip

    return Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


@pytest.fixture(scope="session")
def claude_cli() -> Path:
    """The CLI inside the installed wheel; skips only where that binary cannot run here."""
    cli = _bundled_cli()
    if not cli.exists():
        pytest.skip(f"this claude-agent-sdk wheel bundles no CLI ({cli} missing: a platform without one)")
    try:
        res = subprocess.run([str(cli), "--version"], check=False, capture_output=True, text=True, timeout=120,
                             env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")})
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"the bundled claude CLI cannot run on this machine: {exc}")
    if res.returncode != 0 or "Claude Code" not in res.stdout:
        pytest.skip(f"the bundled claude CLI cannot run on this machine (exit {res.returncode}): "
                    f"{(res.stderr or res.stdout).strip()[:200]}")
    return cli


# ------------------------------------------------------------ a proxy that lets nothing out

class RefusingProxy:
    """An HTTP(S) proxy on 127.0.0.1 that records each request line and refuses it (403)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(50)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(5)
                    head = conn.recv(4096).decode("latin-1")
                    self.requests.append(head.split("\r\n", 1)[0])
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def cc(claude_cli: Path, anthropic_stub: AnthropicStub, pytester: pytest.Pytester,
       monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CC]:
    """A project for the claude-code backend: the stub as the API, an empty HOME, a refusing proxy."""
    for name in list(os.environ):
        if name.startswith(("CLAUDE_CODE_", "CLAUDE_AGENT_SDK_")) or name in (
                "CLAUDECODE", "CLAUDE_CONFIG_DIR", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_MODEL",
                "ANTHROPIC_DEFAULT_HAIKU_MODEL", "ANTHROPIC_SMALL_FAST_MODEL", "CLAUDE_CODE_OAUTH_TOKEN"):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    proxy = RefusingProxy()
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    write_executor(pytester.path)
    try:
        yield CC(pytester, anthropic_stub, proxy, home)
    finally:
        proxy.close()


class CC:
    def __init__(self, pytester: pytest.Pytester, stub: AnthropicStub, proxy: RefusingProxy, home: Path) -> None:
        self.pytester, self.stub, self.proxy, self.home = pytester, stub, proxy, home
        self.root = pytester.path

    def run(self, plan: str, *args: str) -> pytest.RunResult:
        (self.root / "SPEC.md").write_text(plan)
        return self.pytester.runpytest("--spec", "SPEC.md", "--agent-backend", "claude-code", "--junitxml=out.xml",
                                       "-p", "no:cacheprovider", *args)

    def events(self, kind: str) -> list[dict[str, object]]:
        return helpers.events(self.root, kind)

    def properties(self) -> dict[str, str]:
        return helpers.properties(self.root / "out.xml")

    def results(self, index: int) -> list[dict[str, object]]:
        """The tool_result blocks the CLI sent back in message request ``index``."""
        return helpers.results(self.stub.message_requests[index])


def result_text(block: dict[str, object]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content)


def step(extra: str = "") -> str:
    return greeting("Write hello.py that prints hi.", extra=extra)


# ------------------------------------------------------------ the stub and the CLI's requests

def test_stub_accepts_system_turns_only_under_the_per_turn_control_beta() -> None:
    body = {"model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "system", "content": [text("# Environment")]},
                         {"role": "assistant", "content": [text("hello")]},
                         {"role": "user", "content": "go on"},
                         {"role": "system", "content": [text("reminder")]}]}
    assert validate(body, {PER_TURN_CONTROL}) == []
    problems = validate(body)
    assert sum("role 'system' needs the per-turn-control" in p for p in problems) == 2
    body["messages"].append({"role": "system", "content": [text("")]})
    assert any("non-empty text blocks only" in p for p in validate(body, {PER_TURN_CONTROL}))


def test_a_step_passes_through_the_real_cli(cc: CC) -> None:
    cc.stub.reply(tool_use("Bash", {"command": "printf 'print(\"hi\")\\n' > hello.py && python3 hello.py",
                                    "description": "write and try it"}),
                  usage={"input_tokens": 900, "cache_creation_input_tokens": 2000})
    cc.stub.reply(DONE, usage={"input_tokens": 40, "output_tokens": 20, "cache_read_input_tokens": 2000})
    res = cc.run(step())
    res.assert_outcomes(passed=1)
    assert cc.stub.violations == []
    reqs = cc.stub.message_requests
    assert len(reqs) == 2 and all(r.path == "/v1/messages?beta=true" for r in reqs)
    assert reqs[0].headers["x-api-key"] == API_KEY and reqs[0].body["stream"] is True
    assert reqs[0].body["model"] == "claude-haiku-5-5"  # the agent's alias, resolved by us
    assert "You are the executor." in json.dumps(reqs[0].body["system"])
    assert "Execute STEP 1" in json.dumps(reqs[0].messages)
    names = {t["name"] for t in reqs[0].body["tools"]} - {"DeferredToolPlaceholder"}  # the CLI's own
    assert names == {"Bash", "Edit", "Read", "Write"}
    assert "hi" in result_text(cc.results(1)[0])
    assert "✓ [task_id: task_1_" in (cc.root / "SPEC.md").read_text()
    props = cc.properties()
    assert props["agent"] == "tinker-executor" and props["model"] == "claude-haiku-5-5"
    assert int(props["input_tokens"]) == 940 and float(props["cost_usd"]) > 0
    transcript = cc.root / ".dotasks" / "transcripts" / f"{props['task_id']}.jsonl"
    kinds = [json.loads(x)["type"] for x in transcript.read_text().splitlines()]
    assert "request" in kinds and "message" in kinds and kinds[-1] == "end"
    assert [e["tool"] for e in cc.events("agent_tool")] == ["Bash"]
    assert cc.events("agent_end")[-1]["ok"] is True
    log = (cc.root / ".task_execution.log").read_text()
    for blob in (log, transcript.read_text(), (cc.root / "out.xml").read_text(), res.stdout.str()):
        assert API_KEY not in blob


# ------------------------------------------------------------ (a) error results

def test_running_out_of_turns_is_a_failed_attempt_that_retries_and_keeps_its_tokens(cc: CC) -> None:
    # Attempt 1 writes the script, then the single turn is spent: an error result (ResultError).
    cc.stub.reply(tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"}),
                  usage={"input_tokens": 500, "output_tokens": 30})
    # Attempt 2 resumes the same session with the failure and declares success.
    cc.stub.reply(DONE, usage={"input_tokens": 70, "output_tokens": 10})
    res = cc.run(step(extra="  - retries: 1\n"), "--agent-max-turns", "1")
    res.assert_outcomes(passed=1)
    assert cc.stub.violations == []
    retry = cc.events("retry")
    assert len(retry) == 1 and "ran out of turns (1 per attempt)" in json.dumps(retry[0]), retry
    feedback = json.dumps(cc.stub.message_requests[1].messages)
    assert "ran out of turns" in feedback  # the failure went back into the resumed conversation
    ends = cc.events("agent_end")
    assert [e["ok"] for e in ends] == [False, True]
    props = cc.properties()
    assert int(props["input_tokens"]) == 570 and int(props["output_tokens"]) == 40  # attempt 1 counted
    assert float(props["cost_usd"]) > float(ends[1]["cost_usd"]) - float(ends[0]["cost_usd"])  # type: ignore[arg-type]


# ------------------------------------------------------------ (b) no key, (c) a rejected key

def test_no_credentials_at_all_stop_the_run_before_any_step(cc: CC, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    res = cc.run(step())
    assert res.ret == 4  # a usage error: nothing run or marked (readiness.py, checked before any step)
    err = res.stderr.str() + res.stdout.str()
    assert "ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, CLAUDE_CODE_OAUTH_TOKEN or Claude Code login" in err, err
    assert cc.stub.requests == [] and "✓" not in (cc.root / "SPEC.md").read_text()


def test_a_login_claude_code_cannot_use_says_what_is_missing(cc: CC, monkeypatch: pytest.MonkeyPatch) -> None:
    # A login file the CLI finds no login in: the run starts, and Claude Code answers
    # "Not logged in · Please run /login" without calling the API.
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    (cc.home / ".claude").mkdir()
    (cc.home / ".claude" / ".credentials.json").write_text("{}")
    res = cc.run(step())
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert re.search(r"STEP 1: Claude Code has no credentials: ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, "
                     r"CLAUDE_CODE_OAUTH_TOKEN are not set, and the Claude Code login in "
                     r"~/.claude/.credentials.json was not accepted .*\[task_1_", out), out
    assert "/login" in out and "Not logged in" not in out.split("STEP 1: Claude Code has")[0]
    assert "Traceback" not in out
    assert cc.stub.message_requests == []
    assert cc.events("agent_error")


@pytest.mark.timeout(90)  # a hang guard: the CLI alone would keep retrying for about 185 s
def test_a_rejected_key_fails_at_the_first_authentication_error(cc: CC, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-key-000000000000")
    for _ in range(12):  # the CLI would retry 10 times over about 185 s
        cc.stub.fail(401, "invalid x-api-key", retry_after_ms=None)
    res = cc.run(step())
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert re.search(r"STEP 1: the Anthropic API rejected the key \(401.*\[task_1_", out), out
    assert "check ANTHROPIC_API_KEY" in out
    assert "Traceback" not in out and "sk-ant-wrong-key" not in out
    assert len(cc.stub.message_requests) == 1
    time.sleep(2)  # the CLI's first retry comes about 0.6 s after the error: it must be gone by now
    assert len(cc.stub.message_requests) == 1


# ------------------------------------------------------------ (d) protected paths and the Bash environment

def test_protected_paths_are_refused_to_claude_code(cc: CC) -> None:
    cc.pytester.makeconftest("")
    (cc.root / "pytest.ini").write_text("[pytest]\n")
    outside = cc.root.parent / "outside.txt"
    calls = [
        tool_use("Write", {"file_path": "SPEC.md", "content": "- [ ] **STEP 2**: evil\n  run: true\n"}),
        tool_use("Edit", {"file_path": str(cc.root / "SPEC.md"), "old_string": "Make the greeting",
                          "new_string": "Evil"}),
        tool_use("Write", {"file_path": ".dotasks/evil.txt", "content": "evil\n"}),
        tool_use("Write", {"file_path": ".task_execution.log", "content": "{}\n"}),
        tool_use("Write", {"file_path": "conftest.py", "content": "raise SystemExit\n"}),
        tool_use("Write", {"file_path": "pytest.ini", "content": "[pytest]\naddopts = -x\n"}),
        tool_use("Edit", {"file_path": ".claude/agents/AGENT.md", "old_string": "Executes", "new_string": "Evil"}),
        tool_use("Write", {"file_path": str(outside), "content": "out\n"}),
        tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"}),
    ]
    cc.stub.reply(*calls)
    # Bash cannot be refused by path: what it changes in the protected set is put back after it.
    cc.stub.reply(tool_use("Bash", {"command": "printf -- '- [ ] **STEP 2**: evil\\n  - run: true\\n' >> SPEC.md",
                                    "description": "append a step"}))
    cc.stub.reply(tool_use("Bash", {"command": "echo 'raise SystemExit' >> conftest.py; exit 3",
                                    "description": "change conftest.py, then fail"}))
    cc.stub.reply(DONE)
    res = cc.run(step())
    res.assert_outcomes(passed=1)
    assert cc.stub.violations == []
    results = cc.results(1)
    assert len(results) == len(calls)
    for block in results[:-1]:
        assert block.get("is_error") is True and "refused" in result_text(block), block
    assert results[-1].get("is_error") is not True
    for later in (2, 3):  # the model is told what was put back
        told = json.dumps(cc.stub.message_requests[later].messages[-2:])
        assert "were put back" in told, told
    assert [e["paths"] for e in cc.events("agent_reverted")] == [[str(cc.root / "SPEC.md")],
                                                                  [str(cc.root / "conftest.py")]]
    spec = (cc.root / "SPEC.md").read_text()
    assert "evil" not in spec.lower() and "Make the greeting" in spec and "✓" in spec
    assert not (cc.root / ".dotasks" / "evil.txt").exists() and not outside.exists()
    assert (cc.root / "conftest.py").read_text() == "" and "addopts" not in (cc.root / "pytest.ini").read_text()
    assert "Evil" not in (cc.root / ".claude" / "agents" / "AGENT.md").read_text()
    assert (cc.root / "hello.py").read_text() == "print('hi')\n"


@pytest.mark.parametrize("named", ["STEP_TOKEN", "STEP_TOKEN, ANTHROPIC_API_KEY"])
def test_claude_codes_bash_gets_no_agent_credentials_unless_the_step_names_them(
        cc: CC, monkeypatch: pytest.MonkeyPatch, named: str) -> None:
    monkeypatch.setenv("STEP_TOKEN", "tok-123")
    probe = ('echo "key=[${ANTHROPIC_API_KEY:+set}] token=[${STEP_TOKEN:-unset}]"; '
             'printf "print(\'hi\')\\n" > hello.py')
    cc.stub.reply(tool_use("Bash", {"command": probe, "description": "probe"}))
    cc.stub.reply(DONE)
    res = cc.run(step(extra=f"  - env: {named}\n"))
    res.assert_outcomes(passed=1)
    out = result_text(cc.results(1)[0])
    assert ("key=[set]" if "ANTHROPIC_API_KEY" in named else "key=[]") in out, out
    assert "token=[tok-123]" in out, out
    assert cc.stub.violations == []


# ------------------------------------------------------------ (e) no traffic beyond the API

def test_claude_code_sends_nothing_but_the_agents_requests(cc: CC) -> None:
    cc.stub.reply(tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"}))
    cc.stub.reply(DONE)
    res = cc.run(step())
    res.assert_outcomes(passed=1)
    assert cc.proxy.requests == []  # no update checks, telemetry or feature flags (api.anthropic.com)
    # and no side requests to the stub (a session title on the same model) eating the script
    assert len(cc.stub.message_requests) == 2 and all(r.body.get("tools") for r in cc.stub.message_requests)
    assert cc.stub.violations == []


# ------------------------------------------------------------ (f) permissions

def test_permissions_work_as_root_and_deny_what_the_agent_was_not_granted(cc: CC) -> None:
    agent = cc.root / ".claude" / "agents" / "AGENT.md"
    agent.write_text(AGENT.replace("tools: Bash, Read, Write, Edit", "tools: Read, Write, Bash(python3:*)"))
    cc.stub.reply(tool_use("Bash", {"command": "rm -f SPEC.md.bak && echo removed", "description": "not granted"}),
                  tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"}),
                  tool_use("Bash", {"command": "python3 hello.py", "description": "granted"}))
    cc.stub.reply(DONE)
    res = cc.run(step())
    res.assert_outcomes(passed=1)
    denied, wrote, ran = cc.results(1)
    assert denied.get("is_error") is True and "removed" not in result_text(denied)
    assert wrote.get("is_error") is not True and ran.get("is_error") is not True and "hi" in result_text(ran)
    transcript = next((cc.root / ".dotasks" / "transcripts").glob("*.jsonl")).read_text()
    init = next(json.loads(x) for x in transcript.splitlines() if '"subtype": "init"' in x)
    assert init["data"]["data"]["permissionMode"] == "dontAsk"
    assert cc.stub.violations == []


# ------------------------------------------------------------ (g) spending limits

def test_max_cost_stops_claude_code_between_turns(cc: CC) -> None:
    # Claude Code reports each reply's input tokens as it streams (its output tokens only at the end):
    # claude-haiku-5-5 at our table's $1 per million input tokens makes each reply cost $0.005.
    for n in range(4):
        cc.stub.reply(tool_use("Bash", {"command": f"echo {n}", "description": f"call {n}"}),
                      usage={"input_tokens": 5000})
    cc.stub.reply(tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"}))
    cc.stub.reply(DONE)
    res = cc.run(step(extra="  - retries: 1\n"), "--max-cost", "0.012")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "stopped before its next request to the model" in out and "--max-cost $0.012" in out, out
    assert "Traceback" not in out
    assert len(cc.stub.message_requests) == 3  # the third reply reached the limit; no retry either
    assert not (cc.root / "hello.py").exists()
    assert float(cc.properties()["cost_usd"]) >= 0.012
    assert "✗" in (cc.root / "SPEC.md").read_text()


def test_claude_codes_own_budget_stop_is_the_same_failure(cc: CC) -> None:
    # Output tokens reach us only with the result: here the CLI's own --max-budget-usd stops it.
    for n in range(5):
        cc.stub.reply(tool_use("Bash", {"command": f"echo {n}", "description": f"call {n}"}),
                      usage={"output_tokens": 20000})
    cc.stub.reply(DONE)
    res = cc.run(step(), "--max-cost", "0.015")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "stopped before its next request to the model" in out and "--max-cost $0.015" in out, out
    assert len(cc.stub.message_requests) == 2  # the CLI's estimate ($0.01 a reply here) reached the budget
    assert float(cc.properties()["cost_usd"]) >= 0.015  # Claude Code's own cost figure
    events = cc.events("agent_error")
    assert events and "error_max_budget_usd" not in out
