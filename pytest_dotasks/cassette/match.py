"""What must match between a recorded request and a replayed one, and what may differ.

A replayed step sends its requests again; each is compared with the one
recorded in the same place. What matters (``essentials``): the model, the
tools (names and input schemas), the system prompt, the step's prompt (the
first user message), and the number and roles of the messages. Tool results
and the assistant turns in between are not compared: the assistant turns are
the cassette's own replies, and tool results hold real output (timings, file
listings) that legitimately differs from run to run.

Volatile parts are normalised first (``Normalizer``): the project's absolute
path becomes ``<dotasks:root>`` (also in the folder-name form Claude Code
gives it: ``-home-me-proj``), the home folder ``<dotasks:home>``, task ids
``<dotasks:task_id>``, timestamps and dates ``<dotasks:time>``, and Claude
Code's billing line (it carries a hash of the prompt) ``<dotasks:volatile>``.
The step's prompt leaves out Claude Code's ``<system-reminder>`` blocks
(platform, OS version, today's date): they describe the machine, not the
step. ``first_difference`` names the first thing that differs, in one line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

PLACE_ROOT = "<dotasks:root>"
PLACE_TASK = "<dotasks:task_id>"
PLACE_TIME = "<dotasks:time>"
PLACE_HOME = "<dotasks:home>"
PLACE_VOLATILE = "<dotasks:volatile>"

# task_8_3fa2b8c1, task_T001_..., task_1.1_...: run.context.new_task_id's form for every plan format.
TASK_ID = re.compile(r"(?<![A-Za-z0-9])task_[A-Za-z0-9.\-]+?_[0-9a-f]{8}(?![A-Za-z0-9])")
TIMESTAMP = re.compile(
    r"(?<!\d)\d{4}([-/])\d{2}\1\d{2}"  # a date: 2026-11-24 or 2026/11/24
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?!\d)"  # and a time of day
)
BILLING = re.compile(r"^(x-anthropic-billing-header:).*$", re.MULTILINE)  # Claude Code's first system line
REMINDER = "<system-reminder>"
SNIPPET = 40  # characters shown each side of a difference


def path_forms(paths: Iterable[str]) -> list[str]:
    """Each path as written and resolved (macOS: /var -> /private/var), longest first."""
    forms: set[str] = set()
    for p in paths:
        if not p:
            continue
        for form in (p, os.path.realpath(p)):
            form = form.rstrip("/") or form
            if len(form) > 1:
                forms.add(form)
    return sorted(forms, key=len, reverse=True)


def folder_name(path: str) -> str:
    """The name Claude Code gives a project's folder under ~/.claude/projects: ``/a/b_c`` -> ``-a-b-c``."""
    return re.sub(r"[^A-Za-z0-9]", "-", path)


class Normalizer:
    """Replaces the volatile parts of texts (and of every string in a JSON value)."""

    def __init__(self, roots: Iterable[str] = (), homes: Iterable[str] = (), *, task_ids: bool = True,
                 times: bool = True) -> None:
        forms = path_forms(roots)
        self.places = [(f, PLACE_ROOT) for f in forms] + [(folder_name(f), PLACE_ROOT) for f in forms]
        self.places += [(h, PLACE_HOME) for h in path_forms(homes) if h not in forms]
        self.task_ids = task_ids
        self.times = times

    def text(self, value: str) -> str:
        for form, place in self.places:
            if form in value:
                value = value.replace(form, place)
        if "x-anthropic-billing-header:" in value:
            value = BILLING.sub(rf"\1 {PLACE_VOLATILE}", value)
        if self.task_ids and "task_" in value:
            value = TASK_ID.sub(PLACE_TASK, value)
        if self.times:
            value = TIMESTAMP.sub(PLACE_TIME, value)
        return value

    def value(self, data: Any) -> Any:
        return map_strings(data, self.text)


def map_strings(data: Any, fn: Callable[[str], str]) -> Any:
    """``data`` (parsed JSON) with ``fn`` applied to every string, keys left alone."""
    if isinstance(data, str):
        return fn(data)
    if isinstance(data, list):
        return [map_strings(v, fn) for v in data]
    if isinstance(data, dict):
        return {k: map_strings(v, fn) for k, v in data.items()}
    return data


