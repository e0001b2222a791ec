"""One base for every fake gateway: the server plumbing and one fault vocabulary.

A fake gateway serves real HTTP on 127.0.0.1 (a threaded stdlib server, so a test can reset a
connection at the socket, and the fake keeps answering while the test's event loop waits). A
subclass keeps only its protocol: it implements ``handle`` (and the ``decline``/``queue`` answers
of its gateway) and inherits the rest.

Faults, the same words for every gateway (``fail_next(kind, …)``):

- ``decline``: the gateway's refusal (``decline_answer``), nothing done;
- ``queue``: the gateway's "accepted, not final" answer (``queue_answer``);
- ``timeout``: no answer until the client gives up (the fake waits ``hang_seconds``, then drops
  the connection);
- ``reset``: the connection is reset (TCP RST) without an answer;
- ``500``: an HTML server error page;
- ``malformed``: HTTP 200 with a body that is not the protocol's (``malformed_body``);
- ``slow``: the normal answer, after ``slow_seconds`` (still within the client's timeout).

``apply=True`` performs the request first and then meets the fault, as when the gateway acted
and the reply was lost. A subclass may add protocol-only kinds in ``EXTRA_FAULTS`` and answer
them in ``extra_fault``.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

FAULTS = ("decline", "queue", "timeout", "reset", "500", "malformed", "slow")
SERVER_ERROR_PAGE = "<html><body><h1>500 Internal Server Error</h1></body></html>"
JSON = "application/json; charset=utf-8"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""

    @property
    def json(self) -> Any:
        """The body as sent, numbers kept exact (Decimal for fractions, int otherwise)."""
        return json.loads(self.body, parse_float=Decimal) if self.body else None

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Fault:
    kind: str
    method: str | None = None
    path: str | None = None  # the exact path, or None for any
    suffix: str | None = None  # or a path ending
    apply: bool = False
    status: int | None = None  # for decline: the HTTP status (the protocol's default if None)
    message: str = ""  # for decline: the refusal's text
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.path is None or self.path == path)
            and (self.suffix is None or path.endswith(self.suffix))
        )


@dataclass
class Answer:
    """What the fake replies: a status and a body (dict/list → JSON, str/bytes as given,
    None → empty)."""

    status: int
    body: Any = None
    content_type: str | None = None
    # A fault the protocol itself decided to apply (a fake that consumes its faults only for
    # requests it accepts): met after this answer's state change when ``fault.apply``.
    fault: Fault | None = None
    # Extra response headers (a hosted payment page's ``Location`` on a 303).
    headers: dict[str, str] | None = None


class FakeGateway:
    """State, faults and lifecycle; ``url`` is where it listens once started."""

    EXTRA_FAULTS: ClassVar[tuple[str, ...]] = ()
    hang_seconds: float = 2.0
    slow_seconds: float = 0.3
    malformed_body: ClassVar[str | bytes] = '{"truncated": '
    malformed_content_type: ClassVar[str] = JSON
    malformed_status: ClassVar[int] = 200
    server_error_body: ClassVar[Any] = SERVER_ERROR_PAGE
    server_error_content_type: ClassVar[str] = "text/html"

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.url = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the protocol (subclasses) -------------------------------------------------------------
    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Answer | tuple[Any, ...]:
        """One request of the protocol (``path`` includes any query string): an ``Answer`` or
        ``(status, body[, content_type])``. Mutates the fake's state."""
        raise NotImplementedError

    def answer(self, request: RecordedRequest) -> Answer:
        target = f"{request.path}?{request.query}" if request.query else request.path
        found = self.handle(request.method, target, request.headers, request.body)
        return found if isinstance(found, Answer) else Answer(*found)

    def decline_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        raise AssertionError(f"{type(self).__name__} has no decline answer")

    def queue_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        raise AssertionError(f"{type(self).__name__} has no queued answer")

    def server_error_answer(self, request: RecordedRequest) -> Answer:
        return Answer(500, self.server_error_body, self.server_error_content_type)

    def malformed_answer(self, request: RecordedRequest) -> Answer:
        return Answer(self.malformed_status, self.malformed_body, self.malformed_content_type)

    def extra_fault(self, fault: Fault, request: RecordedRequest) -> Answer | None:
        """Answer a protocol-only fault kind; None resets the connection."""
        raise AssertionError(f"unknown fault {fault.kind!r}")

    def encode(self, value: Any) -> bytes:
        """A JSON body; Decimals written exactly."""
        return _encode(value).encode()

    # -- control -------------------------------------------------------------------------------
    def fail_next(
        self,
        kind: str,
        *,
        method: str | None = None,
        path: str | None = None,
        suffix: str | None = None,
        apply: bool = False,
        status: int | None = None,
        message: str = "",
        times: int = 1,
    ) -> None:
        """The next ``times`` requests matching ``method``/``path``/``suffix`` meet ``kind``."""
        assert kind in FAULTS or kind in self.EXTRA_FAULTS, kind
        with self.lock:
            self.faults.append(Fault(kind, method, path, suffix, apply, status, message, times))

    def requests_to(
        self, path: str | None = None, *, method: str | None = None, suffix: str | None = None
    ) -> list[RecordedRequest]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (path is None or r.path == path)
                and (method is None or r.method == method)
                and (suffix is None or r.path.endswith(suffix))
            ]

    def fault_matches(self, fault: Fault, method: str, path: str) -> bool:
        """Whether ``fault`` is for this request (a protocol may read ``suffix`` its own way)."""
        return fault.matches(method, path)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for index, fault in enumerate(self.faults):
                if self.fault_matches(fault, method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.pop(index)
                    return fault
        return None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> FakeGateway:
        fake = self

        class Handler(_Handler):
            gateway = fake

        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def release_hanging(self) -> None:
        """End every request still hanging on a ``timeout`` fault (between tests)."""
        self.stopping.set()
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serving(self) -> Iterator[FakeGateway]:
        """For a fixture: ``yield from FakeX().serving()``."""
        self.start()
        try:
            yield self
        finally:
            self.stop()


class _Headers(dict[str, str]):
    """Request headers as sent, looked up without regard to case."""

    def _key(self, name: str) -> str:
        for key in self.keys():
            if key.lower() == name.lower():
                return key
        return name

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(self._key(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(self._key(name))

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(self._key(name), default)


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    return json.dumps(value)


class _Handler(BaseHTTPRequestHandler):
    gateway: FakeGateway
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return None

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        fake = self.gateway
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        headers = dict(self.headers.items())
        request = RecordedRequest(method, path, _Headers(headers), body, query)
        with fake.lock:
            fake.requests.append(request)
        fault = fake.take_fault(method, path)
        if fault is not None and not fault.apply:
            self._fault(fault, request, None)
            return
        answer = fake.answer(request)
        fault = fault or answer.fault
        if fault is not None:
            self._fault(fault, request, answer)
            return
        self._reply(answer)

    def _fault(self, fault: Fault, request: RecordedRequest, answer: Answer | None) -> None:
        fake = self.gateway
        kind = fault.kind
        if kind == "timeout":
            fake.stopping.wait(fake.hang_seconds)  # the event of this moment (release_hanging)
            self._reset()
        elif kind == "reset":
            self._reset()
        elif kind == "500":
            self._reply(fake.server_error_answer(request))
        elif kind == "malformed":
            self._reply(fake.malformed_answer(request))
        elif kind == "slow":
            fake.stopping.wait(fake.slow_seconds)
            self._reply(answer or fake.answer(request))
        elif kind == "decline":
            self._reply(fake.decline_answer(fault, request))
        elif kind == "queue":
            self._reply(fake.queue_answer(fault, request))
        else:
            extra = fake.extra_fault(fault, request)
            if extra is None:
                self._reset()
            else:
                self._reply(extra)

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def _reply(self, answer: Answer) -> None:
        reply = answer.body
        if reply is None:
            data, kind = b"", answer.content_type or JSON
        elif isinstance(reply, (dict, list)):
            data, kind = self.gateway.encode(reply), answer.content_type or JSON
        elif isinstance(reply, bytes):
            data, kind = reply, answer.content_type or "application/octet-stream"
        else:
            data, kind = str(reply).encode(), answer.content_type or "text/plain; charset=utf-8"
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (answer.headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass
