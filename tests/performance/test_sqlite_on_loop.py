"""SQLite's operation writes run on the event loop's thread (db/sqlite_on_loop.py), so they must
never wait there: a file locked by another process sends the transaction to aiosqlite's thread,
which waits without holding up the loop, and the WAL is checkpointed off the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from payops.context import AppContext
from payops.db import sqlite_on_loop
from tests.e2e import post_op
from tests.helpers import Seed

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _database_file(ctx: AppContext) -> Path:
    database = ctx.db.write_engine.url.database
    assert database is not None
    return Path(database)


async def _loop_stalls_while(task: asyncio.Task[object], seconds: float) -> float:
    """The longest the event loop went without running this coroutine while ``task`` ran."""
    worst = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not task.done():
        before = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - before - 0.01)
    return worst


async def test_a_file_locked_by_another_process_holds_up_nothing_but_that_refund(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext
) -> None:
    auth = await seed.api_key()
    await seed.transaction("10.000", "KWD", order_no="ORD-LOCKED")
    assert (
        await post_op(client, auth, "refund", "1.000", order_no="ORD-LOCKED")
    ).status_code == 200

    other = sqlite3.connect(_database_file(ctx), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the file
    try:
        refund = asyncio.create_task(
            post_op(client, auth, "refund", "1.000", order_no="ORD-LOCKED")
        )
        stall = await _loop_stalls_while(refund, 1.0)
        assert not refund.done()  # it waits for the file (on a thread)…
        # …not the loop (a loop connection that waited would stand still the whole second).
        assert stall < 0.5, f"the event loop stood still for {stall:.3f} s"
    finally:
        other.execute("COMMIT")
        other.close()
    response = await asyncio.wait_for(refund, 30)
    assert response.status_code == 200, response.text
    assert (await seed.find("ORD-LOCKED")).refunded == 2000


async def test_the_wal_is_checkpointed_and_starts_over(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_on_loop, "CHECKPOINT_EVERY", 20)
    auth = await seed.api_key()
    await seed.transaction("1000.000", "KWD", order_no="ORD-WAL")
    wal = _database_file(ctx).with_name(_database_file(ctx).name + "-wal")
    sizes = []
    for _ in range(120):  # 240 write transactions: twelve checkpoints
        response = await post_op(client, auth, "refund", "1.000", order_no="ORD-WAL")
        assert response.status_code == 200, response.text
        sizes.append(wal.stat().st_size if wal.exists() else 0)
    await asyncio.sleep(0.2)  # the last checkpoint's thread
    # Without checkpoints (the loop's connection never makes one) the WAL only grows: here it
    # stays within what about twenty transactions write, and the money adds up.
    assert max(sizes) < 1_000_000, max(sizes)
    assert (await seed.find("ORD-WAL")).refunded == 120_000
