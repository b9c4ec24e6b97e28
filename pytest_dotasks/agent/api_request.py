"""Messages API requests, shaped by hand: cache breakpoints, tool list, history turns.

Pure dictionary work for ``anthropic_api``; nothing here talks to the API or
imports the SDK. Three ``cache_control`` breakpoints in all (the API allows
four): the tools, the system prompt (the stable prefix a later step of the
same agent reads from the cache) and the newest message (so each turn reads
the conversation so far from the cache).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pytest_dotasks.agent.pricing import model_family
from pytest_dotasks.agent.tools import SCHEMAS, Grants, task_schema


def cached(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` marked as a cache breakpoint."""
    return {**item, "cache_control": {"type": "ephemeral"}}


def as_param(block: Any) -> dict[str, Any] | None:
    """A response content block as a request block for the history (None: drop it)."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text} if block.text else None
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": json_safe(block.input or {})}
    data: dict[str, Any] = block.model_dump(mode="json", exclude_none=True)
    return data


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON can carry it: Infinity and NaN as strings, lone surrogates escaped.

    The model's tool input goes back to the API in the history, and the SDK
    refuses to send ``offset: Infinity``; the tools see the same text and say
    what is wrong with it.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def system_blocks(system: str) -> list[dict[str, Any]]:
    """The system prompt as one cached block."""
    return [cached({"type": "text", "text": system})]


def tool_params(g: Grants, subagents: Iterable[tuple[str, str]], depth: int) -> list[dict[str, Any]]:
    """The tools an agent is granted, ``Task`` listing ``subagents`` (name, description); none below depth 0."""
    out: list[dict[str, Any]] = []
    for name in g.names:
        if name == "Task":
            if depth == 0:
                out.append(task_schema(subagents))
        else:
            out.append(SCHEMAS[name])
    if out:
        out[-1] = cached(out[-1])
    return out


def request_params(model: str, system: list[dict[str, Any]], tools: list[dict[str, Any]],
                   messages: list[dict[str, Any]], max_tokens: int | None = None) -> dict[str, Any]:
    """``messages.stream`` arguments, the newest message carrying the moving breakpoint.

    ``max_tokens``: the price table's ``max_output`` for the model (the built-in table's when None).
    """
    last = dict(messages[-1])
    content = last["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    blocks[-1] = cached(blocks[-1])
    last["content"] = blocks
    params: dict[str, Any] = {"model": model, "max_tokens": max_tokens or model_family(model).max_output, "system": system,
                              "messages": [*messages[:-1], last]}
    if tools:
        params["tools"] = tools
    return params


def add_user_turn(messages: list[dict[str, Any]], text: str) -> None:
    """A user turn; merged into the last one when that is a user turn (tool results left by a stop)."""
    if messages and messages[-1]["role"] == "user":
        content = messages[-1]["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        messages[-1]["content"] = [*content, {"type": "text", "text": text}]
    else:
        messages.append({"role": "user", "content": text})


def not_run(call: dict[str, Any], why: str) -> dict[str, Any]:
    """The tool result for a call that was not run."""
    return {"type": "tool_result", "tool_use_id": call["id"], "content": f"not run: {why}", "is_error": True}


def printable(text: str) -> str:
    """``text`` with lone surrogates (a model can send them) escaped: safe to log, print and encode."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe_call(name: str, args: Any) -> str:
    """A tool call on one short line, for the terminal and the log."""
    if not isinstance(args, dict):
        return ""
    if name == "Bash":
        value = str(args.get("command", ""))
    elif name == "Task":
        value = f"{args.get('subagent_type', '')}: {args.get('description', '')}"
    else:
        value = str(args.get("file_path", ""))
    value = printable(" ".join(value.split()))
    return value if len(value) <= 160 else value[:157] + "..."