# ------------------------------------------------------------ what matters

def _text_of(content: Any, reminders: bool = True) -> str:
    """The text of a message's content or of a system prompt: a string, or its text blocks joined
    (without Claude Code's ``<system-reminder>`` blocks when ``reminders`` is false)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(str(b.get("text", "")) for b in content
                           if isinstance(b, dict) and b.get("type") == "text"
                           and (reminders or not str(b.get("text", "")).lstrip().startswith(REMINDER)))
    return ""


def essentials(body: Any) -> dict[str, Any]:
    """What matters in a Messages request body (already normalised)."""
    if not isinstance(body, dict):
        return {}
    raw = body.get("messages")
    messages: list[Any] = raw if isinstance(raw, list) else []
    roles = [str(m.get("role")) if isinstance(m, dict) else "?" for m in messages]
    first_user = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    tools = []
    for t in body.get("tools") or []:
        if isinstance(t, dict):
            spec = {"name": t.get("name")}
            if "input_schema" in t:
                spec["input_schema"] = t["input_schema"]
            elif "type" in t:  # a server tool (web_search_20250305...): its type is its schema
                spec["type"] = t["type"]
            tools.append(spec)
    return {  # in the order a person reads a cassette's request line
        "model": body.get("model"),
        "roles": roles,
        "prompt": _text_of(first_user.get("content"), reminders=False) if first_user else "",
        "system": _text_of(body.get("system")),
        "tools": tools,
    }


def _show(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def text_difference(what: str, recorded: str, live: str) -> str:
    """Where two texts first differ: the line, and a little of each side."""
    i = next((k for k, (a, b) in enumerate(zip(recorded, live)) if a != b), min(len(recorded), len(live)))
    line = recorded.count("\n", 0, i) + 1
    start = max(0, i - SNIPPET // 2)
    a, b = recorded[start:i + SNIPPET], live[start:i + SNIPPET]
    dots = "..." if start else ""
    return f"{what}, line {line}: recorded {dots}{_show(a)}, now {dots}{_show(b)}"


def _first_path(a: Any, b: Any, path: str = "") -> str:
    """The first key path where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k, ...) != b.get(k, ...):
                return _first_path(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_path(x, y, f"{path}[{i}]")
    return path or "(whole value)"


def first_difference(recorded: dict[str, Any], live: dict[str, Any]) -> str | None:
    """The first difference in what matters, in one line; None when they match."""
    if recorded.get("model") != live.get("model"):
        return f"model: recorded {recorded.get('model')!r}, now {live.get('model')!r}"
    r_roles, l_roles = list(recorded.get("roles") or []), list(live.get("roles") or [])
    if len(r_roles) != len(l_roles):
        return f"messages: recorded {len(r_roles)}, now {len(l_roles)}"
    if r_roles != l_roles:
        i = next(k for k, (a, b) in enumerate(zip(r_roles, l_roles)) if a != b)
        return f"messages[{i}] role: recorded {r_roles[i]!r}, now {l_roles[i]!r}"
    if recorded.get("prompt", "") != live.get("prompt", ""):
        return text_difference("the step's prompt", str(recorded.get("prompt", "")), str(live.get("prompt", "")))
    if recorded.get("system", "") != live.get("system", ""):
        return text_difference("system prompt", str(recorded.get("system", "")), str(live.get("system", "")))
    r_tools, l_tools = list(recorded.get("tools") or []), list(live.get("tools") or [])
    if r_tools != l_tools:
        r_names = [t.get("name") for t in r_tools]
        l_names = [t.get("name") for t in l_tools]
        if r_names != l_names:
            return f"tools: recorded {', '.join(map(str, r_names)) or 'none'}; now {', '.join(map(str, l_names)) or 'none'}"
        i = next(k for k, (a, b) in enumerate(zip(r_tools, l_tools)) if a != b)
        return f"tools: {r_names[i]}'s input schema differs at {_first_path(r_tools[i], l_tools[i])}"
    return None
