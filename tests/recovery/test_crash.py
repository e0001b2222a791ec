"""Crash recovery against a real server process (decisions §5, §6, §8).

For each crash point the server kills itself with SIGKILL in the middle of a refund: after the
intent is committed (the gateway was never called), after the gateway answered (nothing settled),
or after the settlement committed (the client never heard back). A restarted server and the
reconciler must then reach the one true outcome: the sandbox gateway's own ledger says what the
money did, the operation's final state agrees with it, the parent's totals move exactly once, and
a retry with the same Tracking-Key never calls the gateway a second time for one operation.

Every test runs on SQLite and PostgreSQL (the ``backend`` fixture).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from payops.config import Settings
from payops.context import AppContext
from payops.crashpoints import AFTER_GATEWAY, AFTER_INTENT, AFTER_SETTLE, POINTS
from payops.operations.reconciler import reconcile_once
from payops.transactions import repository
from tests.e2e import post_op
from tests.helpers import Seed

PAYOPS = Path(sys.executable).with_name("payops")
START_DEADLINE = 60.0
RECONCILE_DEADLINE = 30.0
ORDER = "ORD-1"
REFUND = "10.000"
REFUND_MINOR = 10_000
KEY = "refund-crash-1"
TRACKING_IN_PROGRESS = {
    "detail": "An operation with this Tracking-Key is in progress",
    "operation": "operation_tracking",
    "result": "failed",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
            "PAYOPS_DATABASE_URL": settings.effective_database_url,
            "PAYOPS_DATA_DIR": str(settings.data_dir),
            "PAYOPS_SECRET_KEY": settings.secret_key,
            "PAYOPS_SANDBOX_LEDGER_PATH": str(settings.effective_sandbox_ledger),
            "PAYOPS_SANDBOX_QUEUE_SECONDS": str(settings.sandbox_queue_seconds),
            "PAYOPS_GATEWAY_TIMEOUT_SECONDS": "5",
            "PAYOPS_RECONCILE_INTERVAL_SECONDS": "0",
            "PAYOPS_LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


class Servers:
    """Starts `payops serve` processes and guarantees none outlives the test."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def spawn(self, crash_point: str = "") -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        extra = {"PAYOPS_CRASH_POINT": crash_point} if crash_point else {}
        log = self.workdir / f"server-{len(self.procs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                # One process: the crash must take the whole server down (with several
                # workers the supervisor would replace the killed one).
                [str(PAYOPS), "serve", "--port", str(port), "--no-migrate", "--workers", "1"],
                cwd=self.workdir,
                env=server_env(self.settings, **extra),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    async def ready(self, proc: subprocess.Popen[bytes], base: str) -> None:
        """Wait for /healthz, bounded by START_DEADLINE."""
        log = self.logs[self.procs.index(proc)]
        deadline = time.monotonic() + START_DEADLINE
        async with httpx.AsyncClient(timeout=1.0) as probe:
            while True:
                try:
                    if (await probe.get(f"{base}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, f"server exited early:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"server did not start:\n{log.read_text()}"
                await asyncio.sleep(0.1)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


@pytest.fixture
def servers(settings: Settings, tmp_path: Path) -> Iterator[Servers]:
    pool = Servers(settings, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20.0) as client:
        yield client


def ledger_operations(settings: Settings) -> list[dict[str, Any]]:
    """What the sandbox gateway itself recorded (its own store, apart from PayOps's database)."""
    path = settings.effective_sandbox_ledger
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM operations ORDER BY created")]


async def reserved_refunds(ctx: AppContext, order_no: str = ORDER) -> int:
    async with ctx.db.read() as session:
        parent = await repository.find_parent(session, order_no=order_no)
        assert parent is not None
        return (await repository.reservations(session, parent.id))["refund"]


async def reconcile(ctx: AppContext) -> int:
    """One reconciler pass (what `payops reconcile --older-than 0` runs); how many it examined."""
    return (await reconcile_once(ctx)).examined


async def reconcile_until_settled(ctx: AppContext, seed: Seed) -> int:
    """Reconciler passes until the operation leaves `processing` (bounded). A reconciler may
    rightly wait out a lease the dead process's call held; returns how many were examined."""
    examined = 0
    deadline = time.monotonic() + RECONCILE_DEADLINE
    while True:
        examined += await reconcile(ctx)
        [op] = await seed.operations(ORDER)
        if op.state != "processing" or time.monotonic() > deadline:
            return examined
        await asyncio.sleep(0.25)


@pytest.mark.parametrize("point", POINTS)
async def test_crash_point_recovers_to_the_gateway_truth(
    point: str,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
    servers: Servers,
    http: httpx.AsyncClient,
) -> None:
    auth = await seed.api_key()
    refund = functools.partial(
        post_op, http, auth, "refund", REFUND, order_no=ORDER, tracking_key=KEY
    )
    parent = await seed.transaction("100.000", order_no=ORDER)
    assert parent.state == "paid"
    assert ledger_operations(settings) == []

    # 1. The refund reaches the server, which dies at the crash point: the client hears nothing.
    # The replacement server (no crash point) boots beside the doomed one to save start-up time;
    # it keeps no state of its own and is first used after the crash, so this is a restart.
    crashing, base = servers.spawn(crash_point=point)
    replacement, replacement_base = servers.spawn()
    await asyncio.gather(
        servers.ready(crashing, base), servers.ready(replacement, replacement_base)
    )
    with pytest.raises(httpx.TransportError):
        await refund(base_url=base)
    assert crashing.wait(timeout=20) == -signal.SIGKILL

    [op] = await seed.operations(ORDER)
    reference = op.reference_number
    assert op.tracking_key == KEY
    ledger = ledger_operations(settings)
    if point == AFTER_INTENT:
        assert op.state == "processing"
        assert ledger == [], "the gateway must not have been called before the crash"
    elif point == AFTER_GATEWAY:
        assert op.state == "processing"
        assert [(row["reference"], row["amount"]) for row in ledger] == [(reference, REFUND_MINOR)]
    else:
        assert op.state == "succeeded"
        assert [(row["reference"], row["amount"]) for row in ledger] == [(reference, REFUND_MINOR)]
    after_crash = await seed.find(ORDER)
    assert after_crash is not None
    assert after_crash.refunded == (REFUND_MINOR if point == AFTER_SETTLE else 0)
    # Until the outcome is known, the amount stays reserved.
    assert await reserved_refunds(ctx) == (0 if point == AFTER_SETTLE else REFUND_MINOR)

    # 2. Served again without the crash point; a retry before reconciliation must not call the
    #    gateway again: 409 while the outcome is open, the stored answer once it is settled.
    base = replacement_base
    early = await refund(base_url=base)
    if point == AFTER_SETTLE:
        assert early.status_code == 200, early.text
        assert early.json()["reference_number"] == reference
        assert early.json()["result"] == "success"
    else:
        assert early.status_code == 409, early.text
        assert early.json() == TRACKING_IN_PROGRESS
    assert len(ledger_operations(settings)) == len(ledger)
    assert len(await seed.operations(ORDER)) == 1

    # 3. The reconciler settles what is open, by asking the gateway about the reference (it runs
    #    in this process beside the restarted server, as `payops reconcile` would).
    examined = await reconcile_until_settled(ctx, seed)
    assert examined == (0 if point == AFTER_SETTLE else 1)
    [op] = await seed.operations(ORDER)
    settled = await seed.find(ORDER)
    assert settled is not None
    if point == AFTER_INTENT:
        assert op.state == "failed"
        assert settled.refunded == 0, "totals must not move for an operation the gateway never saw"
        assert ledger_operations(settings) == []
    else:
        assert op.state == "succeeded"
        assert settled.refunded == REFUND_MINOR
        assert len(ledger_operations(settings)) == 1
    assert await reserved_refunds(ctx) == 0
    assert await reconcile(ctx) == 0, "a settled operation is never asked about again"

    # 4. The retry with the same Tracking-Key after reconciliation.
    retry = await refund(base_url=base)
    assert retry.status_code == 200, retry.text
    body = retry.json()
    assert body["result"] == "success"
    assert body["txn"]["state"] == "refunded"
    ops = await seed.operations(ORDER)
    final = await seed.find(ORDER)
    assert final is not None
    assert final.refunded == REFUND_MINOR, "the refund must count exactly once"
    ledger = ledger_operations(settings)
    assert len(ledger) == 1, "the gateway must have performed the refund exactly once"
    if point == AFTER_INTENT:
        # The failed operation freed the key: the retry ran as a new operation, once.
        assert [o.state for o in ops] == ["failed", "succeeded"]
        assert body["reference_number"] == ops[1].reference_number != reference
        assert ledger[0]["reference"] == ops[1].reference_number
    else:
        # The stored response: same reference, no new operation, no new gateway call.
        assert [o.state for o in ops] == ["succeeded"]
        assert body["reference_number"] == reference
        assert ledger[0]["reference"] == reference
    assert await reserved_refunds(ctx) == 0

    # A second retry is answered from storage too (nothing moves).
    again = await refund(base_url=base)
    assert again.status_code == 200, again.text
    assert again.json()["reference_number"] == body["reference_number"]
    assert len(ledger_operations(settings)) == 1
    assert (await seed.find(ORDER)).refunded == REFUND_MINOR  # type: ignore[union-attr]


def test_crash_points_are_the_documented_three() -> None:
    assert set(POINTS) == {AFTER_INTENT, AFTER_GATEWAY, AFTER_SETTLE}
