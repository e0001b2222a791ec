"""Per-request observation: request id, Prometheus counts and latency, one JSON log line.

A plain ASGI middleware. Starlette's ``BaseHTTPMiddleware`` (``@app.middleware("http")``) ran
every request through an extra task group and memory streams, a measurable part of a refund's
CPU time (docs/performance.md)."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import orjson
from prometheus_client import Counter, Histogram
from starlette.requests import ClientDisconnect

from payops import logging as payops_logging
from payops.domain import messages

log = logging.getLogger("payops.http")
# Logged and counted, as nginx does, for a request whose client went away before it was read
# whole (nothing was done and there is nobody to answer): not a server error.
CLIENT_CLOSED_REQUEST = 499


class ObserveRequests:
    def __init__(
        self, app: Any, requests_total: Counter, latency: Histogram, server_errors: Counter
    ) -> None:
        self.app = app
        self.requests_total = requests_total
        self.latency = latency
        self.server_errors = server_errors

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if incoming.isalnum() and len(incoming) <= 64 else secrets.token_hex(8)
        token = payops_logging.request_id.set(rid)
        started = time.perf_counter()
        status: list[int] = []

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            try:
                await self.app(scope, receive, send_with_id)
            except ClientDisconnect:
                if status:
                    raise
                status.append(CLIENT_CLOSED_REQUEST)
            except Exception as exc:
                if status:  # the answer had begun: nothing more can be sent
                    raise
                # One log line (with the traceback and the request id), and a 500 that carries
                # the same id; the server does not log it a second time.
                log.exception("unhandled error: %s", type(exc).__name__)
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send_with_id(
                    {
                        "type": "http.response.body",
                        "body": orjson.dumps({"detail": messages.SERVER_ERROR}),
                    }
                )
            if status:
                route = getattr(scope.get("route"), "path", "unmatched")
                elapsed = time.perf_counter() - started
                self.requests_total.labels(route, scope["method"], str(status[0])).inc()
                if status[0] >= 500:
                    self.server_errors.labels(route, str(status[0])).inc()
                self.latency.labels(route).observe(elapsed)
                if log.isEnabledFor(logging.INFO):
                    log.info(
                        "request",
                        extra={
                            "method": scope["method"],
                            "path": route,
                            "status": status[0],
                            "duration_ms": round(elapsed * 1000, 1),
                        },
                    )
        finally:
            payops_logging.request_id.reset(token)
