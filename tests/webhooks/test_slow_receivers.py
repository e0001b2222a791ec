"""Webhook delivery against hostile and failing receivers: a total deadline per send, a bounded
concurrent pool across transactions, no concurrent duplicate send, DNS failures retried."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from payops.config import Settings
from payops.context import AppContext
from payops.webhooks.delivery import deliver_due
from tests.helpers import Seed
from tests.webhooks.drip import DripReceiver, dripping


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "webhook_timeout_seconds": 1.0,
        "webhook_backoff_base_seconds": 0,
        "webhook_max_attempts": 2,
    }


async def payment_events(seed: Seed, url: str, count: int) -> list[str]:
    """``count`` paid transactions whose payment webhook goes to ``url``; their event ids."""
    for number in range(count):
        await seed.transaction("10.000", order_no=f"ORD-{number}", webhook_url=url)
    events = await seed.outbox()
    assert len(events) == count
    return [event.event_id for event in events]


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAYOPS_")}
    env.update(
        {
            "PAYOPS_DATA_DIR": str(settings.data_dir),
            "PAYOPS_DATABASE_URL": settings.effective_database_url,
            "PAYOPS_SECRET_KEY": settings.secret_key,
            "PAYOPS_WEBHOOK_ALLOW_PRIVATE": "true",
            "PAYOPS_WEBHOOK_TIMEOUT_SECONDS": "3",
            "PAYOPS_WEBHOOK_BACKOFF_BASE_SECONDS": "0",
            "PAYOPS_WEBHOOK_MAX_ATTEMPTS": "2",
            **extra,
        }
    )
    return env


async def test_concurrent_deliver_commands_against_a_drip_receiver(
    seed: Seed, ctx: AppContext, settings: Settings, tmp_path: Path
) -> None:
    """Two `payops webhooks deliver` processes, four transactions, a receiver that answers one
    byte per half second: every send is cut at its deadline, no event is ever sent by both
    processes at once, and the four transactions are sent side by side."""
    with dripping(DripReceiver(interval=0.5)) as receiver:
        event_ids = await payment_events(seed, receiver.url, 4)
        command = [sys.executable, "-m", "payops.cli.main", "webhooks", "deliver"]
        workers = [
            subprocess.Popen(
                command,
                env=cli_env(settings),
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        try:
            # Before the fix one send lasted as long as the receiver dripped (here 14 hours).
            outputs = [worker.communicate(timeout=120) for worker in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        for worker, (_out, errors) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, errors.decode()

    assert receiver.event_ids() == set(event_ids)
    for event_id in event_ids:
        tries = receiver.tries(event_id)
        assert sorted(t.attempt for t in tries) == ["1", "2"]
        assert receiver.max_overlap(event_id) == 1, "one event sent twice at the same time"
    assert receiver.max_overlap() >= 2, "transactions were sent one after another"
    for connection in receiver.connections:
        assert connection.closed is not None
        assert connection.dripped < 30, "a send outlived its deadline"
    for event in await seed.outbox():
        assert event.state == "failed" and event.attempts == 2
        assert event.last_error.startswith("timeout")


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "webhook_timeout_seconds": 0.5,
            "webhook_max_attempts": 1,
            "webhook_concurrency": 3,
        }
    ],
)
async def test_one_pass_sends_transactions_concurrently_up_to_the_pool_size(
    seed: Seed, ctx: AppContext
) -> None:
    with dripping(DripReceiver(interval=0.2)) as receiver:
        event_ids = await payment_events(seed, receiver.url, 7)
        assert await deliver_due(ctx) == {"failed": 7}
    assert receiver.event_ids() == set(event_ids)
    assert receiver.max_overlap() == 3


async def test_an_unresolvable_host_is_retried_not_failed(seed: Seed, ctx: AppContext) -> None:
    await payment_events(seed, "http://payops-webhook-test.invalid/hook", 1)
    assert await deliver_due(ctx) == {"pending": 1}
    [event] = await seed.outbox()
    assert event.state == "pending" and event.attempts == 1
    assert event.last_error.startswith("dns:")
    assert await deliver_due(ctx) == {"failed": 1}  # the second and last try (max 2)
    [event] = await seed.outbox()
    assert event.attempts == 2 and event.last_error.startswith("dns:")


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": False}])
async def test_a_private_target_is_still_refused_for_good_at_delivery(
    seed: Seed, ctx: AppContext
) -> None:
    # Stored before the input check existed (or DNS changed since): delivery checks again.
    await payment_events(seed, "http://127.0.0.1:9/hook", 1)
    assert await deliver_due(ctx) == {"failed": 1}
    [event] = await seed.outbox()
    assert event.attempts == 1 and event.last_error.startswith("refused:")
