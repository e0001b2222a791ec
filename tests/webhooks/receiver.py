"""A real HTTP receiver for webhook tests: answers as each test scripts it, records what came."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """``script`` holds the answers to give, in order: an HTTP status, or "timeout" (sleep past
    the sender's timeout). When it runs out, the receiver answers ``default``."""

    script: list[int | str] = field(default_factory=list)
    default: int = 200
    timeout_sleep: float = 2.0
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def next_answer(self) -> int | str:
        return self.script.pop(0) if self.script else self.default

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.received if r.headers.get("x-answer", "").startswith("2")]


@contextmanager
def receiving(receiver: Receiver, port: int = 0) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            answer = receiver.next_answer()
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["x-answer"] = str(answer)
            receiver.received.append(Received(headers, json.loads(raw or b"{}")))
            if answer == "timeout":
                time.sleep(receiver.timeout_sleep)
                answer = 200
            self.send_response(int(answer))
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "ok"}' + b" " * 10_000)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/payops"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
