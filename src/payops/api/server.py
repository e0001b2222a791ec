"""How `payops serve` runs the app under uvicorn: its httptools (llhttp) HTTP implementation, with a
limit on the request line and headers.

Neither llhttp nor uvicorn limits a request's head: httptools gathers a header's name and value,
and uvicorn the URL and the header list, in memory until each ends, so a client sending a few
requests with megabyte headers grew the process for good. This protocol holds a head to
``MAX_HEADER_BYTES`` in two ways:

- while a head is open (from the end of the previous message to the end of this head), bytes go
  to the parser in pieces no larger than what is left of the limit, and a head still open past
  the limit is refused: nothing much larger than the limit is ever held for it;
- a complete head is measured once parsed (a head that arrived with the end of the previous
  message in one read was not counted whole above).

Over the limit → 431 (Request Header Fields Too Large) and the connection closed, before the app
runs. (Until the fourth round of issue 11, `serve` ran uvicorn's pure-Python h11 implementation
for this limit; httptools costs less per request, docs/performance.md.)
"""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Request line plus every header, in bytes (decisions §13).
MAX_HEADER_BYTES = 16 * 1024
TOO_LARGE_BODY = b"Request header fields too large."


class HeadTooLarge(Exception):
    """Raised inside a parser callback; httptools hands it back as an HttpParserError."""


def head_size(url: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """A parsed head's size as sent (the method and version counted generously)."""
    line = len(url) + len(b"OPTIONS  HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in headers) + 2


class HeaderLimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._head_open = True  # a new connection starts with a head
        self._head_bytes = 0
        self._parsed_head_too_large = False
        self._refused = False

    def data_received(self, data: bytes) -> None:
        while data and not self._refused:
            if not self._head_open:  # in a body: the app's own limits apply
                super().data_received(data)
                return
            allowance = MAX_HEADER_BYTES - self._head_bytes + 1
            piece, data = data[:allowance], data[allowance:]
            self._head_bytes += len(piece)
            super().data_received(piece)
            if self._head_open and self._head_bytes > MAX_HEADER_BYTES:
                self._refuse_head()

    def on_headers_complete(self) -> None:
        self._head_open = False
        if head_size(self.url, self.headers) > MAX_HEADER_BYTES:
            self._parsed_head_too_large = True
            raise HeadTooLarge
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_open = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        if self._parsed_head_too_large:  # raised by on_headers_complete
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def on_response_complete(self) -> None:
        if self._refused and not self.pipeline:
            self._send_431()
        else:
            super().on_response_complete()

    def _refuse_head(self) -> None:
        """Refuse the head being read: at once, or, when requests before it are still being
        answered (pipelined), after their answers, reading nothing more meanwhile."""
        if self._refused:
            return
        self._refused = True
        if self.transport.is_closing():
            return
        if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
            self.flow.pause_reading()
        else:
            self._send_431()

    def _send_431(self) -> None:
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(TOO_LARGE_BODY)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + TOO_LARGE_BODY
        )
        self.transport.close()


def server_config(app: Any, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration `payops serve` runs with (tests' live servers use it too)."""
    return uvicorn.Config(app, host=host, port=port, http=HeaderLimitedHttpToolsProtocol, **options)
