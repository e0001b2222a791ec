"""How `payops serve` runs the app under uvicorn: an HTTP implementation with a limit on the
request line and headers (decisions §13: over 16 KiB → 431).

uvicorn's httptools protocol buffers request headers without any limit: a client sending a few
requests with megabyte headers grows the process for good. ``HeaderLimitedHttpToolsProtocol``
(what `serve` uses) counts a request's head as the parser reports it and refuses it with 431
(Request Header Fields Too Large) once it exceeds the limit, whether it arrived whole or is still
streaming in, before the app sees it. httptools (a C parser) costs less CPU per request than h11
(docs/performance.md). ``HeaderLimitedH11Protocol`` does the same with h11 (used before issue 11;
kept as the reference the httptools protocol's behaviour was matched to).
"""

from __future__ import annotations

from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


_REFUSAL_431 = b"".join((
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
    b"content-type: text/plain; charset=utf-8\r\n",
    b"content-length: 33\r\n",
    b"connection: close\r\n\r\n",
    b"Request header fields too large.",
))


class _HeadTooLarge(Exception):
    pass


class HeaderLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limit on a request's head (``MAX_HEADER_BYTES``).

    The parser reports the target and each header once complete: their sizes are added up as
    ``_head_size`` (measured as ``_head_size`` measures h11's request) and checked when the head
    is complete. A header still streaming in stays inside the parser, so every read that arrives
    while a head is open, and leaves it open (all of it is head), is counted as well: past the
    limit the request is refused without waiting for the rest (the parser then holds at most
    the limit and one read)."""

    max_head_bytes = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_open = False
        self._head_size = 0
        self._head_reads = 0
        self._too_large = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_size = len(b"  HTTP/1.1\r\n") + 2  # request line and the blank line
        self._head_reads = 0

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open = False
        if self._head_size + len(self.parser.get_method()) > self.max_head_bytes:
            self._too_large = True
            raise _HeadTooLarge()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._too_large:
            return
        was_open = self._head_open
        try:
            super().data_received(data)  # answers 400 itself for what the parser refuses
        except _HeadTooLarge:  # pragma: no cover - httptools wraps callback errors
            self._too_large = True
        if not self._too_large and was_open and self._head_open:
            # All of this read is head (it began open and left it open).
            self._head_reads += len(data)
            self._too_large = self._head_reads > self.max_head_bytes
        if self._too_large:
            self._refuse()

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:  # the parser's own refusals (a malformed request)
            super().send_400_response(msg)

    def _refuse(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(_REFUSAL_431)
            self.transport.close()


def server_config(app: Any, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration `payops serve` runs with (tests' live servers use it too)."""
    return uvicorn.Config(app, host=host, port=port, http=HeaderLimitedHttpToolsProtocol,
                          **options)
