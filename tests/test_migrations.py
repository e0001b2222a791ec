"""The Alembic migrations build exactly the schema the models describe, on both backends, and go
down to nothing and back up again."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from payops.db.migrate import alembic_config, downgrade, upgrade
from payops.db.models import Base
from tests.conftest import PG_ADMIN_URL, _pg_admin

APP_TABLES = {t.name for t in Base.metadata.sorted_tables}


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


async def _inspect(url: str, fn: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn,
        opts={
            "target_metadata": Base.metadata,
            "compare_type": True,
            "compare_server_default": True,
        },
    )
    return compare_metadata(context, Base.metadata)


def _state(conn: Connection) -> tuple[set[str], str | None]:
    tables = set(inspect(conn).get_table_names())
    version = None
    if "alembic_version" in tables:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return tables, version


def _indexes(conn: Connection) -> dict[str, dict[str, Any]]:
    return {ix["name"]: ix for ix in inspect(conn).get_indexes("operations")}


def test_database_is_at_head(database_url: str) -> None:
    tables, version = asyncio.run(_inspect(database_url, _state))
    assert APP_TABLES <= tables
    assert version == _head()


def test_models_and_migrations_agree(database_url: str) -> None:
    # Nothing is ignored: every table, column, type, nullability, default, index, unique and
    # foreign key of the models must be what the migrations built.
    diff = asyncio.run(_inspect(database_url, _diff))
    assert diff == []


def test_partial_unique_index_on_tracking_key_exists(database_url: str) -> None:
    # compare_metadata does not look at index predicates, so check the one partial index directly.
    indexes = asyncio.run(_inspect(database_url, _indexes))
    live = indexes["uq_operations_live_tracking_key"]
    assert live["unique"]
    assert live["column_names"] == ["transaction_id", "tracking_key"]
    backend = make_url(database_url).get_backend_name()
    where = live.get("dialect_options", {}).get(f"{backend}_where")
    assert where is not None and "tracking_key IS NOT NULL" in str(where)


@pytest.fixture
def scratch_url(backend: str, tmp_path: Path) -> Any:
    """An empty database of the backend under test that nothing else uses."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'scratch.sqlite3'}"
        return
    name = f"payops_migrations_{os.getpid()}_{os.urandom(3).hex()}"
    try:
        asyncio.run(_pg_admin([f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"']))
    except Exception as exc:  # noqa: BLE001 - same policy as conftest's postgres_url
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc!r}")
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc!r}")
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    upgrade(scratch_url)
    tables, version = asyncio.run(_inspect(scratch_url, _state))
    assert APP_TABLES <= tables
    assert version == _head()
    assert asyncio.run(_inspect(scratch_url, _diff)) == []

    downgrade(scratch_url, "base")
    tables, version = asyncio.run(_inspect(scratch_url, _state))
    assert tables & APP_TABLES == set(), "downgrade to base leaves application tables behind"
    assert version is None
    if make_url(scratch_url).get_backend_name() == "postgresql":

        def leftover_types(conn: Connection) -> list[str]:
            return list(
                conn.execute(
                    text(
                        "SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                        "WHERE n.nspname = 'public' AND t.typtype = 'e'"
                    )
                ).scalars()
            )

        assert asyncio.run(_inspect(scratch_url, leftover_types)) == []

    upgrade(scratch_url)
    tables, version = asyncio.run(_inspect(scratch_url, _state))
    assert APP_TABLES <= tables
    assert version == _head()
    assert asyncio.run(_inspect(scratch_url, _diff)) == []
    # Upgrading an up-to-date database is a no-op.
    upgrade(scratch_url)
    assert asyncio.run(_inspect(scratch_url, _state))[1] == _head()


def test_comparison_is_not_vacuous(scratch_url: str) -> None:
    """The drift check above would notice a schema that differs from the models."""
    upgrade(scratch_url)

    async def drift() -> None:
        engine = create_async_engine(scratch_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DROP INDEX ix_audit_trail_at"))
                await conn.execute(text("ALTER TABLE merchant_settings ADD COLUMN stray INTEGER"))
        finally:
            await engine.dispose()

    asyncio.run(drift())
    diff = asyncio.run(_inspect(scratch_url, _diff))
    assert "ix_audit_trail_at" in {d[1].name for d in diff if d[0] == "add_index"}
    assert ("merchant_settings", "stray") in {
        (d[2], d[3].name) for d in diff if d[0] == "remove_column"
    }


def test_step_by_step_downgrade(scratch_url: str) -> None:
    """Every revision downgrades to its predecessor and upgrades again."""
    script = ScriptDirectory.from_config(alembic_config(scratch_url))
    revisions = list(reversed(list(script.walk_revisions())))  # base → head
    upgrade(scratch_url)
    for revision in reversed(revisions):
        target = revision.down_revision or "base"
        assert isinstance(target, str), "merge revisions are not expected"
        downgrade(scratch_url, target)
        assert asyncio.run(_inspect(scratch_url, _state))[1] == (
            None if target == "base" else target
        )
    for revision in revisions:
        upgrade(scratch_url, revision.revision)
        assert asyncio.run(_inspect(scratch_url, _state))[1] == revision.revision
