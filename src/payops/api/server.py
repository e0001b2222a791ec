"""How `payops serve` runs the app under uvicorn: the h11 HTTP implementation, with a limit on
the request line and headers.

uvicorn's default parser (httptools) buffers request headers without any limit: a client sending
a few requests with megabyte headers grows the process for good. h11 refuses a request whose
request line and headers exceed ``h11_max_incomplete_event_size`` before the app sees it. uvicorn
answers that refusal with a generic 400; this protocol answers 431 (Request Header Fields Too
Large) as h11 suggests, and closes the connection.
"""

from __future__ import annotations

from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

# Request line plus every header, in bytes (decisions §13).
MAX_HEADER_BYTES = 16 * 1024


class _Connection(h11.Connection):
    """h11's connection that also refuses a complete request head over the limit, and remembers
    the status h11 suggests for the last protocol error.

    h11 limits only what it buffers while a head is incomplete: a head that arrives whole in one
    read (up to 256 KiB) would pass. Its size is checked once parsed, before the app runs."""

    refusal_status = 400

    def __init__(self, role: Any, max_head_bytes: int) -> None:
        super().__init__(role, max_head_bytes)
        self.max_head_bytes = max_head_bytes

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as error:
            self.refusal_status = error.error_status_hint
            raise
        if isinstance(event, h11.Request) and _head_size(event) > self.max_head_bytes:
            self.refusal_status = 431
            raise h11.RemoteProtocolError("Request header fields too large",
                                          error_status_hint=431)
        return event


def _head_size(request: h11.Request) -> int:
    line = len(request.method) + len(request.target) + len(b"  HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers) + 2


class HeaderLimitedH11Protocol(H11Protocol):
    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.conn = _Connection(h11.SERVER, config.h11_max_incomplete_event_size or MAX_HEADER_BYTES)

    def send_400_response(self, msg: str) -> None:
        if getattr(self.conn, "refusal_status", 400) != 431:
            super().send_400_response(msg)
            return
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        for event in (h11.Response(status_code=431, headers=headers,
                                   reason=b"Request Header Fields Too Large"),
                      h11.Data(data=b"Request header fields too large."),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def server_config(app: Any, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration `payops serve` runs with (tests' live servers use it too)."""
    return uvicorn.Config(app, host=host, port=port, http=HeaderLimitedH11Protocol,
                          h11_max_incomplete_event_size=MAX_HEADER_BYTES, **options)
