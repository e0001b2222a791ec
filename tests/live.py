"""A real uvicorn server on a loopback port, in a background thread, for clients that need a
socket (the official ottu-py SDK, schemathesis)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import uvicorn

from payops.api.app import create_app
from payops.api.server import server_config
from payops.config import Settings
from payops.context import AppContext

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    port = free_port()
    settings = settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    # The configuration `payops serve` runs with (httptools, header limit).
    server = uvicorn.Server(
        server_config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("live server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def run_with_context(settings: Settings, work: Callable[[AppContext], Awaitable[T]]) -> T:
    """Run service-layer code (seeding, inspection) beside a live server, on its own loop."""

    async def main() -> T:
        ctx = AppContext.build(settings)
        try:
            return await work(ctx)
        finally:
            await ctx.aclose()

    return asyncio.run(main())
