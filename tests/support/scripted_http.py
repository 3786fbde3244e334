"""A scripted loopback HTTP server for the cases a real FHIR server will not produce on demand (slow
exports, gateways answering a JSON array, malformed Bundles): subclass ``ScriptedHandler``, serve it
with ``serving``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet: the tests assert, the console stays readable
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, doc, code: int = 200) -> None:
        self._send(code, json.dumps(doc).encode(), {"Content-Type": "application/fhir+json"})


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], path: str = "/fhir") -> Iterator[str]:
    """The handler on a free loopback port; yields its base URL (``http://127.0.0.1:<port><path>``)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}{path}"
    finally:
        httpd.shutdown()
