"""A real HTTPS webhook receiver for the tests: a threaded server on loopback with a
certificate from a trustme CA (the test profile trusts that CA through
FERRY_WEBHOOK_CA_BUNDLE). It records every request and answers as the test tells it."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


# How to answer: (status, extra headers, seconds to wait before answering).
Answer = tuple[int, dict[str, str], float]


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    ca_path: Path
    received: list[Received] = field(default_factory=list)
    answer: Callable[[Received], Answer] = lambda r: (204, {}, 0.0)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/hooks/ferry"

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
        self.answer = lambda r: (204, {}, 0.0)

    def of_type(self, event_type: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.json.get("type") == event_type]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(directory: Path) -> Receiver:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = directory / "webhook-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            got = Received(
                path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body=self.rfile.read(length)
            )
            receiver = holder["r"]
            with receiver.lock:
                receiver.received.append(got)
            status, headers, delay = receiver.answer(got)
            if delay:
                time.sleep(delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    receiver = Receiver(server=server, ca_path=ca_path)
    holder["r"] = receiver
    threading.Thread(target=server.serve_forever, daemon=True, name="webhook-receiver").start()
    return receiver
