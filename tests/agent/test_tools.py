"""The agent's tools as the model sees them (Claude Code's names and shapes) and what an agent is granted."""

from __future__ import annotations

from pytest_dotasks.agent.tools import SCHEMAS, grants


def test_schemas_use_claude_code_names_and_shapes() -> None:
    assert set(SCHEMAS) == {"Bash", "Read", "Write", "Edit"}
    assert SCHEMAS["Bash"]["input_schema"]["required"] == ["command"]
    assert set(SCHEMAS["Read"]["input_schema"]["properties"]) == {"file_path", "offset", "limit"}
    assert SCHEMAS["Write"]["input_schema"]["required"] == ["file_path", "content"]
    assert set(SCHEMAS["Edit"]["input_schema"]["properties"]) == {"file_path", "old_string", "new_string",
                                                                  "replace_all"}


# ------------------------------------------------------------ grants

def test_grants_follow_the_agents_tools_field() -> None:
    assert grants(None).names == ("Bash", "Read", "Write", "Edit", "Task")
    assert grants(None, allow_task=False).names == ("Bash", "Read", "Write", "Edit")
    g = grants(("Read", "Grep", "Glob", "Task"))
    assert g.names == ("Read", "Task") and g.ignored == ("Grep", "Glob")
    assert grants(("Read", "Task"), allow_task=False).names == ("Read",)
