"""A local stand-in for the Anthropic Messages API, for tests with the real SDK.

It answers ``POST /v1/messages`` (plain JSON or SSE when the request streams)
from a scripted list of replies and errors, ``GET /v1/models`` (a cheap key
probe), records every request, and checks each one is well formed the way the
real API would insist, recording violations so tests can assert there are none:

- the key matches (``x-api-key`` or ``Authorization: Bearer``; else 401);
- roles alternate user/assistant, starting and ending with user; ``system``
  turns may sit anywhere in ``messages`` (they do not count for the
  alternation) only under the ``per-turn-control-2026-07-01`` beta, as
  Claude Code sends them (the ``anthropic-beta`` header names the betas);
- every ``tool_use`` of an assistant turn is answered by a ``tool_result``
  with its id, first in the next user turn, and no result answers nothing;
- text blocks are not empty, tools have name/description/input_schema and
  unique names, at most 4 ``cache_control`` breakpoints;
- ``cache_control`` is on the stable prefix (the system prompt or the tools).

Claude Code (the CLI bundled in ``claude-agent-sdk``) talks to it too: it posts
to ``/v1/messages?beta=true`` with ``x-api-key``, always streams, and asks for
betas in ``anthropic-beta``.

Usage::

    stub.reply(tool_use("Bash", {"command": "ls"}))   # a tool call (stop_reason tool_use)
    stub.reply(text("done\\nSTEP RESULT: SUCCESS"), usage={"cache_read_input_tokens": 900})
    stub.fail(529)                                    # overloaded, then the next item
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import threading
from collections import deque
from collections.abc import Callable, Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .server import serve

API_KEY = "sk-ant-stub-" + "0123456789abcdef" * 3
PER_TURN_CONTROL = "per-turn-control-2026-07-01"  # the beta that allows role "system" turns in messages
MODELS = ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1")
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ids = itertools.count(1)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, input: dict[str, Any], id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": id or f"toolu_stub_{next(_ids):04d}", "name": name, "input": input}


@dataclasses.dataclass
class Reply:
    content: list[dict[str, Any]]
    stop_reason: str | None = None  # default: tool_use when the content calls a tool, else end_turn
    usage: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Failure:
    status: int
    message: str = ""
    retry_after_ms: int | None = 1  # keeps the SDK's retry wait tiny


@dataclasses.dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []


Script = Reply | Failure | Callable[[dict[str, Any]], "Reply | Failure"]


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def validate(body: Any, betas: Collection[str] = ()) -> list[str]:
    """What the real API would reject (or what breaks our caching promise) in a messages request.

    ``betas``: those the request asked for (its ``anthropic-beta`` header).
    """
    problems: list[str] = []
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    if not isinstance(body.get("model"), str) or not body["model"]:
        problems.append("model missing")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        problems.append("max_tokens missing or < 1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return problems + ["messages missing or empty"]
    breakpoints = 0
    expected = "user"
    pending: set[str] = set()
    last_role = None
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role == "system":
            if PER_TURN_CONTROL not in betas:
                problems.append(f"messages[{i}]: role 'system' needs the {PER_TURN_CONTROL} beta")
            blocks = _blocks(msg.get("content"))
            if not blocks or any(b.get("type") != "text" or not b.get("text") for b in blocks):
                problems.append(f"messages[{i}]: a system turn holds non-empty text blocks only")
            breakpoints += sum("cache_control" in b for b in blocks)
            continue
        last_role = role
        if role != expected:
            problems.append(f"messages[{i}]: role {role!r}, expected {expected!r} (roles must alternate)")
        expected = "assistant" if role == "user" else "user"
        blocks = _blocks(msg.get("content") if isinstance(msg, dict) else None)
        if not blocks:
            problems.append(f"messages[{i}]: empty content")
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        if role == "user":
            if set(results) != pending:
                problems.append(f"messages[{i}]: tool_result ids {sorted(results)} do not answer the "
                                f"previous tool_use ids {sorted(pending)}")
            n = len(results)
            if any(b.get("type") != "tool_result" for b in blocks[:n]):
                problems.append(f"messages[{i}]: tool_result blocks must come first")
            pending = set()
        else:
            if results:
                problems.append(f"messages[{i}]: tool_result in an assistant turn")
            pending = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
        for b in blocks:
            if "cache_control" in b:
                breakpoints += 1
            if b.get("type") == "text" and not b.get("text"):
                problems.append(f"messages[{i}]: empty text block")
            if b.get("type") == "tool_use" and not isinstance(b.get("input"), dict):
                problems.append(f"messages[{i}]: tool_use input is not an object")
            if b.get("type") == "tool_result":
                content = b.get("content")
                if not isinstance(content, (str, list)) and content is not None:
                    problems.append(f"messages[{i}]: tool_result content must be a string or blocks")
    if last_role != "user":
        problems.append("the last message must be the user's (system turns aside)")
    system = body.get("system")
    system_cached = False
    if isinstance(system, list):
        for b in system:
            if b.get("type") != "text" or not b.get("text"):
                problems.append("system: blocks must be non-empty text")
            if "cache_control" in b:
                breakpoints += 1
                system_cached = True
    tools = body.get("tools") or []
    names = [t.get("name") for t in tools]
    if len(set(names)) != len(names):
        problems.append(f"tools: duplicate names {names}")
    tools_cached = False
    for t in tools:
        if not _TOOL_NAME.match(str(t.get("name", ""))):
            problems.append(f"tools: bad name {t.get('name')!r}")
        if not isinstance(t.get("description"), str) or not t["description"]:
            problems.append(f"tools: {t.get('name')} has no description")
        schema = t.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            problems.append(f"tools: {t.get('name')} input_schema is not an object schema")
        if "cache_control" in t:
            breakpoints += 1
            tools_cached = True
    if breakpoints > 4:
        problems.append(f"{breakpoints} cache_control breakpoints (the API allows 4)")
    if not (system_cached or tools_cached):
        problems.append("no cache_control on the stable prefix (system prompt or tools)")
    return problems


class AnthropicStub:
    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.script: deque[Script] = deque()
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ scripting

    def reply(self, *blocks: dict[str, Any] | str, stop_reason: str | None = None,
              usage: dict[str, int] | None = None) -> AnthropicStub:
        content = [text(b) if isinstance(b, str) else b for b in blocks]
        self.script.append(Reply(content, stop_reason, dict(usage or {})))
        return self

    def fail(self, status: int, message: str = "", retry_after_ms: int | None = 1) -> AnthropicStub:
        self.script.append(Failure(status, message, retry_after_ms))
        return self

    def then(self, responder: Callable[[dict[str, Any]], Reply | Failure]) -> AnthropicStub:
        """A reply computed from the request body."""
        self.script.append(responder)
        return self

    @property
    def message_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path.startswith("/v1/messages")]

    # ------------------------------------------------------------ server

    @property
    def url(self) -> str:
        assert self._server is not None, "stub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> AnthropicStub:
        self._server, self._thread = serve(self._handle, poll_interval=0.02, name="anthropic-stub")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> AnthropicStub:  # noqa: PYI034 (py3.10: no typing.Self)
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ handling

    def _authorized(self, headers: dict[str, str]) -> bool:
        bearer = headers.get("authorization", "")
        key = headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else "")
        return key == self.api_key

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in h.headers.items()}
        path = h.path
        with self._lock:
            self.requests.append(Recorded(method, path, headers, body))
        if "anthropic-version" not in headers:
            self._violate(f"{method} {path}: no anthropic-version header")
        if not self._authorized(headers):
            self._error(h, 401, "invalid x-api-key")
            return
        route = path.split("?", 1)[0]
        if method == "GET" and route == "/v1/models":
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-10-01T00:00:00Z"}
                    for m in MODELS]
            self._json(h, 200, {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
            return
        if method == "GET" and route.startswith("/v1/models/"):
            mid = route.rsplit("/", 1)[1]
            if mid in MODELS:
                self._json(h, 200, {"type": "model", "id": mid, "display_name": mid,
                                    "created_at": "2025-10-01T00:00:00Z"})
            else:
                self._error(h, 404, f"model: {mid}")
            return
        if method != "POST" or route != "/v1/messages":
            self._error(h, 404, f"no route {method} {route}")
            return
        betas = {b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()}
        for problem in validate(body, betas):
            self._violate(f"request {len(self.message_requests)}: {problem}")
        with self._lock:
            item = self.script.popleft() if self.script else None
        if callable(item):
            item = item(body)
        if item is None:
            self._violate("a request came after the script ran out")
            self._error(h, 400, "stub: no scripted response left")
            return
        if isinstance(item, Failure):
            self._error(h, item.status, item.message, item.retry_after_ms)
            return
        message = self._message(body, item)
        if isinstance(body, dict) and body.get("stream"):
            self._sse(h, message)
        else:
            self._json(h, 200, message)

    def _violate(self, problem: str) -> None:
        with self._lock:
            self.violations.append(problem)

    @staticmethod
    def _message(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        stop = reply.stop_reason or ("tool_use" if any(b["type"] == "tool_use" for b in reply.content)
                                     else "end_turn")
        usage = {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0}
        usage.update(reply.usage)
        return {
            "id": f"msg_stub_{next(_ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-sonnet-4-5"),
            "content": reply.content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, ctype: str, payload: bytes,
              extra: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("content-type", ctype)
        h.send_header("content-length", str(len(payload)))
        h.send_header("request-id", f"req_stub_{next(_ids):04d}")
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(payload)
        h.wfile.flush()

    def _json(self, h: BaseHTTPRequestHandler, status: int, data: Any) -> None:
        self._send(h, status, "application/json", json.dumps(data).encode())

    def _error(self, h: BaseHTTPRequestHandler, status: int, message: str = "",
               retry_after_ms: int | None = None) -> None:
        etype = ERROR_TYPES.get(status, "api_error")
        data = {"type": "error", "error": {"type": etype, "message": message or etype.replace("_", " ")},
                "request_id": f"req_stub_{next(_ids):04d}"}
        extra = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
        self._send(h, status, "application/json", json.dumps(data).encode(), extra)

    def _sse(self, h: BaseHTTPRequestHandler, message: dict[str, Any]) -> None:
        usage = message["usage"]
        start = dict(message, content=[], stop_reason=None,
                     usage=dict(usage, output_tokens=1))
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start}),
                                                    ("ping", {"type": "ping"})]
        for i, block in enumerate(message["content"]):
            if block["type"] == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": {"type": "text", "text": ""}}))
                half = len(block["text"]) // 2
                for piece in (block["text"][:half], block["text"][half:]):
                    if piece:
                        events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                               "delta": {"type": "text_delta", "text": piece}}))
            elif block["type"] == "tool_use":
                events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": dict(block, input={})}))
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "input_json_delta",
                                                                 "partial_json": json.dumps(block["input"])}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                         "usage": {"output_tokens": usage["output_tokens"]}}))
        events.append(("message_stop", {"type": "message_stop"}))
        payload = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()
        self._send(h, 200, "text/event-stream", payload, {"cache-control": "no-cache"})
