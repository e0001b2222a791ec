"""Run Alembic migrations programmatically (used by ``payops db upgrade`` and the tests)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
    _use_wal(url)


def _use_wal(url: str) -> None:
    """Put an SQLite file in WAL mode once, here, rather than racing to do it from the first
    connections of a starting server."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    with sqlite3.connect(parsed.database, timeout=60) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    # Alembic's env.py starts its own event loop; keep it off the caller's.
    await asyncio.to_thread(upgrade, url, revision)
