"""Test fixture: a loopback HTTP proxy in front of the FHIR server that can misbehave on demand.

Modes: ``pass`` (forward), ``delay`` (wait N seconds, then forward), ``hang`` (never answer until the
mode changes or the proxy stops), ``500``, ``401``, ``redirect`` (302 to the upstream's origin) and
``refuse`` (the port is closed: connection refused). Response bodies have the upstream base
rewritten to the proxy's, so paging links point back through the proxy as a real FHIR server behind
a gateway would answer.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from tests.support.fhir_server import free_port

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class FaultProxy:
    def __init__(self, upstream_base: str):
        up = urlsplit(upstream_base)
        self.upstream_host, self.upstream_port = up.hostname, up.port
        self.upstream_origin = f"{up.scheme}://{up.netloc}"
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.base_url = self.origin + up.path
        self.mode, self.delay_seconds = "pass", 0.0
        self.requests_seen = 0
        self._changed = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control --------------------------------------------------------------------------
    def set_mode(self, mode: str, seconds: float = 0.0) -> None:
        assert mode in ("pass", "delay", "hang", "500", "401", "refuse", "redirect"), mode
        with self._lock:
            self._changed.set()  # release any hanging request
            self._changed = threading.Event()
            self.mode, self.delay_seconds = mode, seconds
            if mode == "refuse":
                self._stop_listening()
            elif self._server is None:
                self._listen()

    def start(self) -> FaultProxy:
        with self._lock:
            self._listen()
        return self

    def stop(self) -> None:
        with self._lock:
            self._changed.set()
            self._stop_listening()

    def _listen(self) -> None:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fault-proxy")
        self._thread.start()

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- forwarding -----------------------------------------------------------------------
    def forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, list, bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_HEADERS]
            return resp.status, out_headers, data.replace(self.upstream_origin.encode(), self.origin.encode())
        finally:
            conn.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, headers: list | None = None) -> None:
        self.send_response(status)
        for k, v in headers or [("Content-Type", "application/fhir+json")]:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        owner = self.owner
        owner.requests_seen += 1
        mode, seconds, changed = owner.mode, owner.delay_seconds, owner._changed
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if mode == "hang":
            changed.wait(60)
            self.close_connection = True
            return
        if mode == "delay":
            time.sleep(seconds)
        if mode == "500":
            oo = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
            self._send(500, json.dumps(oo).encode())
            return
        if mode == "redirect":  # to the upstream's own origin: a different host:port than asked
            self._send(302, b"", [("Location", owner.upstream_origin + self.path)])
            return
        if mode == "401":
            oo = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]}
            self._send(
                401,
                json.dumps(oo).encode(),
                [("WWW-Authenticate", "Bearer"), ("Content-Type", "application/fhir+json")],
            )
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        try:
            status, out_headers, data = owner.forward(self.command, self.path, headers, body)
        except OSError:
            self._send(502, b'{"resourceType":"OperationOutcome"}')
            return
        self._send(status, data, out_headers)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@pytest.fixture(scope="session")
def fault_proxy_session(fhir_server) -> FaultProxy:
    proxy = FaultProxy(fhir_server.base_url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def fault_proxy(fault_proxy_session) -> FaultProxy:
    """The session proxy, reset to ``pass`` before and after each test."""
    fault_proxy_session.set_mode("pass")
    yield fault_proxy_session
    fault_proxy_session.set_mode("pass")
