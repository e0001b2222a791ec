"""Runtime settings, read from the environment (prefix ``PAYOPS_``) or a ``.env`` file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".payops")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOPS_", env_file=".env", extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR
    # Empty means the embedded SQLite file ``<data_dir>/payops.sqlite3``.
    database_url: str = ""
    # PostgreSQL connections all of this server's processes may hold together; each `payops serve`
    # worker gets an equal share (docs/performance.md).
    db_pool_total: int = Field(default=40, ge=2)
    # Worker processes of `payops serve` (0: one per CPU core on PostgreSQL, one on SQLite).
    # `serve --workers` sets it for its workers, which size their pools from it.
    workers: int = Field(default=0, ge=0)
    # Fernet key protecting gateway credentials at rest. Generated into the data dir when empty.
    secret_key: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    # Public base URL for checkout links (e.g. https://pay.example.com); default: the request's.
    public_url: str = ""
    # How often `payops serve` expires sessions past their expiration_time (0 = never).
    expiry_interval_seconds: float = 30.0

    sandbox_queue_seconds: float = 5.0
    sandbox_latency_ms: int = 0
    # The sandbox gateway's own ledger: it plays a remote system, so it keeps its own store.
    sandbox_ledger_path: Path | None = None

    gateway_timeout_seconds: float = 30.0
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    auth_cache_seconds: float = 60.0
    auth_failure_limit: int = 10
    auth_failure_window_seconds: float = 300.0
    log_level: str = "INFO"

    # Inquiry throttling (decisions §4, spec §6.6): only inquiries that would call a gateway count.
    inquiry_throttle: bool = True
    inquiry_throttle_initial_delay_seconds: float = 600.0
    inquiry_throttle_gap_seconds: float = 1800.0
    inquiry_throttle_daily_max: int = 3
    inquiry_throttle_global_per_minute: int = 30

    # Reconciler: how often `payops serve` runs it (0 = never), how old a `processing` operation
    # must be before the gateway is asked, how many unanswered asks lead to `needs_review`.
    reconcile_interval_seconds: float = 30.0
    reconcile_after_seconds: float = 60.0
    reconcile_max_attempts: int = 10
    reconcile_lease_seconds: float = 120.0

    # Outgoing webhooks (decisions §10).
    webhook_interval_seconds: float = 5.0  # how often `payops serve` drains the outbox (0 = never)
    webhook_timeout_seconds: float = 15.0
    webhook_max_attempts: int = 10
    webhook_backoff_base_seconds: float = 30.0
    webhook_backoff_factor: float = 3.0
    webhook_backoff_cap_seconds: float = 8 * 3600.0
    webhook_allow_private: bool = False  # allow loopback/private/link-local targets (tests, LANs)

    # Test-only crash hook (docs/operations-model.md): the process SIGKILLs itself at this point.
    crash_point: str = ""

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, value: object) -> object:
        return Path(str(value)).expanduser() if value else DEFAULT_DATA_DIR

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'payops.sqlite3').resolve()}"

    @property
    def effective_workers(self) -> int:
        """`payops serve`'s worker count: as set, else one per core on PostgreSQL and one on
        SQLite (which takes one writer at a time: more processes only wait for each other)."""
        if self.workers:
            return self.workers
        return 1 if self.is_sqlite else (os.cpu_count() or 1)

    @property
    def pool_share(self) -> int:
        """This process's PostgreSQL connections: its worker's share of ``db_pool_total``
        (the whole total for a process outside `payops serve`, which sets ``workers``)."""
        return max(1, self.db_pool_total // (self.workers or 1))

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_sandbox_ledger(self) -> Path:
        return self.sandbox_ledger_path or (self.data_dir / "sandbox-gateway.sqlite3")

    def ensure_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
