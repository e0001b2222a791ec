"""Test fixtures: every API test runs against SQLite and PostgreSQL.

PostgreSQL comes from ``PAYOPS_TEST_PG_URL`` (default: the loopback server, database ``test``,
used only to create a throw-away database per test worker). With ``CI=true`` an unreachable
PostgreSQL fails the run; elsewhere its tests are skipped with the reason shown.
``PAYOPS_TEST_BACKENDS=sqlite`` (or ``postgresql``) narrows the run to one backend.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

import payops.auth.secrets as auth_secrets
from payops.api.app import create_app
from payops.config import Settings
from payops.context import AppContext
from payops.db.migrate import upgrade
from payops.db.models import Base
from tests.helpers import Seed

PG_ADMIN_URL = os.environ.get(
    "PAYOPS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = [
    b.strip()
    for b in os.environ.get("PAYOPS_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if b.strip()
]


@pytest.fixture(autouse=True)
def cheap_argon2id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id hashing and verification, with the cheapest parameters: the production
    cost (tens of ms per hash, far more on a busy 2-core CI box) buys nothing in tests."""
    monkeypatch.setattr(
        auth_secrets, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


async def _pg_admin(statements: list[str]) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"payops_test_{worker}_{os.getpid()}"
    try:
        asyncio.run(_pg_admin([f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"']))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "unreachable"
        message = f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc!r}"
        if IN_CI:
            pytest.fail(message + " (CI=true: the PostgreSQL tests are mandatory)")
        pytest.skip(message)
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    asyncio.run(_pg_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "payops.sqlite3"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


async def _truncate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> str:
    if backend == "sqlite":
        path = tmp_path / "payops.sqlite3"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(_truncate(url))
    return url


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "secret_key": Fernet.generate_key().decode(),
        "sandbox_queue_seconds": 0.3,
        "gateway_timeout_seconds": 5.0,
        "auth_cache_seconds": 60.0,
        "auth_failure_limit": 10,
        # Tests run the reconciler explicitly, so a background pass never races their asserts.
        "reconcile_interval_seconds": 0,
        "expiry_interval_seconds": 0,
        "attempt_inquiry_interval_seconds": 0,
        "webhook_interval_seconds": 0,
        "webhook_allow_private": True,
        "reconcile_after_seconds": 0,
        # Throttling has its own tests; elsewhere it would only make inquiries order-dependent.
        "inquiry_throttle": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(tmp_path, database_url, **settings_overrides)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


@pytest.fixture
def ctx(app: Any) -> AppContext:
    return app.state.ctx


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def seed(ctx: AppContext) -> Seed:
    return Seed(ctx)


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
