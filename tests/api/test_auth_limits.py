"""The authentication perimeter under attack (issue 12 "Authentication", issue 11's shared throttle):
credential length caps, failure counters per (username, address) and per address that never stop
a valid API key or an already verified password, no lockout by username alone (an alert instead),
counters shared by every process through the database, expired and excess counters evicted
(oldest first, never all), and a bound on concurrent password verifications.

Everything goes through the HTTP API of real app instances; "several processes" are several app
instances (each with its own authenticator, cache and gate) on one database.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

import payops.auth.secrets as auth_secrets
from payops.api.app import create_app
from payops.config import Settings
from payops.db.models import AuthFailureCounter
from tests.helpers import Seed

URL = "/b/pbl/v1/inquiry/ORD-1"
PASSWORD = "Corr3ct-Horse-Battery-Staple"
INVALID_BASIC = {"detail": "Invalid username/password."}
INVALID_KEY = {"detail": "Invalid API key."}
BUSY = {"detail": "The service is busy; try again shortly."}
THROTTLED = re.compile(r"Request was throttled\. Expected available in (\d+) seconds?\.")


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@asynccontextmanager
async def client_from(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def post(app: Any, address: str, headers: dict[str, str]) -> httpx.Response:
    async with client_from(app, address) as http:
        return await http.post(URL, headers=headers)


@asynccontextmanager
async def second_process(settings: Settings) -> AsyncIterator[Any]:
    """Another app instance on the same database: its own authenticator, cache and gate, as a
    second `payops serve` worker would have."""
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


def assert_throttled(response: httpx.Response, window: float = 300) -> None:
    assert response.status_code == 429, response.text
    match = THROTTLED.fullmatch(response.json().get("detail", ""))
    assert match and set(response.json()) == {"detail"}, response.text
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window and int(match.group(1)) == retry_after


async def metric(app: Any, sample: str) -> float:
    """One sample of the app's /metrics, e.g. 'payops_auth_username_alerts_total'."""
    settings = app.state.ctx.settings
    settings.metrics_token = settings.metrics_token or "metrics-reader"  # /metrics needs a token
    async with client_from(app, "127.0.0.1") as http:
        response = await http.get(
            "/metrics", headers={"Authorization": f"Bearer {settings.metrics_token}"}
        )
        assert response.status_code == 200, response.text
        text = response.text
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def counters(seed: Seed) -> int:
    async with seed.ctx.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(AuthFailureCounter)) or 0)


# -- length caps -----------------------------------------------------------------------------------


async def test_overlong_credentials_are_a_plain_401_that_counts_nothing(
    app: Any, seed: Seed
) -> None:
    await seed.transaction(order_no="ORD-1")
    good = await seed.user("merchant", PASSWORD, superuser=True)
    # The longest acceptable credentials still work: 150 characters, 4 KiB of UTF-8.
    long_name, long_password = "u" * 150, "é" * 2048
    longest = await seed.user(long_name, long_password, superuser=True)
    assert (await post(app, "192.0.2.1", longest)).status_code == 200

    overlong = [
        basic("u" * 151, long_password),
        basic(long_name, long_password + "x"),
        basic("merchant", PASSWORD + "x" * 4096),
        basic("m" * 1_000_000, "whatever"),  # a megabyte of username is never decoded into work
        {"Authorization": "Api-Key " + "k" * 8 + "." + "s" * 200},
    ]
    # Far more attempts than any limit, from one address: none is counted or throttled.
    for attempt in range(3 * seed.ctx.settings.auth_failure_limit):
        headers = overlong[attempt % len(overlong)]
        response = await post(app, "192.0.2.1", headers)
        assert response.status_code == 401, (attempt, response.text)
        expected = INVALID_KEY if headers["Authorization"].startswith("Api-Key") else INVALID_BASIC
        assert response.json() == expected
    assert await counters(seed) == 0
    assert (await post(app, "192.0.2.1", good)).status_code == 200


