"""The proxy: a small threaded HTTP server on 127.0.0.1 between the agent and the Messages API.

Every step that records or replays gets a base URL of its own,
``http://127.0.0.1:PORT/step/<step id>/<task id>``, as ``ANTHROPIC_BASE_URL``;
the anthropic SDK and the Claude Code CLI both append ``/v1/messages`` to it,
so one proxy serves every step of the process and knows each request's step
from its path. Recording, a request is forwarded to the real base URL with
its headers (the key among them) and the reply relayed as it arrives, chunk
by chunk, while its events are collected for the cassette; replaying, the
step's tape answers and nothing leaves the machine.

Why the standard library's ``ThreadingHTTPServer``: it binds in about a
millisecond, needs nothing installed, and a thread per connection is what a
few agents (one per pytest process; xdist workers each run their own proxy)
ask of it. The forwarding side uses ``httpx``, which the ``anthropic`` SDK
already depends on: it streams, pools connections and honours the
``HTTPS_PROXY``/``SSL_CERT_FILE`` settings the SDK itself would have used.
It is imported only when recording. A proxy library (mitmproxy, aiohttp) would
bring its own event loop or certificates and seconds of import for a job of
two hundred lines.
"""

from __future__ import annotations

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pytest_dotasks.cassette import sse
from pytest_dotasks.cassette.tape import REPLAY, Reply, Tape, api_error

PREFIX = "step"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding", "content-encoding"}


class Proxy:
    """One per pytest process: ``start()``, ``add(tape)`` per step, ``url_for(tape)``, ``stop()``."""

    def __init__(self, upstream: str = "https://api.anthropic.com") -> None:
        self.upstream = upstream.rstrip("/")
        self.tapes: dict[str, Tape] = {}
        self._server: ThreadingHTTPServer | None = None
        self._client: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ life

    def start(self) -> Proxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # no access log: it would show paths only
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="dotasks-proxy",
                         daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "proxy not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Proxy:  # noqa: PYI034 (py3.10: no typing.Self)
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ tapes

    def add(self, tape: Tape) -> str:
        """Serve ``tape``; returns the base URL its step's agent uses."""
        with self._lock:
            self.tapes[tape.task_id] = tape
        step = urllib.parse.quote(tape.header.step, safe="")
        return f"{self.url}/{PREFIX}/{step}/{tape.task_id}"

    def remove(self, tape: Tape) -> None:
        with self._lock:
            self.tapes.pop(tape.task_id, None)

    # ------------------------------------------------------------ requests

    def _route(self, raw_path: str) -> tuple[Tape | None, str, str]:
        """(tape, the API path, query) of ``/step/<id>/<task id>/v1/messages?beta=true``."""
        path, _, query = raw_path.partition("?")
        parts = path.split("/", 4)  # "", "step", id, task id, rest
        if len(parts) < 4 or parts[1] != PREFIX:
            return None, path, query
        with self._lock:
            tape = self.tapes.get(parts[3])
        return tape, "/" + (parts[4] if len(parts) > 4 else ""), query

    @staticmethod
    def _body(h: BaseHTTPRequestHandler) -> bytes:
        if "chunked" in h.headers.get("transfer-encoding", "").lower():
            out = b""
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    h.rfile.readline()
                    return out
                out += h.rfile.read(size)
                h.rfile.readline()
        length = int(h.headers.get("content-length") or 0)
        return h.rfile.read(length) if length else b""

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command
        body = self._body(h)
        tape, path, query = self._route(h.path)
        try:
            if tape is None:
                self._send(h, api_error(404, f"pytest-dotasks proxy: no step is recording or replaying at {path}",
                                        "not_found_error"))
            elif tape.mode == REPLAY:
                self._send(h, tape.answer(method, path, body))
            else:
                self._forward(h, tape, method, path, query, body)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True  # the client went away: nothing more to send

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, reply: Reply) -> None:
        h.send_response(reply.status)
        for k, v in reply.headers.items():
            h.send_header(k, v)
        h.send_header("content-length", str(len(reply.payload)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(reply.payload)
        h.wfile.flush()

    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                import httpx  # recording only; the anthropic SDK's own HTTP library

                self._client = httpx.Client(timeout=httpx.Timeout(600.0, connect=30.0), follow_redirects=False)
            return self._client

    def _forward(self, h: BaseHTTPRequestHandler, tape: Tape, method: str, path: str, query: str,
                 body: bytes) -> None:
        """Recording: send the request upstream, relay the reply as it streams, keep it on the tape."""
        n = tape.next_number()
        exchange = tape.started(n, method, path, query, body)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["accept-encoding"] = "identity"  # the proxy reads what it relays
        url = self.upstream + path + (f"?{query}" if query else "")
        client = self._http()
        try:
            upstream = client.send(client.build_request(method, url, headers=headers, content=body), stream=True)
        except Exception as exc:  # noqa: BLE001 - any failure to reach upstream becomes an API error
            why = f"pytest-dotasks recording proxy: cannot reach {self.upstream}: {type(exc).__name__}: {exc}"
            self._send(h, api_error(502, why, "api_error"))
            return
        try:
            self._relay(h, tape, exchange, upstream)
        finally:
            upstream.close()

    def _relay(self, h: BaseHTTPRequestHandler, tape: Tape, exchange: Any, upstream: Any) -> None:
        """Relay the reply chunk by chunk; put it on the tape once it has arrived whole.

        A client may hang up before the end (the SDK closes a reply it will retry without
        reading it all): the reply is still read to its end and kept, as the client saw it begin.
        """
        streamed = "text/event-stream" in upstream.headers.get("content-type", "")
        h.send_response(upstream.status_code)
        for k, v in upstream.headers.multi_items():
            if k.lower() not in HOP_BY_HOP:
                h.send_header(k, v)
        h.send_header("transfer-encoding", "chunked")
        h.end_headers()
        splitter = sse.Splitter() if streamed else None
        events: list[sse.Event] = []
        kept = bytearray()
        client = True
        for chunk in upstream.iter_bytes():
            if not chunk:
                continue
            if splitter is not None:
                events.extend(splitter.feed(chunk))
            else:
                kept += chunk
            client = client and _write(h, b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if splitter is not None:
            events.extend(splitter.close())
        tape.finished(exchange, upstream.status_code, dict(upstream.headers), bytes(kept),
                      events if streamed else None)
        if client:
            _write(h, b"0\r\n\r\n")


def _write(h: BaseHTTPRequestHandler, data: bytes) -> bool:
    """Send to the client; False when it has gone away."""
    try:
        h.wfile.write(data)
        h.wfile.flush()
        return True
    except OSError:
        h.close_connection = True
        return False

