"""Secrets never reach the task log, the JUnit XML or the terminal (DESIGN.md section 3).

A secret is the value of a variable a step names in ``env:``, or of any
API-key-like variable (``*_API_KEY``, ``*_TOKEN``, ...). Steps here echo them
on purpose: from the body, from a failing body, from a failing pre-flight
check and from a failing post-validation.

Every leak these tests found (JSON-escaped secrets in the log, SECRET_KEY and
PRIVATE_KEY names, failure reports, captured and live output, JUnit, the
attached output file) is fixed; the tests keep it so. (Agent transcripts and
the agent's file tools are tested elsewhere.)
"""

from __future__ import annotations

import contextlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

import pytest

from pytest_dotasks.run.tasklog import secret_values

pytest_plugins = ["pytester"]

with contextlib.suppress(ImportError):  # see tests/test_checks_plugin.py: keep hypothesis imported once
    import hypothesis.internal.observability  # noqa: F401

SECRETS = {
    "SECRET_TOKEN": "s3cr3t-value-123",
    "ANTHROPIC_API_KEY": "sk-ant-test-XXXX-0123456789",
    # Not key-like by name: a secret because the step names it in env:.
    "DB_URL": "postgres://app:hunter2-pw@db.internal/prod",
}
ECHO = 'printf "token=%s key=%s db=%s\\n" "$SECRET_TOKEN" "$ANTHROPIC_API_KEY" "$DB_URL"'

PLAN = f"""\
# Plan that handles secrets

- [ ] **STEP 1**: Echo the secrets and pass
  - env: SECRET_TOKEN, DB_URL
  - run: {ECHO}
- [ ] **STEP 2**: Echo the secrets and fail
  - needs: none
  - env: DB_URL
  - run: {ECHO}; exit 3
- [ ] **STEP 3**: A pre-flight check prints the secrets and fails
  - needs: none
  - env: DB_URL
  - check: {ECHO}; false
  - run: true
- [ ] **STEP 4**: A validation prints the secrets and fails
  - needs: none
  - env: DB_URL
  - run: true
  - validate: {ECHO}; exit 1
"""


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    return SECRETS


def leaks(text: str, values: Iterable[str] | None = None) -> list[str]:
    return [v for v in (SECRETS.values() if values is None else values) if v in text]


def run_plan(pytester: pytest.Pytester, *args: str, plan: str = PLAN) -> pytest.RunResult:
    pytester.makefile(".md", SPEC=plan)
    return pytester.runpytest("--spec", "SPEC.md", *args)


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


def log_text(root: Path) -> str:
    """The task log as written, then every string in it as a reader gets it back (JSON escapes undone)."""
    raw = (root / ".task_execution.log").read_text(encoding="utf-8")
    values = [s for line in raw.splitlines() if line.strip() for s in _strings(json.loads(line))]
    return raw + "\n" + "\n".join(values)


# --------------------------------------------------------------------------- task log


def test_task_log_never_holds_a_secret(pytester: pytest.Pytester, secrets_env: dict[str, str]) -> None:
    res = run_plan(pytester, "-v")
    res.assert_outcomes(passed=1, failed=2, errors=1)
    text = log_text(pytester.path)
    assert not leaks(text), leaks(text)
    assert "***" in text  # redacted, not silently dropped
    # The steps really printed them: the log's output tail and check details carry the redaction.
    entries = [json.loads(x) for x in (pytester.path / ".task_execution.log").read_text().splitlines() if x.strip()]
    assert any("token=*** key=*** db=***" in str(e.get("output_tail", "")) for e in entries)
    assert any(e.get("event") == "check" and "token=***" in str(e.get("detail", "")) for e in entries)


