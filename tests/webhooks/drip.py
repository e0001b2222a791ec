"""A hostile webhook receiver on loopback: it reads the request, sends a status line promising a
large body, then drips that body one byte per ``interval`` for as long as the sender listens.

It records every connection (event id, try number, when it opened and closed, bytes dripped), so
a test can count how many sends of one event overlapped and how many ran at once overall.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Connection:
    event_id: str
    attempt: str
    opened: float
    closed: float | None = None
    dripped: int = 0


@dataclass
class DripReceiver:
    interval: float = 1.0
    promised_bytes: int = 100_000
    connections: list[Connection] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def max_overlap(self, event_id: str | None = None) -> int:
        """The most connections open at one moment (for one event id, or overall)."""
        with self.lock:
            chosen = [c for c in self.connections if event_id is None or c.event_id == event_id]
            moments = sorted(
                [(c.opened, 1) for c in chosen]
                + [(c.closed if c.closed is not None else float("inf"), -1) for c in chosen],
                key=lambda m: (m[0], m[1]),
            )
        open_now = best = 0
        for _, step in moments:
            open_now += step
            best = max(best, open_now)
        return best

    def event_ids(self) -> set[str]:
        with self.lock:
            return {c.event_id for c in self.connections}

    def tries(self, event_id: str) -> list[Connection]:
        with self.lock:
            return [c for c in self.connections if c.event_id == event_id]


def _read_request(conn: socket.socket) -> dict[str, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return headers


@contextmanager
def dripping(receiver: DripReceiver) -> Iterator[DripReceiver]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    stopping = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            headers = _read_request(conn)
            if "x-payops-event-id" not in headers:
                return  # the sender gave up before its request was complete
            record = Connection(
                headers.get("x-payops-event-id", ""),
                headers.get("x-payops-attempt", ""),
                time.monotonic(),
            )
            with receiver.lock:
                receiver.connections.append(record)
            try:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {receiver.promised_bytes}\r\n\r\n".encode()
                )
                while not stopping.is_set() and record.dripped < receiver.promised_bytes:
                    conn.sendall(b" ")
                    record.dripped += 1
                    # Wait for the next byte, but notice at once when the sender hangs up.
                    readable, _, _ = select.select([conn], [], [], receiver.interval)
                    if readable and not conn.recv(1):
                        break
            except OSError:
                pass  # the sender hung up: exactly what a deadline should do
            finally:
                record.closed = time.monotonic()

    def accept_loop() -> None:
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.getsockname()[1]}/hooks/payops"
    try:
        yield receiver
    finally:
        stopping.set()
        thread.join(timeout=5)
        server.close()
