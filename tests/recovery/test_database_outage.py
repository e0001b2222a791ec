"""A database outage never turns into a 500 or a lost operation (decisions §13).

PostgreSQL is reached through a small TCP proxy on loopback that the test cuts (every open
connection closed, new ones refused) and restores; the shared server itself is never touched.
A read-only SQLite file plays a database that is reachable but cannot be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from payops.api.app import create_app
from payops.operations.reconciler import reconcile_once
from tests.conftest import BACKENDS, make_settings
from tests.helpers import Seed

ORDER = "ORD-1"
PATH = f"/b/pbl/v1/operation/{ORDER}"


class CuttableProxy:
    """Forwards a loopback port to PostgreSQL until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self.writers |= {client_writer, upstream_writer}
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer)
        )

    async def cut(self) -> None:
        """Refuse new connections and drop every open one, as a database crash would."""
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def restore(self) -> None:
        await self.start()  # the same port again


@pytest.fixture
async def proxied_pg(postgres_url: str, tmp_path: Path) -> AsyncIterator[tuple[Any, CuttableProxy]]:
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL backend not selected")
    from tests.conftest import _truncate

    await _truncate(postgres_url)
    url = make_url(postgres_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    # The sandbox takes 3 s per call: time to cut the database during a refund's gateway call.
    settings = make_settings(tmp_path, through_proxy, sandbox_latency_ms=3000)
    application = create_app(settings)
    try:
        async with LifespanManager(application):
            yield application, proxy
    finally:
        with contextlib.suppress(Exception):
            await proxy.cut()


async def test_outage_during_the_gateway_call_answers_504_then_503_then_reconciles(
    proxied_pg: tuple[Any, CuttableProxy],
) -> None:
    application, proxy = proxied_pg
    ctx = application.state.ctx
    seed = Seed(ctx)
    auth = await seed.api_key()
    await seed.transaction("100.000", order_no=ORDER)
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/readyz")).status_code == 200
        refund = asyncio.create_task(
            client.post(
                PATH,
                json={"operation": "refund", "amount": "10.000"},
                headers={**auth, "Tracking-Key": "outage-1"},
            )
        )
        # Cut once the intent is committed, while the gateway is being called.
        for _ in range(200):
            if await seed.operations(ORDER) or refund.done():
                break
            await asyncio.sleep(0.02)
        assert not refund.done()
        [intent] = await seed.operations(ORDER)
        assert intent.state == "processing"
        await proxy.cut()

        response = await refund
        # The gateway refunded, but the answer could not be recorded: pending, never 500.
        assert response.status_code == 504, response.text
        body = response.json()
        assert (body["result"], body["operation"]) == ("pending", "refund")
        reference = body["reference_number"]

        # New requests while the database is down: 503 with Retry-After, nothing else.
        for attempt in (
            client.post(PATH, json={"operation": "refund", "amount": "1.000"}, headers=auth),
            client.post("/b/pbl/v1/inquiry/ORD-1", headers=auth),
        ):
            down = await attempt
            assert down.status_code == 503, down.text
            assert down.headers["Retry-After"].isdigit()
            assert down.json() == {
                "detail": "The service cannot reach its database; try again shortly."
            }
        assert (await client.get("/readyz")).status_code == 503

        await proxy.restore()
        assert (await client.get("/readyz")).status_code == 200
        # The reconciler learns the gateway's truth once the call's lease has run out.
        async with ctx.db.write() as session:
            from sqlalchemy import update

            from payops.db.models import Operation

            await session.execute(update(Operation).values(claimed_until=None))
        summary = await reconcile_once(ctx)
        assert dict(summary.outcomes) == {"succeeded": 1}
        [op] = await seed.operations(ORDER)
        assert (op.reference_number, op.state, op.amount) == (reference, "succeeded", 10_000)
        parent = await seed.find(ORDER)
        assert parent is not None and parent.refunded == 10_000
        replay = await client.post(
            PATH,
            json={"operation": "refund", "amount": "10.000"},
            headers={**auth, "Tracking-Key": "outage-1"},
        )
        assert replay.status_code == 200, replay.text
        assert replay.json()["reference_number"] == reference


async def test_readyz_reports_a_database_that_cannot_be_written(
    tmp_path: Path,
    sqlite_template: Path,
) -> None:
    if "sqlite" not in BACKENDS:
        pytest.skip("SQLite backend not selected")
    path = tmp_path / "payops.sqlite3"
    shutil.copyfile(sqlite_template, path)
    writable = make_settings(tmp_path, f"sqlite+aiosqlite:///{path}")
    read_only = make_settings(tmp_path, f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true")
    for settings, status in ((writable, 200), (read_only, 503)):
        application = create_app(settings)
        async with LifespanManager(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                ready = await client.get("/readyz")
                assert ready.status_code == status, ready.text
                if status == 503:
                    # Requests that must write are refused the same way, never with a 500.
                    seedless = await client.post(
                        "/b/pbl/v1/operation/ORD-1",
                        json={"operation": "refund"},
                        headers={"Authorization": "Api-Key nope.nope"},
                    )
                    assert seedless.status_code in (401, 503), seedless.text
