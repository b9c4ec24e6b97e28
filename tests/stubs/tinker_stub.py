"""A local stand-in for the Tinker HTTP API, enough for the real SDK's key check.

It answers what ``tinker.ServiceClient(...)`` sends before and during its
accessibility check (``POST /api/v1/client/config``, ``POST
/api/v1/client/dynamic_config``, ``GET /api/v1/get_server_capabilities``),
plus ``GET /api/v1/healthz`` and ``POST /api/v1/telemetry``; anything else is
a 404 and recorded. The SDK sends its key as ``X-API-Key``.

Modes:

- ``ok``: a request with the stub's key is answered; any other key gets 401;
- ``401`` / ``403`` / ``402``: every request but ``healthz`` gets that status;
- ``late401``: ``client/config`` answers without looking at the key (as a
  service may) and every later request gets 401;
- ``hang``: every request is read and never answered, until ``stop()``
  releases the handlers (so shutdown never waits on them).

Training (``create_session``, ``forward_backward``...) is not served.

Usage::

    with TinkerStub(mode="401") as stub:
        os.environ["TINKER_BASE_URL"] = stub.url
"""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .server import serve

API_KEY = "tml-stub-" + "0123456789abcdef" * 2
MODES = ("ok", "401", "402", "403", "late401", "hang")
MODELS = ("meta-llama/Llama-3.2-1B", "Qwen/Qwen3-8B")

_ANSWERS: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/client/config"): {"use_pyqwest_transport": True},
    ("POST", "/api/v1/client/dynamic_config"): {},
    ("GET", "/api/v1/healthz"): {"status": "ok"},
    ("POST", "/api/v1/telemetry"): {"status": "accepted"},
    ("GET", "/api/v1/get_server_capabilities"): {
        "supported_models": [{"model_name": m, "max_context_length": 32768, "trainable": True, "sampleable": True}
                             for m in MODELS]
    },
}
_DETAIL = {401: "Invalid API key", 402: "Billing is not set up for this account",
           403: "This key may not use this resource", 404: "Not found"}


@dataclasses.dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class TinkerStub:
    def __init__(self, mode: str = "ok", api_key: str = API_KEY) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
        self.mode = mode
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self.release = threading.Event()  # set on stop(): hung handlers return
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "stub not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def start(self) -> TinkerStub:
        self.release.clear()
        self._server, self._thread = serve(self._handle, poll_interval=0.05, name="tinker-stub")
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> TinkerStub:  # noqa: PYI034 (py3.10: no typing.Self)
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ handling

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        route = h.path.split("?", 1)[0]
        with self._lock:
            self.requests.append(Recorded(h.command, route, headers, body))
        if self.mode == "hang":
            self.release.wait()
            h.close_connection = True
            return
        answer = _ANSWERS.get((h.command, route))
        if answer is None:
            self._send(h, 404, {"detail": f"{_DETAIL[404]}: {h.command} {route}"})
            return
        if route != "/api/v1/healthz":
            status = self._auth_status(route, headers.get("x-api-key", ""))
            if status:
                self._send(h, status, {"detail": _DETAIL[status]})
                return
        self._send(h, 200, answer)

    def _auth_status(self, route: str, key: str) -> int:
        if self.mode in ("401", "402", "403"):
            return int(self.mode)
        if self.mode == "late401":
            return 0 if route == "/api/v1/client/config" else 401
        return 0 if key == self.api_key else 401

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)
        h.wfile.flush()
