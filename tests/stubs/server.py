"""The stubs' local HTTP server: 127.0.0.1 on a free port, every GET and POST to one handler, in a daemon thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve(handle: Callable[[BaseHTTPRequestHandler], None], *, poll_interval: float,
          name: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A started server calling ``handle(h)`` for each request (``h.command`` says GET or POST), and its thread."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            handle(self)

        do_POST = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval}, name=name,
                              daemon=True)
    thread.start()
    return server, thread
