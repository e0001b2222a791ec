"""Secrets are masked wherever an object is printed, connectors get only what they need, and
the encryption key is read once, not on every gateway call."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet

from payops.config import Settings
from payops.connectors.base import ConnectorConfig
from payops.db.models import GatewayConfig
from payops.gateways.crypto import KEY_FILE
from payops.gateways.service import connector_for, secret_box

API_PASSWORD = "mpgs-api-password-5f1c"
WEBHOOK_SECRET = "whsec-9a8b7c"
DB_PASSWORD = "db-pass-3e4f"


def gateway(settings: Settings, connector: str = "mpgs") -> GatewayConfig:
    box = secret_box(settings)
    return GatewayConfig(
        pg_code=f"{connector}-kwd",
        connector=connector,
        operation_mode="authorize",
        default_currency="KWD",
        accepted_currencies=["KWD"],
        is_sandbox=True,
        credentials_encrypted=box.seal({"merchant_id": "M1", "api_password": API_PASSWORD}),
        options={},
        enabled_operations=[],
        webhook_secret_encrypted=box.seal({"secret": WEBHOOK_SECRET}),
    )


def test_settings_repr_masks_the_master_key_database_password_and_metrics_token(
    tmp_path: Path,
) -> None:
    key = Fernet.generate_key().decode()
    settings = Settings(
        data_dir=tmp_path,
        secret_key=key,
        metrics_token="metrics-tok-1",
        database_url=f"postgresql+asyncpg://payops:{DB_PASSWORD}@db/payops",
    )
    shown = repr(settings) + str(settings)
    for secret in (key, DB_PASSWORD, "metrics-tok-1"):
        assert secret not in shown
    # the values themselves are unchanged for the code that needs them
    assert settings.secret_key == key
    assert DB_PASSWORD in settings.effective_database_url


def test_connector_config_repr_masks_credentials_and_webhook_secret(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key=Fernet.generate_key().decode())
    connector = connector_for(gateway(settings), settings)
    shown = repr(connector.config) + str(connector.config.credentials)
    assert API_PASSWORD not in shown and WEBHOOK_SECRET not in shown
    assert "api_password" in shown  # the names stay visible
    assert connector.config.credentials["api_password"] == API_PASSWORD
    assert connector.config.webhook_secret == WEBHOOK_SECRET
    # a hand-built configuration is masked the same way
    assert "s3cret" not in repr(
        ConnectorConfig("x", True, {"api_key": "s3cret"}, webhook_secret="s3cret")
    )


def test_connectors_get_no_process_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, secret_key=Fernet.generate_key().decode(), sandbox_queue_seconds=1.5
    )
    mpgs = connector_for(gateway(settings), settings)
    assert not hasattr(mpgs.config, "settings")
    assert mpgs.config.deployment == {}
    sandbox = connector_for(gateway(settings, "sandbox"), settings)
    assert set(sandbox.config.deployment) == {"ledger_path", "queue_seconds", "latency_ms"}
    assert sandbox.queue_seconds == 1.5


def test_the_encryption_key_is_read_once_not_per_gateway_call(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)  # the key is generated into the data dir
    config = gateway(settings)
    assert connector_for(config, settings).config.credentials["api_password"] == API_PASSWORD
    # Replace the key file: a process that re-read it on every call could no longer decrypt.
    (tmp_path / KEY_FILE).write_bytes(Fernet.generate_key())
    assert connector_for(config, settings).config.credentials["api_password"] == API_PASSWORD
