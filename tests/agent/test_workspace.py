"""The workspace: the tools' behaviour, root confinement, timeouts and grants."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pytest_dotasks.agent.tools import ToolError, grants
from pytest_dotasks.agent.workspace import Workspace
from tests.stubs.steps import agent_file


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "proj"
    r.mkdir()
    return r


@pytest.fixture
def ws(root: Path) -> Workspace:
    return Workspace(root, protected=[root / "SPEC.md", root / ".dotasks"])


def test_write_read_edit(ws: Workspace, root: Path) -> None:
    res = ws.call("Write", {"file_path": "pkg/mod.py", "content": "a = 1\nb = 2\nc = 3\n"})
    assert not res.is_error and "created pkg/mod.py" in res.content
    assert (root / "pkg/mod.py").read_text() == "a = 1\nb = 2\nc = 3\n"
    assert ws.call("Read", {"file_path": "pkg/mod.py"}).content == "     1\ta = 1\n     2\tb = 2\n     3\tc = 3"
    part = ws.call("Read", {"file_path": str(root / "pkg/mod.py"), "offset": 2, "limit": 1}).content
    assert part.startswith("     2\tb = 2") and "lines 2-2 of 3" in part
    assert not ws.call("Edit", {"file_path": "pkg/mod.py", "old_string": "b = 2", "new_string": "b = 20"}).is_error
    assert (root / "pkg/mod.py").read_text() == "a = 1\nb = 20\nc = 3\n"


def test_edit_needs_a_unique_match_unless_replace_all(ws: Workspace, root: Path) -> None:
    (root / "x.txt").write_text("x\r\nx\r\ny\r\n")
    res = ws.call("Edit", {"file_path": "x.txt", "old_string": "x", "new_string": "z"})
    assert res.is_error and "occurs 2 times" in res.content
    assert ws.call("Edit", {"file_path": "x.txt", "old_string": "nope", "new_string": "z"}).is_error
    assert ws.call("Edit", {"file_path": "x.txt", "old_string": "y", "new_string": "y"}).is_error
    res = ws.call("Edit", {"file_path": "x.txt", "old_string": "x", "new_string": "z", "replace_all": True})
    assert "2 replacements" in res.content
    assert (root / "x.txt").read_bytes() == b"z\r\nz\r\ny\r\n"  # line endings kept


def test_bad_input_comes_back_as_an_error_result(ws: Workspace) -> None:
    assert "needs 'file_path'" in ws.call("Read", {}).content
    assert ws.call("Read", {"file_path": "missing.txt"}).content == "missing.txt does not exist"
    assert "must be an integer" in ws.call("Read", {"file_path": "a", "offset": "x"}).content
    assert ws.call("Bash", {"command": ""}).is_error


@pytest.mark.parametrize("path", ["../outside.txt", "sub/../../outside.txt", "/etc/hostname", "~/.bashrc"])
def test_paths_outside_the_root_are_refused(ws: Workspace, root: Path, path: str) -> None:
    for name, args in [("Read", {"file_path": path}), ("Write", {"file_path": path, "content": "x"}),
                       ("Edit", {"file_path": path, "old_string": "a", "new_string": "b"})]:
        res = ws.call(name, args)
        assert res.is_error and res.content.startswith(f"refused: {path} is outside the project root")
    assert not (root.parent / "outside.txt").exists()


def test_symlinks_pointing_out_are_refused(ws: Workspace, root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    (root / "link.txt").symlink_to(secret)
    (root / "linkdir").symlink_to(tmp_path)
    res = ws.call("Read", {"file_path": "link.txt"})
    assert res.is_error and "outside the project root" in res.content and str(secret) in res.content
    assert ws.call("Write", {"file_path": "link.txt", "content": "pwned"}).is_error
    assert ws.call("Write", {"file_path": "linkdir/new.txt", "content": "pwned"}).is_error
    assert secret.read_text() == "top secret\n" and not (tmp_path / "new.txt").exists()
    # a link that stays inside is fine
    (root / "real.txt").write_text("ok\n")
    (root / "inner.txt").symlink_to(root / "real.txt")
    assert ws.call("Read", {"file_path": "inner.txt"}).content == "     1\tok"


def test_plugin_files_are_read_only_to_the_agent(ws: Workspace, root: Path) -> None:
    (root / "SPEC.md").write_text("- [ ] **STEP 1**: x\n")
    assert not ws.call("Read", {"file_path": "SPEC.md"}).is_error
    res = ws.call("Edit", {"file_path": "SPEC.md", "old_string": "[ ]", "new_string": "[x]"})
    assert res.is_error and "belongs to pytest-dotasks" in res.content
    assert ws.call("Write", {"file_path": ".dotasks/transcripts/t.jsonl", "content": "{}"}).is_error
    assert (root / "SPEC.md").read_text() == "- [ ] **STEP 1**: x\n"


def test_bash_runs_in_the_root_and_reports_the_exit_code(ws: Workspace, root: Path) -> None:
    res = ws.call("Bash", {"command": "pwd; echo hi > made.txt"})
    assert not res.is_error and res.content == str(root.resolve())
    assert (root / "made.txt").read_text() == "hi\n"
    res = ws.call("Bash", {"command": "echo oops >&2; exit 3"})
    assert res.is_error and res.content == "oops\n[exit code 3]"


def test_bash_output_is_capped_keeping_the_end(root: Path) -> None:
    ws = Workspace(root, cap=1000)
    res = ws.call("Bash", {"command": "python3 -c \"print('x' * 50000); print('THE END')\""})
    assert len(res.content) < 1100
    assert res.content.startswith("[... earlier output cut ...]") and res.content.endswith("THE END")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie nobody reaped yet is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_bash_timeout_kills_the_whole_process_group(ws: Workspace, root: Path) -> None:
    res = ws.call("Bash", {"command": "sleep 30 & echo $! > grandchild.pid; wait", "timeout": 400})
    assert res.is_error and "timed out after 0.4s" in res.content
    pid = int((root / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), f"grandchild {pid} survived the timeout"


def test_bash_timeout_is_capped(ws: Workspace) -> None:
    res = ws.call("Bash", {"command": "echo quick", "timeout": 10**9})
    assert res.content == "quick"


def test_tools_not_granted_are_refused(root: Path) -> None:
    ws = Workspace(root, grants=grants(("Read",)))
    res = ws.call("Write", {"file_path": "a.txt", "content": "x"})
    assert res.is_error and res.content == "tool Write is not available to this agent (its tools: Read)"
    assert ws.call("Bash", {"command": "touch b.txt"}).is_error
    assert not (root / "a.txt").exists() and not (root / "b.txt").exists()


def test_bash_rules_allow_only_matching_single_commands(root: Path) -> None:
    g = grants(("Bash(git status:*)", "Bash(echo ok)", "Read"))
    assert g.names == ("Bash", "Read") and g.bash_rules == ("git status:*", "echo ok")
    assert g.bash_allowed("git status -s") and g.bash_allowed("git status") and g.bash_allowed("echo ok")
    for cmd in ("git statusx", "echo ok2", "rm -rf x", "git status; rm -rf x", "git status && touch x",
                "echo ok > f", "git status $(touch x)"):
        assert not g.bash_allowed(cmd), cmd
    ws = Workspace(root, grants=g)
    assert ws.call("Bash", {"command": "echo ok"}).content == "ok"
    res = ws.call("Bash", {"command": "touch z"})
    assert res.is_error and "refused" in res.content and not (root / "z").exists()
    assert grants(("Bash(*)",)).bash_rules == ()  # every command


def test_resolve_refuses_empty_paths(ws: Workspace) -> None:
    with pytest.raises(ToolError, match="empty"):
        ws.resolve("  ")


# ------------------------------------------------------------ odd inputs never raise

LONG = "a" * 5000


@pytest.mark.parametrize("name, args, words", [
    ("Read", {"file_path": LONG}, "paths are limited to 4,096"),
    ("Write", {"file_path": LONG, "content": "x"}, "paths are limited to 4,096"),
    ("Edit", {"file_path": "d/" * 2100, "old_string": "a", "new_string": "b"}, "paths are limited to 4,096"),
    ("Read", {"file_path": "a" * 300}, "Read failed: File name too long"),
    ("Read", {"file_path": "a\x00b"}, "NUL byte"),
    ("Write", {"file_path": "a\x00b", "content": "x"}, "NUL byte"),
    ("Bash", {"command": "echo a\x00b"}, "NUL byte"),
    ("Read", {"file_path": "a\ud800"}, "lone surrogate (\\ud800 at character 1)"),
    ("Write", {"file_path": "f\udcff.txt", "content": "x"}, "lone surrogate"),
    ("Bash", {"command": "echo \ud800"}, "lone surrogate"),
    ("Read", {"file_path": "f.txt", "offset": float("inf")}, "'offset' must be an integer"),
    ("Read", {"file_path": "f.txt", "limit": float("nan")}, "'limit' must be an integer"),
    ("Read", {"file_path": "f.txt", "offset": 10**400}, "past the end"),
    ("Read", {"file_path": "f.txt", "offset": True}, "'offset' must be an integer"),
    ("Bash", {"command": "echo hi", "timeout": float("nan")}, "a number of milliseconds"),
    ("Bash", {"command": "echo hi", "timeout": 10**400}, "a number of milliseconds"),
    ("Edit", {"file_path": "f.txt", "old_string": "x", "new_string": "y", "replace_all": "maybe"},
     "'replace_all' must be true or false"),
    ("Write", {"file_path": "f.txt/inside", "content": "x"}, "Not a directory"),
    ("Bash", {"command": "x" * 3_000_000}, "Bash failed"),
])
def test_odd_inputs_come_back_as_error_results(ws: Workspace, root: Path, name: str, args: dict,
                                               words: str) -> None:
    (root / "f.txt").write_text("x\n")
    res = ws.call(name, args)
    assert res.is_error and words in res.content, res.content
    assert (root / "f.txt").read_text() == "x\n"


def test_replace_all_accepts_json_booleans_and_their_spelling(ws: Workspace, root: Path) -> None:
    (root / "f.txt").write_text("a a\n")
    assert ws.call("Edit", {"file_path": "f.txt", "old_string": "a", "new_string": "b",
                            "replace_all": "false"}).is_error  # "false" no longer counts as true
    assert not ws.call("Edit", {"file_path": "f.txt", "old_string": "a", "new_string": "b",
                                "replace_all": "true"}).is_error
    assert (root / "f.txt").read_text() == "b b\n"


@pytest.mark.parametrize("name, args", [
    ("Edit", {"file_path": "f.txt", "old_string": "hello", "new_string": "bad \ud800 text"}),
    ("Write", {"file_path": "f.txt", "content": "bad \ud800 text"}),
])
def test_a_failed_write_never_empties_the_file(ws: Workspace, root: Path, name: str, args: dict) -> None:
    (root / "f.txt").write_text("hello\n")
    res = ws.call(name, args)
    assert res.is_error and "lone surrogate" in res.content
    assert (root / "f.txt").read_text() == "hello\n"
    assert [p.name for p in root.iterdir()] == ["f.txt"]  # no temporary file left behind


def test_writes_replace_the_file_in_one_rename_keeping_its_mode(ws: Workspace, root: Path) -> None:
    target = root / "run.sh"
    target.write_text("echo 1\n")
    target.chmod(0o750)
    inode = target.stat().st_ino
    assert not ws.call("Write", {"file_path": "run.sh", "content": "echo 2\n"}).is_error
    assert target.read_text() == "echo 2\n" and target.stat().st_mode & 0o777 == 0o750
    assert target.stat().st_ino != inode  # a new file renamed over the old one
    assert not ws.call("Edit", {"file_path": "run.sh", "old_string": "2", "new_string": "3"}).is_error
    assert target.read_text() == "echo 3\n" and target.stat().st_mode & 0o777 == 0o750
    old = os.umask(0o022)
    os.umask(old)
    assert not ws.call("Write", {"file_path": "new.txt", "content": "n"}).is_error
    assert (root / "new.txt").stat().st_mode & 0o777 == 0o666 & ~old
    assert sorted(p.name for p in root.iterdir()) == ["new.txt", "run.sh"]


def test_a_write_that_fails_leaves_the_file_whole(ws: Workspace, root: Path) -> None:
    (root / "ro").mkdir()
    (root / "ro" / "f.txt").write_text("keep me\n")
    (root / "ro").chmod(0o555)  # no temporary file can be made beside it
    try:
        if os.access(root / "ro", os.W_OK):
            pytest.skip("running as root: permissions do not stop a write")
        res = ws.call("Write", {"file_path": "ro/f.txt", "content": "new"})
        assert res.is_error and "the file is unchanged" in res.content
        assert (root / "ro" / "f.txt").read_text() == "keep me\n"
    finally:
        (root / "ro").chmod(0o755)


def test_fifos_and_sockets_are_refused_not_waited_on(ws: Workspace, root: Path) -> None:
    os.mkfifo(root / "pipe")
    for name, args in [("Read", {"file_path": "pipe"}), ("Write", {"file_path": "pipe", "content": "x"}),
                       ("Edit", {"file_path": "pipe", "old_string": "a", "new_string": "b"})]:
        res = ws.call(name, args)
        assert res.is_error and "not a regular file" in res.content, res.content


def test_hard_links_are_refused_like_symlinks(ws: Workspace, root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    os.link(secret, root / "link.txt")
    for name, args in [("Read", {"file_path": "link.txt"}), ("Write", {"file_path": "link.txt", "content": "x"}),
                       ("Edit", {"file_path": "link.txt", "old_string": "top", "new_string": "no"})]:
        res = ws.call(name, args)
        assert res.is_error and "has 2 hard links" in res.content, res.content
    assert secret.read_text() == "top secret\n"


def test_files_that_configure_the_run_are_read_only(root: Path) -> None:
    (root / "SPEC.md").write_text("x\n")
    (root / "pytest.ini").write_text("[pytest]\n")
    agent_file(root, "a.md", "a\n")
    (root / "conftest.py").write_text("# hooks\n")
    ws = Workspace(root, protected=[root / "SPEC.md", root / ".dotasks", root / "pytest.ini", root / ".claude",
                                    root / "conftest.py"])
    for path in ("pytest.ini", ".claude/agents/a.md", ".claude/settings.json", "conftest.py", "sub/conftest.py"):
        res = ws.call("Write", {"file_path": path, "content": "changed"})
        assert res.is_error and res.content.startswith(f"refused: {path} "), res.content
        assert not ws.call("Read", {"file_path": path}).content.startswith("refused")
    assert (root / "pytest.ini").read_text() == "[pytest]\n" and not (root / "sub").exists()
    assert not ws.call("Write", {"file_path": "sub/pytest.ini", "content": "[pytest]\n"}).is_error
