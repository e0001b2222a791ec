"""Scale-out proof (issue 11): two `payops serve` processes on one PostgreSQL database agree on
money, on inquiry throttling and on configuration (their caches follow the database's versions),
because all of it lives in the database, not in a process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from payops.config import Settings
from payops.context import AppContext
from payops.db.models import GatewayConfig, GatewayInquiry, Operation
from payops.webhooks import outbox
from payops.webhooks.signing import sign
from tests.conftest import _truncate, make_settings
from tests.helpers import PENDING_CARD, Seed
from tests.live import free_port, run_with_context

BIN = Path(sys.executable).parent


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
    env.update(
        {
            "PAYOPS_DATABASE_URL": settings.effective_database_url,
            "PAYOPS_DATA_DIR": str(settings.data_dir),  # one sandbox gateway ledger for both
            "PAYOPS_SECRET_KEY": settings.secret_key,
            "PAYOPS_RECONCILE_INTERVAL_SECONDS": "0",
            "PAYOPS_WEBHOOK_INTERVAL_SECONDS": "0",
            "PAYOPS_EXPIRY_INTERVAL_SECONDS": "0",
            "PAYOPS_DB_POOL_TOTAL": "10",
            "PAYOPS_LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env


@pytest.fixture
def pg_settings(postgres_url: str, tmp_path: Path) -> Settings:
    asyncio.run(_truncate(postgres_url))
    return make_settings(tmp_path, postgres_url)


def _start_two(env: dict[str, str]) -> Iterator[list[str]]:
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(2):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "payops"),
                        "serve",
                        "--workers",
                        "1",
                        "--port",
                        str(port),
                        "--no-migrate",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        for proc, url in zip(procs, urls, strict=True):
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "payops serve did not become ready"
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _fire(
    requests: list[tuple[str, str, dict[str, Any] | None]], auth: dict[str, str]
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits, headers=auth) as client:
        return await asyncio.gather(
            *(client.post(url + path, json=body) for url, path, body in requests)
        )


def test_two_processes_never_over_refund_one_order(pg_settings: Settings) -> None:
    async def seed(ctx: AppContext) -> dict[str, str]:
        s = Seed(ctx)
        auth = await s.api_key()
        await s.transaction("10.000", "KWD", order_no="ORD-2P")
        return auth

    auth = run_with_context(pg_settings, seed)
    refund = {"operation": "refund", "amount": "0.010"}
    for urls in _start_two(_env(pg_settings)):
        # 200 refunds of 0.070 on 10.000: exactly floor(10000 / 70) = 142 fit.
        responses = asyncio.run(
            _fire(
                [
                    (
                        urls[i % 2],
                        "/b/pbl/v1/operation/ORD-2P",
                        {"operation": "refund", "amount": "0.070"},
                    )
                    for i in range(200)
                ],
                auth,
            )
        )

        # Both processes have cached the merchant settings and the gateway configuration. A
        # change made elsewhere (here: a third process's context) applies in both at once.
        run_with_context(pg_settings, _rotate_hmac_key)
        signed = asyncio.run(
            _fire([(url, "/b/pbl/v1/operation/ORD-2P", refund) for url in urls], auth)
        )
        assert [r.status_code for r in signed] == [200, 200], [r.text for r in signed]
        for response in signed:
            body = response.json()
            assert body["signature"] == sign(
                {k: v for k, v in body.items() if k != "signature"}, "rotated-key"
            )
        run_with_context(pg_settings, _disable_refunds)
        refused = asyncio.run(
            _fire([(url, "/b/pbl/v1/operation/ORD-2P", refund) for url in urls], auth)
        )
        assert [r.status_code for r in refused] == [400, 400], [r.text for r in refused]
        responses += signed

    statuses = Counter(r.status_code for r in responses[:200])
    assert statuses == {200: 142, 400: 58}, statuses
    served_by = Counter(r.url.port for r in responses if r.status_code == 200)
    assert len(served_by) == 2, served_by  # both processes accepted refunds

    async def books(ctx: AppContext) -> tuple[int, list[Operation]]:
        s = Seed(ctx)
        parent = await s.find("ORD-2P")
        assert parent is not None
        return parent.refunded, await s.operations("ORD-2P")

    refunded, operations = run_with_context(pg_settings, books)
    succeeded = [op for op in operations if op.state == "succeeded"]
    assert refunded == 142 * 70 + 2 * 10 == sum(op.amount for op in succeeded)
    assert len(succeeded) == 144
    assert all(op.state in ("succeeded", "failed") for op in operations)
    references = sorted(r.json()["reference_number"] for r in responses if r.status_code == 200)
    assert references == sorted(op.reference_number for op in succeeded)


async def _rotate_hmac_key(ctx: AppContext) -> None:
    async with ctx.db.write() as session:
        await outbox.set_merchant_setting(session, outbox.HMAC_KEY_SETTING, "rotated-key")


async def _disable_refunds(ctx: AppContext) -> None:
    async with ctx.db.write() as session:
        config = await session.scalar(select(GatewayConfig))
        assert config is not None
        config.enabled_operations = [op for op in config.enabled_operations if op != "refund"]


def _gateway_inquiries(settings: Settings) -> int:
    async def count(ctx: AppContext) -> int:
        async with ctx.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(GatewayInquiry)))

    return run_with_context(settings, count)


THROTTLE = {
    "PAYOPS_INQUIRY_THROTTLE": "true",
    "PAYOPS_INQUIRY_THROTTLE_INITIAL_DELAY_SECONDS": "0",
    "PAYOPS_INQUIRY_THROTTLE_GAP_SECONDS": "3600",
}


def test_two_processes_share_the_per_transaction_inquiry_throttle(pg_settings: Settings) -> None:
    async def seed(ctx: AppContext) -> dict[str, str]:
        s = Seed(ctx)
        auth = await s.api_key()
        await s.transaction("10.000", "KWD", order_no="ORD-IQ", card=PENDING_CARD)
        return auth

    auth = run_with_context(pg_settings, seed)
    for urls in _start_two(_env(pg_settings, **THROTTLE)):
        responses = asyncio.run(
            _fire([(urls[i % 2], "/b/pbl/v1/inquiry/ORD-IQ", None) for i in range(20)], auth)
        )

    statuses = Counter(r.status_code for r in responses)
    # One inquiry reached the gateway (which settled the pending payment); every other one was
    # throttled, or answered from storage once the payment was known to be paid.
    assert set(statuses) <= {200, 429} and statuses[429] >= 1, statuses
    assert _gateway_inquiries(pg_settings) == 1


def test_two_processes_share_the_global_inquiry_throttle(pg_settings: Settings) -> None:
    async def seed(ctx: AppContext) -> dict[str, str]:
        s = Seed(ctx)
        auth = await s.api_key()
        for index in range(PARENTS):
            await s.transaction("10.000", "KWD", order_no=f"ORD-G{index}", card=PENDING_CARD)
        return auth

    auth = run_with_context(pg_settings, seed)
    env = _env(pg_settings, **THROTTLE, PAYOPS_INQUIRY_THROTTLE_GLOBAL_PER_MINUTE=str(LIMIT))
    for urls in _start_two(env):
        responses = asyncio.run(
            _fire(
                [(urls[i % 2], f"/b/pbl/v1/inquiry/ORD-G{i}", None) for i in range(PARENTS)], auth
            )
        )

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: LIMIT, 429: PARENTS - LIMIT}, statuses
    assert _gateway_inquiries(pg_settings) == LIMIT


PARENTS, LIMIT = 24, 5
