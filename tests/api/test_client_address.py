"""Whose address a failed login counts against (PAYOPS_TRUSTED_PROXIES, docs/security.md):
X-Forwarded-For is believed only from a listed proxy, both inside the app and in `payops serve`
(where uvicorn alone would believe it from 127.0.0.1). The live part runs real `payops serve`
processes on one database, which also shows the counters are shared between processes.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from payops.config import Settings
from payops.context import AppContext
from payops.db.models import User
from tests.api.test_auth_limits import assert_throttled, basic, client_from
from tests.helpers import Seed
from tests.live import free_port, run_with_context

CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

URL = "/b/pbl/v1/inquiry/ORD-1"
# The operation endpoints authenticate in api/operation_fast_route.py, before the router.
OPERATION_URL = "/b/pbl/v1/operation/ORD-1"


async def guess(
    app: Any, peer: str, username: str, forwarded_for: str | None = None, url: str = URL
) -> int:
    headers = basic(username, "wrong password")
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    async with client_from(app, peer) as http:
        response = await http.post(url, headers=headers)
    if response.status_code == 429:
        assert_throttled(response)
    return response.status_code


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "auth_address_failure_limit": 3,
            "trusted_proxies": "10.0.0.1, 10.9.0.0/16",
        }
    ],
)
@pytest.mark.parametrize("url", [URL, OPERATION_URL])
async def test_forwarded_for_counts_only_through_a_trusted_proxy(
    app: Any, seed: Seed, url: str
) -> None:
    await seed.transaction(order_no="ORD-1")
    # Through the proxy, each client is counted at its own address.
    for n in range(3):
        assert await guess(app, "10.0.0.1", f"a{n}", "203.0.113.5", url) == 401
    assert await guess(app, "10.0.0.1", "a9", "203.0.113.5", url) == 429
    # A proxy in the listed range:
    assert await guess(app, "10.9.4.2", "a9", "203.0.113.5", url) == 429
    assert await guess(app, "10.0.0.1", "b0", "203.0.113.6", url) == 401
    # A chain: the first address from the right that is not a trusted proxy is the client.
    assert await guess(app, "10.0.0.1", "b1", "203.0.113.5, 198.51.100.1, 10.9.0.7", url) == 401
    # An untrusted peer's X-Forwarded-For is ignored: it is counted at its own address.
    for n in range(3):
        assert await guess(app, "198.51.100.9", f"c{n}", f"192.0.2.{n}", url) == 401
    assert await guess(app, "198.51.100.9", "c9", "192.0.2.200", url) == 429


@pytest.mark.parametrize("settings_overrides", [{"auth_address_failure_limit": 3}])
async def test_without_trusted_proxies_forwarded_for_is_ignored(app: Any, seed: Seed) -> None:
    await seed.transaction(order_no="ORD-1")
    for n in range(3):
        assert await guess(app, "127.0.0.1", f"a{n}", f"192.0.2.{n}") == 401
    assert await guess(app, "127.0.0.1", "a9", "192.0.2.99") == 429


# -- real `payops serve` processes ----------------------------------------------------------------


@contextmanager
def payops_serve(settings: Settings, **env: str) -> Iterator[str]:
    port = free_port()
    environment = {
        **os.environ,
        "PAYOPS_DATA_DIR": str(settings.data_dir),
        "PAYOPS_DATABASE_URL": settings.database_url,
        "PAYOPS_SECRET_KEY": settings.secret_key,
        "PAYOPS_RECONCILE_INTERVAL_SECONDS": "0",
        "PAYOPS_WEBHOOK_INTERVAL_SECONDS": "0",
        "PAYOPS_EXPIRY_INTERVAL_SECONDS": "0",
        "PAYOPS_LOG_LEVEL": "WARNING",
        **env,
    }
    environment.pop("FORWARDED_ALLOW_IPS", None)
    command = [
        sys.executable,
        "-m",
        "payops.cli.main",
        "serve",
        "--port",
        str(port),
        "--no-migrate",
    ]
    server = subprocess.Popen(
        command,
        env=environment,
        cwd=settings.data_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"payops serve exited: {server.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("payops serve did not start")
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def live_guess(base: str, username: str, forwarded_for: str) -> int:
    token = base64.b64encode(f"{username}:wrong password".encode()).decode()
    response = httpx.post(
        f"{base}{URL}",
        timeout=30,
        headers={"Authorization": f"Basic {token}", "X-Forwarded-For": forwarded_for},
    )
    return response.status_code


def test_payops_serve_trusts_forwarded_for_only_from_listed_proxies(
    settings: Settings, tmp_path: Path
) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def add_users(ctx: AppContext) -> None:
        # Known users with a cheap argon2id hash (the server verifies with the hash's own
        # parameters), so each wrong guess is quick; unknown ones would cost production argon2id.
        await Seed(ctx).transaction(order_no="ORD-1")
        async with ctx.db.write() as session:
            session.add_all(
                User(username=name, password_hash=CHEAP.hash("right password"))
                for name in [f"u{n}" for n in range(7)] + [f"v{n}" for n in range(10)]
            )

    run_with_context(settings, add_users)
    limit = {"PAYOPS_AUTH_ADDRESS_FAILURE_LIMIT": "5"}
    with payops_serve(settings, **limit) as first, payops_serve(settings, **limit) as second:
        # Loopback is no proxy by default: made-up X-Forwarded-For values from 127.0.0.1 are all
        # counted against 127.0.0.1, and the two processes count together.
        statuses = [
            live_guess(first if n % 2 else second, f"u{n}", f"192.0.2.{n}") for n in range(7)
        ]
        assert statuses == [401] * 5 + [429] * 2, statuses
    # Listed as a proxy, loopback's X-Forwarded-For names the client: each is counted on its own.
    with payops_serve(
        settings,
        PAYOPS_TRUSTED_PROXIES="127.0.0.1",
        PAYOPS_PUBLIC_URL="https://pay.example.com",
        **limit,
    ) as behind_proxy:
        statuses = [live_guess(behind_proxy, f"v{n}", f"198.51.100.{n}") for n in range(7)]
        assert statuses == [401] * 7, statuses
        assert live_guess(behind_proxy, "v9", "127.0.0.1") == 429  # loopback itself is spent


@pytest.mark.parametrize("settings_overrides", [{"auth_address_failure_limit": 3}])
async def test_ipv6_clients_are_counted_by_their_64_bit_prefix(app: Any, seed: Seed) -> None:
    # One host usually holds a whole /64: hopping within it must not reset the count.
    await seed.transaction(order_no="ORD-1")
    for n in range(3):
        assert await guess(app, f"2001:db8:1:2::{n + 1}", f"a{n}") == 401
    assert await guess(app, "2001:db8:1:2:ffff::9", "a9") == 429
    assert await guess(app, "2001:db8:1:3::1", "a9") == 401  # the next /64 is someone else
