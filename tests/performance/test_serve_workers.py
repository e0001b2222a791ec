"""`payops serve --workers N`: connection shares within what PostgreSQL accepts, and /metrics
counting every worker's requests."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from payops.config import Settings, get_settings
from tests.conftest import _truncate, make_settings
from tests.live import free_port

BIN = Path(sys.executable).parent


@pytest.fixture
def pg_settings(postgres_url: str, tmp_path: Path) -> Settings:
    asyncio.run(_truncate(postgres_url))
    return make_settings(tmp_path, postgres_url)


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PAYOPS_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        {
            "PAYOPS_DATABASE_URL": settings.effective_database_url,
            "PAYOPS_DATA_DIR": str(settings.data_dir),
            "PAYOPS_SECRET_KEY": settings.secret_key,
            "PAYOPS_RECONCILE_INTERVAL_SECONDS": "0",
            "PAYOPS_WEBHOOK_INTERVAL_SECONDS": "0",
            "PAYOPS_EXPIRY_INTERVAL_SECONDS": "0",
            **extra,
        }
    )
    return env


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "payops"), "serve", "--no-migrate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_a_pool_total_above_max_connections(pg_settings: Settings) -> None:
    result = _serve(_env(pg_settings, PAYOPS_DB_POOL_TOTAL="100000"), "--workers", "2")
    assert result.returncode == 2
    assert "PAYOPS_DB_POOL_TOTAL=100000 is above what the PostgreSQL server accepts" in (
        result.stdout + result.stderr
    )


def test_serve_refuses_workers_without_two_connections_each(pg_settings: Settings) -> None:
    result = _serve(_env(pg_settings, PAYOPS_DB_POOL_TOTAL="6"), "--workers", "4")
    assert result.returncode == 2
    assert "gives 4 workers fewer than 2 connections each" in result.stdout + result.stderr


def test_each_worker_pool_is_its_share_of_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYOPS_DB_POOL_TOTAL", "40")
    monkeypatch.setenv("PAYOPS_WORKERS", "4")
    assert Settings().pool_share == 10
    monkeypatch.delenv("PAYOPS_WORKERS")
    assert Settings().pool_share == 40  # a CLI command or test: one process, the whole total


def test_metrics_count_every_workers_requests(pg_settings: Settings, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # a previous run's: emptied at start
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "payops"), "serve", "--no-migrate", "--workers", "2", "--port", str(port)],
        env={
            **_env(pg_settings),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "PAYOPS_METRICS_TOKEN": "metrics-reader",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        sent = 1
        # A new connection per request, so the kernel spreads them over the workers; go on
        # until both workers have counted some.
        while len(list(metrics_dir.glob("counter_*.db"))) < 2 and sent < 400:
            response = httpx.get(f"{base}/healthz", headers={"Connection": "close"})
            assert response.status_code == 200
            sent += 1
        assert len(list(metrics_dir.glob("counter_*.db"))) == 2, "one worker served everything"
        for _ in range(3):  # any worker answers /metrics with every worker's counts
            metrics = httpx.get(
                f"{base}/metrics",
                headers={"Connection": "close", "Authorization": "Bearer metrics-reader"},
            ).text
            counted = re.search(
                r'payops_http_requests_total\{method="GET",route="/healthz",'
                r'status="200"\} ([\d.]+)',
                metrics,
            )
            assert counted is not None, metrics[:2000]
            assert float(counted.group(1)) == sent
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    get_settings.cache_clear()