def test_task_log_redacts_a_secret_with_quotes_and_backslashes(pytester: pytest.Pytester,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    value = 'pa"ss\\word-123'
    monkeypatch.setenv("DB_PASSWORD", value)
    res = run_plan(pytester, plan="""\
- [ ] **STEP 1**: A check prints a password
  - check: printf 'pw=%s\\n' "$DB_PASSWORD"; false
  - run: true
- [ ] **STEP 2**: A validation prints a password
  - needs: none
  - run: true
  - validate: printf 'pw=%s\\n' "$DB_PASSWORD"; false
""")
    res.assert_outcomes(failed=1, errors=1)
    text = log_text(pytester.path)
    assert not leaks(text, [value]), "the password is in the task log"


@pytest.mark.parametrize("name", [
    "ANTHROPIC_API_KEY", "TINKER_API_KEY", "OPENAI_API_KEY", "HF_TOKEN", "GITHUB_TOKEN", "SECRET_TOKEN",
    "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "CLIENT_SECRET",
    "SECRET_KEY",
    "PRIVATE_KEY",
])
def test_api_key_like_names_are_secrets(name: str) -> None:
    assert secret_values(environ={name: "value-of-the-secret-42", "HOME": "/home/someone-long"}) == \
        ["value-of-the-secret-42"]


# --------------------------------------------------------------------------- terminal


def test_failure_reports_never_show_a_secret(pytester: pytest.Pytester, secrets_env: dict[str, str]) -> None:
    # --show-capture=no: the reports alone; the captured-output sections are the next test's.
    res = run_plan(pytester, "--steps", "2-4", "--show-capture=no")
    out = res.stdout.str() + res.stderr.str()
    res.assert_outcomes(failed=2, errors=1)
    assert "Captured stdout" not in out
    assert not leaks(out), leaks(out)


def test_live_and_captured_output_never_show_a_secret(pytester: pytest.Pytester,
                                                      secrets_env: dict[str, str]) -> None:
    res = run_plan(pytester, "--steps", "1", "-v", "-rA")
    res.assert_outcomes(passed=1)
    out = res.stdout.str() + res.stderr.str()
    assert "token=" in out  # the output is shown...
    assert not leaks(out), leaks(out)  # ...with the secrets redacted


def test_command_line_and_summary_do_not_expand_secrets(pytester: pytest.Pytester,
                                                        secrets_env: dict[str, str]) -> None:
    """What the plugin itself writes (the command as written, check names, the summary) holds no value."""
    res = run_plan(pytester, "-v")
    out = res.stdout.str()
    live = [ln for ln in out.splitlines()
            if ln.startswith(("[MAIN]", "[PRE-FLIGHT]", "[POST]", "[TASK ID", "  ✓", "  ✗", "  log:", "SPEC.md:"))
            or "dotasks summary" in ln]
    assert live
    assert not leaks("\n".join(live)), leaks("\n".join(live))


# --------------------------------------------------------------------------- JUnit XML


def junit_text(path: Path) -> str:
    root = ET.parse(path).getroot()
    parts = []
    for el in root.iter():
        parts.append(el.text or "")
        parts.extend(str(v) for v in el.attrib.values())
    return "\n".join(parts)


def test_junit_failures_never_hold_a_secret(pytester: pytest.Pytester, secrets_env: dict[str, str]) -> None:
    res = run_plan(pytester, "--junitxml=out.xml")
    res.assert_outcomes(passed=1, failed=2, errors=1)
    text = junit_text(pytester.path / "out.xml")
    assert "task_id" in text
    assert not leaks(text), leaks(text)


def test_junit_properties_never_hold_a_secret(pytester: pytest.Pytester, secrets_env: dict[str, str]) -> None:
    run_plan(pytester, "--junitxml=out.xml")
    root = ET.parse(pytester.path / "out.xml").getroot()
    props = "\n".join(f"{p.get('name')}={p.get('value')}" for p in root.iter("property"))
    assert "task_id=" in props
    assert not leaks(props), leaks(props)


def test_junit_system_out_never_holds_a_secret(pytester: pytest.Pytester, secrets_env: dict[str, str]) -> None:
    res = run_plan(pytester, "--steps", "1", "--junitxml=out.xml", "-o", "junit_logging=all")
    res.assert_outcomes(passed=1)
    text = junit_text(pytester.path / "out.xml")
    assert "token=" in text
    assert not leaks(text), leaks(text)


def test_attached_output_file_never_holds_a_secret(pytester: pytest.Pytester, secrets_env: dict[str, str]) -> None:
    res = run_plan(pytester, "--steps", "1", "-rA")
    res.assert_outcomes(passed=1)
    attached = [ln.split("|", 1)[1].rstrip("]") for ln in res.stdout.lines if ln.startswith("[[ATTACHMENT|")]
    outputs = [Path(p) for p in attached if "/output/" in p]
    assert outputs, res.stdout.str()
    text = "\n".join(p.read_text() for p in outputs)
    assert "token=" in text
    assert not leaks(text), leaks(text)


# --------------------------------------------------------------------------- encoded forms


def encoded_forms(value: str) -> list[str]:
    """What a leak looks like once encoded: base64 (standard, URL-safe, as ``base64`` wraps it), URL-encoded."""
    import base64
    import urllib.parse

    raw = value.encode()
    forms = [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="),
             base64.b64encode(b"KEY=" + raw).decode()[8:-4]]
    quoted = urllib.parse.quote(value, safe="")
    return forms + ([quoted] if quoted != value else [])


@pytest.mark.parametrize("prefix", ["", "k", "k=", "ANTHROPIC_API_KEY="])
def test_base64_and_url_encoded_secrets_are_redacted(prefix: str) -> None:
    import base64
    import json as _json
    import subprocess
    import urllib.parse

    from pytest_dotasks.run.tasklog import redact

    for value in SECRETS.values():
        wrapped = subprocess.run(["base64"], input=(prefix + value + "\n").encode(), capture_output=True,
                                 check=True).stdout.decode()  # wrapped at 76 columns
        texts = [base64.b64encode((prefix + value).encode()).decode(),
                 base64.urlsafe_b64encode((prefix + value).encode()).decode(), wrapped, _json.dumps(wrapped),
                 urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)]
        for text in texts:
            out = redact(text, [value])
            assert "***" in out and not leaks(out.replace("\\n", "").replace("\n", ""), encoded_forms(value)), text
    assert redact("nothing to see", list(SECRETS.values())) == "nothing to see"


