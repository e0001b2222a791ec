"""`payops serve` in production: several worker processes over one database.

Every worker is a full PayOps process (API and background loops; the loops take leases, so they
are safe in every worker). What must agree across workers lives in the database: operation
totals under the parent's lock, the inquiry throttle, cache versions (gateway configurations,
merchant settings). Two things are divided or gathered here:

- connections: each worker's pool is an equal share of ``PAYOPS_DB_POOL_TOTAL``, and `serve`
  refuses a total the PostgreSQL server cannot accept;
- metrics: prometheus-client's multiprocess mode, with a directory of its own for each run
  (emptied at start), so ``/metrics`` on any worker reports every worker's counts.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from payops.config import Settings, get_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A worker's pool must hold at least one intent and one settlement at a time.
MIN_POOL_SHARE = 2
WORKER_HEALTHCHECK_SECONDS = 60


class ServeConfigError(ValueError):
    pass


SUPERVISOR_ENV = "PAYOPS_SERVE_SUPERVISOR_PID"


def _end_with_supervisor() -> None:
    """A worker of a supervisor that is killed outright (SIGKILL, OOM) would live on, holding
    the port; ask Linux to send it SIGTERM (a graceful stop) when its supervisor dies."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor or not sys.platform.startswith("linux") or os.getppid() != int(supervisor):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(supervisor):  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


PR_SET_PDEATHSIG = 1


def serve_app() -> FastAPI:
    """The application factory each `payops serve` worker process imports."""
    from payops import logging as payops_logging
    from payops.api.app import create_app

    _end_with_supervisor()
    settings = get_settings()
    payops_logging.configure(settings.log_level)
    return create_app(settings)


async def _server_limits(url: str) -> tuple[int, int]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            limit = int(await conn.scalar(text("SHOW max_connections")))
            reserved = int(await conn.scalar(text("SHOW superuser_reserved_connections")))
            return limit, reserved
    finally:
        await engine.dispose()


def check_pool(settings: Settings, workers: int) -> str:
    """Refuse a configuration the database cannot carry; describe the one that will run."""
    share = settings.db_pool_total // workers
    if settings.is_sqlite:
        return f"{workers} worker(s) on embedded SQLite"
    if share < MIN_POOL_SHARE:
        raise ServeConfigError(
            f"PAYOPS_DB_POOL_TOTAL={settings.db_pool_total} gives {workers} workers fewer than "
            f"{MIN_POOL_SHARE} connections each; raise it or run fewer workers"
        )
    try:
        limit, reserved = asyncio.run(_server_limits(settings.effective_database_url))
    except Exception as exc:  # noqa: BLE001 - the server may come up later; /readyz tells
        return (
            f"{workers} worker(s), {share} PostgreSQL connections each; max_connections not "
            f"checked, the database did not answer ({type(exc).__name__})"
        )
    if settings.db_pool_total > limit - reserved:
        raise ServeConfigError(
            f"PAYOPS_DB_POOL_TOTAL={settings.db_pool_total} is above what the PostgreSQL server "
            f"accepts (max_connections {limit} minus {reserved} reserved for superusers = "
            f"{limit - reserved}); lower it or raise max_connections"
        )
    return (
        f"{workers} worker(s), {share} PostgreSQL connections each "
        f"({share * workers} of PAYOPS_DB_POOL_TOTAL={settings.db_pool_total}; "
        f"server max_connections {limit})"
    )


def prepare_metrics_dir() -> Path:
    """A fresh multiprocess metrics directory for this run (set in the environment, which the
    workers inherit). An operator-given PROMETHEUS_MULTIPROC_DIR is emptied, as
    prometheus-client requires at start; otherwise a temporary one is made."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        if path.exists():
            for entry in path.glob("*.db"):
                entry.unlink()
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="payops-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def remove_metrics_dir(path: Path) -> None:
    if path.name.startswith("payops-metrics-"):
        shutil.rmtree(path, ignore_errors=True)