# -- no lockout as a weapon ------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"auth_username_alert_threshold": 12}])
async def test_guesses_at_one_username_from_many_addresses_alert_but_never_lock_it(
    app: Any, seed: Seed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="payops.auth")
    await seed.transaction(order_no="ORD-1")
    right = await seed.user("merchant", PASSWORD, superuser=True)
    for attempt in range(15):
        response = await post(app, f"10.0.0.{attempt + 1}", basic("merchant", f"guess-{attempt}"))
        assert response.status_code == 401, (attempt, response.text)
    # The owner still logs in, from anywhere, one of the guessing addresses included.
    assert (await post(app, "10.0.1.1", right)).status_code == 200
    assert (await post(app, "10.0.0.3", right)).status_code == 200
    # The attack raised one alert: a metric and a warning naming the account.
    assert await metric(app, "payops_auth_username_alerts_total") == 1.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'merchant'" in warnings[0] and "12" in warnings[0], warnings
    assert PASSWORD not in caplog.text and "guess-" not in caplog.text


async def test_guesses_from_one_address_at_one_username_are_throttled_there_only(
    app: Any, seed: Seed
) -> None:
    await seed.transaction(order_no="ORD-1")
    limit = seed.ctx.settings.auth_failure_limit
    right = await seed.user("merchant", PASSWORD, superuser=True)
    other = await seed.user("bystander", PASSWORD, superuser=True)
    before = await seed.snapshot()
    for attempt in range(limit):
        response = await post(app, "198.51.100.7", basic("merchant", f"guess-{attempt}"))
        assert response.status_code == 401 and response.json() == INVALID_BASIC, response.text
    assert_throttled(await post(app, "198.51.100.7", basic("merchant", "one more")))
    assert_throttled(await post(app, "198.51.100.7", right))  # not verified: no password check
    assert (await post(app, "198.51.100.7", other)).status_code == 200
    assert (await post(app, "198.51.100.8", right)).status_code == 200
    assert await metric(app, 'payops_auth_throttled_total{scope="pair"}') == 2.0
    assert await seed.snapshot() == before


@pytest.mark.parametrize("settings_overrides", [{"auth_address_failure_limit": 10}])
async def test_a_throttled_address_still_serves_valid_api_keys_and_verified_users(
    app: Any, seed: Seed
) -> None:
    await seed.transaction(order_no="ORD-1")
    cached = await seed.user("cached", PASSWORD, superuser=True)
    fresh = await seed.user("fresh", PASSWORD, superuser=True)
    key = await seed.api_key()
    office = "203.0.113.9"  # one NAT address: an attacker and honest users behind it
    assert (await post(app, office, cached)).status_code == 200  # verified before the attack
    for n in range(5):  # five wrong passwords for five users, five wrong API keys
        assert (await post(app, office, basic(f"user{n}", "nope"))).status_code == 401
        wrong_key = {"Authorization": f"Api-Key {n:08d}.{'x' * 32}"}
        assert (await post(app, office, wrong_key)).status_code == 401
    # Further failures from there are slowed down...
    assert_throttled(await post(app, office, basic("user9", "nope")))
    assert_throttled(await post(app, office, {"Authorization": f"Api-Key {9:08d}.{'x' * 32}"}))
    assert_throttled(await post(app, office, fresh))  # would need a password verification
    # ...but what is valid and cheap to check is never stopped.
    for _ in range(3):
        assert (await post(app, office, key)).status_code == 200
        assert (await post(app, office, cached)).status_code == 200
    for headers in (fresh, key, cached):
        assert (await post(app, "203.0.113.10", headers)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"auth_verify_queue": 20}])
