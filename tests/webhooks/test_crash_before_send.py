"""A state change is committed with its webhook in the outbox; if the server dies before sending,
the webhook goes out after the restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from payops.config import Settings
from payops.webhooks import outbox
from tests.helpers import Seed
from tests.live import free_port
from tests.webhooks.receiver import Receiver, receiving


def start(settings: Settings, port: int, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
    environ.update(
        {
            "PAYOPS_DATABASE_URL": settings.effective_database_url,
            "PAYOPS_DATA_DIR": str(settings.data_dir),
            "PAYOPS_SECRET_KEY": settings.secret_key,
            "PAYOPS_SANDBOX_LEDGER_PATH": str(settings.effective_sandbox_ledger),
            "PAYOPS_RECONCILE_INTERVAL_SECONDS": "0",
            "PAYOPS_EXPIRY_INTERVAL_SECONDS": "0",
            "PAYOPS_WEBHOOK_ALLOW_PRIVATE": "true",
            **env,
        }
    )
    process = subprocess.Popen(
        # One process, so that SIGKILL stops the whole server.
        [
            str(Path(sys.executable).parent / "payops"),
            "serve",
            "--port",
            str(port),
            "--no-migrate",
            "--workers",
            "1",
        ],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)


async def test_webhook_written_before_a_kill_is_delivered_after_restart(
    seed: Seed, settings: Settings
) -> None:
    auth = await seed.api_key()
    with receiving(Receiver()) as receiver:
        await seed.transaction("20.000", order_no="ORD-1")
        async with seed.ctx.db.write() as session:
            await outbox.set_merchant_setting(session, outbox.OPERATIONS_URL_SETTING, receiver.url)
        port = free_port()
        # Delivery effectively off: the refund's webhook is committed but never sent ...
        server = start(settings, port, PAYOPS_WEBHOOK_INTERVAL_SECONDS="0")
        try:
            response = httpx.post(
                f"http://127.0.0.1:{port}/b/pbl/v1/operation/ORD-1",
                json={"operation": "refund", "amount": "2.000"},
                headers=auth,
                timeout=30,
            )
            assert response.status_code == 200, response.text
        finally:
            server.send_signal(signal.SIGKILL)  # ... and the process dies without a chance to
            server.wait(timeout=30)
        assert receiver.received == []
        # After a restart with delivery on, the webhook arrives.
        server = start(settings, port, PAYOPS_WEBHOOK_INTERVAL_SECONDS="0.2")
        try:
            deadline = time.monotonic() + 30
            while not receiver.delivered and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    assert len(receiver.delivered) == 1
    body = receiver.delivered[0].body
    assert body["operation"] == "refund" and body["amount"] == "2.000"
