"""Runtime settings, read from the environment (prefix ``PAYOPS_``) or a ``.env`` file."""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from payops.masked import MaskedStr

DEFAULT_DATA_DIR = Path(".payops")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOPS_", env_file=".env", extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR
    # Empty means the embedded SQLite file ``<data_dir>/payops.sqlite3``.
    # Holds the database password: masked in ``repr`` (payops.masked), like every secret here.
    database_url: MaskedStr = ""
    # PostgreSQL connections all of this server's processes may hold together; each `payops serve`
    # worker gets an equal share (docs/performance.md).
    db_pool_total: int = Field(default=40, ge=2)
    # Worker processes of `payops serve` (0: one per CPU core on PostgreSQL, one on SQLite).
    # `serve --workers` sets it for its workers, which size their pools from it.
    workers: int = Field(default=0, ge=0)
    # Fernet key protecting gateway credentials at rest. Generated into the data dir when empty.
    secret_key: MaskedStr = ""
    host: str = "127.0.0.1"
    port: int = 8000
    # Public base URL for checkout links (e.g. https://pay.example.com); default: the request's.
    public_url: str = ""
    # Bearer token that /metrics requires; empty = /metrics is not served (404).
    metrics_token: MaskedStr = ""
    # How often `payops serve` expires sessions past their expiration_time (0 = never).
    expiry_interval_seconds: float = 30.0

    sandbox_queue_seconds: float = 5.0
    sandbox_latency_ms: int = 0
    # The sandbox gateway's own ledger: it plays a remote system, so it keeps its own store.
    sandbox_ledger_path: Path | None = None

    gateway_timeout_seconds: float = 30.0
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    auth_cache_seconds: float = 60.0
    # Failed-login throttle (docs/security.md), shared by every server process through the database.
    auth_failure_limit: int = Field(default=10, ge=1)  # per (username, client address)
    auth_failure_window_seconds: float = Field(default=300.0, gt=0)
    auth_address_failure_limit: int = Field(default=100, ge=1)  # per client address
    # Failures for one username from any address that raise an alert (log + metric); never a lockout.
    auth_username_alert_threshold: int = Field(default=50, ge=1)
    auth_throttle_max_entries: int = Field(default=100_000, ge=10)
    auth_throttle_sweep_seconds: float = Field(default=10.0, ge=0)  # 0: after every failure
    # Password verifications (argon2id) running at once per process, and waiting beyond those.
    auth_verify_concurrency: int = Field(default=2, ge=1)
    auth_verify_queue: int = Field(default=8, ge=0)
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: IPs or CIDRs, comma-separated.
    # Empty (the default): the TCP peer is the client, whatever the headers say.
    trusted_proxies: str = ""
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
    # Automatic attempt inquiry (transactions/attempt_inquiry.py): how often `payops serve` looks
    # for payment attempts still pending after their configuration's inquiry window (0 = never).
    attempt_inquiry_interval_seconds: float = 30.0
    # A queued refund with no final answer after this long goes to needs_review (decisions §13);
    # seconds or ISO 8601 ("P7D").
    queued_review_after: timedelta = timedelta(days=7)

    # Origins (scheme://host[:port], comma-separated) whose cross-site requests the
    # authenticated API accepts (decisions §13); empty: none.
    allowed_origins: str = ""

    # Outgoing webhooks (decisions §10).
    webhook_interval_seconds: float = 5.0  # how often `payops serve` drains the outbox (0 = never)
    # The whole of one send (DNS, connect, request, full answer); the lease is this plus 30 s.
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    # Events of different transactions sent at once by one delivery pass (per process).
    webhook_concurrency: int = Field(default=8, ge=1)
    webhook_max_attempts: int = 10
    webhook_backoff_base_seconds: float = 30.0
    webhook_backoff_factor: float = 3.0
    webhook_backoff_cap_seconds: float = 8 * 3600.0
    # The hosted page tries the payment webhook before redirecting the customer, for at most
    # this long (decisions §10: at most 10 s; larger values are capped).
    webhook_redirect_deadline_seconds: float = 10.0
    webhook_allow_private: bool = False  # allow loopback/private/link-local targets (tests, LANs)

    # Dashboard (issue 15): a session ends after this long without a request, and in any case
    # this long after sign-in.
    dashboard_idle_minutes: float = 30.0
    dashboard_session_hours: float = 12.0

    # Test-only crash hook (docs/operations-model.md): the process SIGKILLs itself at this point.
    crash_point: str = ""

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, value: object) -> object:
        return Path(str(value)).expanduser() if value else DEFAULT_DATA_DIR

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for item in _split(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"PAYOPS_TRUSTED_PROXIES: {item!r} is not an IP address or network"
                ) from None
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        return _split(self.trusted_proxies)

    @field_validator("queued_review_after", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        # A plain number of seconds from the environment ("604800"), or ISO 8601 ("P7D").
        if isinstance(value, str):
            try:
                return timedelta(seconds=float(value))
            except (ValueError, OverflowError):
                return value
        return value

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
        """The data dir (0700) and, for the embedded database, its SQLite file (0600): they
        hold the secret key, the database and the sandbox ledger, readable by no other user."""
        private_directory(self.data_dir)
        if self.is_sqlite:
            database = make_url(self.effective_database_url).database
            if database and database != ":memory:" and not database.startswith("file:"):
                private_file(Path(database))


def private_directory(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path, 0o700)


def private_file(path: Path) -> None:
    """Create ``path`` (and its parent folder) if missing with mode 0600, or tighten it to 0600;
    SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        return  # not ours to create (read-only mount, ...); SQLite will say what is wrong
    for member in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if member.exists():
            _tighten(member, 0o600)


def _tighten(path: Path, mode: int) -> None:
    try:
        if path.stat().st_mode & 0o777 & ~mode:
            path.chmod(mode)
    except OSError:
        pass  # owned by another user (a shared mount): leave it to the operator


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