async def test_concurrent_guesses_cannot_exceed_the_limit(app: Any, seed: Seed) -> None:
    await seed.transaction(order_no="ORD-1")
    await seed.user("merchant", PASSWORD, superuser=True)
    responses = await asyncio.gather(
        *(post(app, "192.0.2.50", basic("merchant", f"guess-{n}")) for n in range(15))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 10 + [429] * 5, statuses


# -- shared by every process -----------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"auth_verify_queue": 20}])
async def test_counters_are_shared_between_processes(
    app: Any, seed: Seed, settings: Settings
) -> None:
    await seed.transaction(order_no="ORD-1")
    right = await seed.user("merchant", PASSWORD, superuser=True)
    limit = settings.auth_failure_limit
    async with second_process(settings) as other:
        # Half the guesses through each process: neither alone reaches the limit.
        for attempt in range(limit):
            application = app if attempt % 2 else other
            response = await post(application, "192.0.2.60", basic("merchant", f"g{attempt}"))
            assert response.status_code == 401, (attempt, response.text)
        for application in (app, other):
            assert_throttled(await post(application, "192.0.2.60", right))
            assert (await post(application, "192.0.2.61", right)).status_code == 200

        # Concurrent guesses split between both processes still stop at the limit, in total.
        responses = await asyncio.gather(
            *(
                post(app if n % 2 else other, "192.0.2.62", basic("merchant", f"c{n}"))
                for n in range(16)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [401] * limit + [429] * (16 - limit), statuses


# -- the counter table stays small -----------------------------------------------------------------


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "auth_failure_window_seconds": 3.0,
            "auth_failure_limit": 2,
            "auth_throttle_sweep_seconds": 0,
        }
    ],
)
async def test_counters_whose_window_has_passed_are_evicted(app: Any, seed: Seed) -> None:
    await seed.transaction(order_no="ORD-1")
    right = await seed.user("merchant", PASSWORD, superuser=True)
    started = asyncio.get_running_loop().time()
    for attempt in range(2):
        assert (await post(app, "192.0.2.70", basic("merchant", f"g{attempt}"))).status_code == 401
    assert_throttled(await post(app, "192.0.2.70", right), window=3)
    assert await counters(seed) == 3  # the pair, the address and the username
    await asyncio.sleep(max(0.0, started + 3.2 - asyncio.get_running_loop().time()))
    # The next failure (anyone's, any process's) sweeps what has expired.
    assert (await post(app, "192.0.2.71", basic("someone", "else"))).status_code == 401
    assert await counters(seed) == 3  # only someone@192.0.2.71's three
    assert (await post(app, "192.0.2.70", right)).status_code == 200


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "auth_throttle_max_entries": 30,
            "auth_throttle_sweep_seconds": 0,
        }
    ],
)
async def test_the_table_is_capped_by_dropping_the_oldest_never_everything(
    app: Any, seed: Seed
) -> None:
    await seed.transaction(order_no="ORD-1")
    right = await seed.user("merchant", PASSWORD, superuser=True)
    # A spray of usernames from many addresses (three counters each) fills the table.
    for n in range(20):
        assert (await post(app, f"10.1.0.{n}", basic(f"spray{n}", "x"))).status_code == 401
    assert await counters(seed) == 30
    # A guesser at "merchant" reaches the limit: the newest counters.
    for attempt in range(seed.ctx.settings.auth_failure_limit):
        assert (await post(app, "192.0.2.80", basic("merchant", f"g{attempt}"))).status_code == 401
    assert_throttled(await post(app, "192.0.2.80", right))
    # More spraying pushes out the oldest counters only: the guesser stays throttled.
    for n in range(20, 25):
        assert (await post(app, f"10.1.0.{n}", basic(f"spray{n}", "x"))).status_code == 401
    assert await counters(seed) == 30
    assert_throttled(await post(app, "192.0.2.80", right))
    # The very first sprayed counters are the ones that went.
    for attempt in range(seed.ctx.settings.auth_failure_limit - 1):
        assert (await post(app, "10.1.0.0", basic("spray0", f"y{attempt}"))).status_code == 401
    assert (await post(app, "10.1.0.0", basic("spray0", "last"))).status_code == 401


# -- bounded password verifications ----------------------------------------------------------------