def test_an_agents_encoded_leak_stays_out_of_every_record(pytester: pytest.Pytester, secrets_env: dict[str, str],
                                                         anthropic_stub) -> None:
    from tests.stubs.anthropic_stub import API_KEY, text, tool_use

    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Encode the secrets
  - env: ANTHROPIC_API_KEY, DB_URL
""")
    leak = tool_use("Bash", {"command": (
        "printf %s \"$ANTHROPIC_API_KEY\" | base64; printf 'x=%s' \"$ANTHROPIC_API_KEY\" | base64 -w0; echo; "
        "python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ[\"DB_URL\"], safe=\"\"))'")})
    anthropic_stub.reply(leak).reply(text("Encoded them.\nSTEP RESULT: SUCCESS"))
    res = pytester.runpytest("--spec", "SPEC.md", "--junitxml=out.xml", "-rA")
    res.assert_outcomes(passed=1)
    forms = [f for v in (API_KEY, SECRETS["DB_URL"]) for f in (v, *encoded_forms(v))]
    seen_by_model = json.dumps(anthropic_stub.message_requests[1].messages[-1])
    transcripts = "".join(p.read_text() for p in (pytester.path / ".dotasks" / "transcripts").iterdir())
    for blob in (seen_by_model, transcripts, log_text(pytester.path), junit_text(pytester.path / "out.xml"),
                 res.stdout.str()):
        assert not leaks(blob.replace("\\n", "").replace("\n", ""), forms), leaks(blob, forms)
    assert "***" in transcripts