class GatedHasher(PasswordHasher):
    """Real argon2id verification that waits for the test to open the gate, so the number of
    verifications in progress is known exactly, whatever the machine's speed."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.open = threading.Event()
        self.open.set()

    def verify(self, hash: Any, password: Any) -> bool:  # noqa: A002 - the library's name
        assert self.open.wait(timeout=60), "the test never opened the gate"
        return super().verify(hash, password)


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "auth_verify_concurrency": 2,
            "auth_verify_queue": 2,
        }
    ],
)
async def test_password_verifications_beyond_the_queue_are_refused_while_keys_are_served(
    app: Any, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = GatedHasher()
    monkeypatch.setattr(auth_secrets, "_hasher", hasher)
    await seed.transaction(order_no="ORD-1")
    cached = await seed.user("cached", PASSWORD, superuser=True)
    fresh = await seed.user("fresh", PASSWORD, superuser=True)
    key = await seed.api_key()
    assert (await post(app, "192.0.2.90", cached)).status_code == 200

    hasher.open.clear()
    try:
        # Two verifications run (and block), two wait for a slot: the process is full.
        flood = [
            asyncio.create_task(post(app, f"192.0.2.{100 + n}", basic(f"bad{n}", "nope")))
            for n in range(4)
        ]
        running, queued = (
            'payops_auth_password_verifications{state="running"}',
            'payops_auth_password_verifications{state="queued"}',
        )
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            if (await metric(app, running), await metric(app, queued)) == (2.0, 2.0):
                break
            await asyncio.sleep(0.02)
        assert (await metric(app, running), await metric(app, queued)) == (2.0, 2.0)

        # Login number five is refused at once, without a verification or a counted failure...
        refused = await asyncio.wait_for(post(app, "192.0.2.91", fresh), timeout=10)
        assert refused.status_code == 503 and refused.json() == BUSY, refused.text
        assert refused.headers["retry-after"] == "1"
        # ...while API keys and already verified users are served as usual.
        for headers in (key, cached, key):
            response = await asyncio.wait_for(post(app, "192.0.2.92", headers), timeout=10)
            assert response.status_code == 200, response.text
        assert not any(task.done() for task in flood)
    finally:
        hasher.open.set()
    assert [r.status_code for r in await asyncio.gather(*flood)] == [401] * 4
    assert await metric(app, "payops_auth_password_verifications_refused_total") == 1.0
    assert (await metric(app, running), await metric(app, queued)) == (0.0, 0.0)
    assert (await post(app, "192.0.2.91", fresh)).status_code == 200


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "auth_verify_concurrency": 1,
            "auth_verify_queue": 0,
        }
    ],
)
async def test_one_credential_arriving_many_times_at_once_is_verified_once(
    app: Any, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = GatedHasher()
    monkeypatch.setattr(auth_secrets, "_hasher", hasher)
    await seed.transaction(order_no="ORD-1")
    merchant = await seed.user("merchant", PASSWORD, superuser=True)
    other = await seed.user("other", PASSWORD, superuser=True)
    running = 'payops_auth_password_verifications{state="running"}'

    async def slot_taken() -> None:
        deadline = asyncio.get_running_loop().time() + 60
        while await metric(app, running) != 1.0 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert await metric(app, running) == 1.0

    # A client starting eight requests at once, before its password is cached: the only slot
    # verifies it once and all eight share the answer; a different credential finds no slot.
    hasher.open.clear()
    try:
        burst = [asyncio.create_task(post(app, "192.0.2.120", merchant)) for _ in range(8)]
        await slot_taken()
        refused = await asyncio.wait_for(post(app, "192.0.2.122", other), timeout=10)
        assert refused.status_code == 503, refused.text
    finally:
        hasher.open.set()
    assert [r.status_code for r in await asyncio.gather(*burst)] == [200] * 8

    # The same wrong guess sent five times at once is one guess: one verification, one failure.
    hasher.open.clear()
    try:
        guesses = [
            asyncio.create_task(post(app, "192.0.2.121", basic("merchant", "wrong")))
            for _ in range(5)
        ]
        await slot_taken()
    finally:
        hasher.open.set()
    assert [r.status_code for r in await asyncio.gather(*guesses)] == [401] * 5
    assert await metric(app, 'payops_auth_failures_total{scheme="basic"}') == 1.0
