"""Secrets at rest: private file modes, the merchant HMAC key encrypted, key rotation with
`payops secret rotate`, and a wrong PAYOPS_SECRET_KEY stopping the start with one line."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet

from payops.api.app import create_app
from payops.gateways.crypto import SecretKeyMismatch
from payops.webhooks.signing import verify
from tests.test_cli import Cli
from tests.webhooks.receiver import Receiver, receiving

HMAC_KEY = "merchant-hmac-key-0123456789"
GATEWAY_SECRET = "gw-s3cr3t-value"


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    return Cli(tmp_path / "data", database_url, Fernet.generate_key().decode())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_database_key_and_ledger_are_private(tmp_path: Path) -> None:
    # The default deployment: SQLite file and generated secret key in the data dir.
    cli = Cli(tmp_path / "data", None, "")
    del cli.env["PAYOPS_DATABASE_URL"]
    del cli.env["PAYOPS_SECRET_KEY"]
    old_umask = os.umask(0o022)  # an ordinary umask: files would be 0644, folders 0755
    try:
        cli.ok("demo")
        cli.ok(
            "txn", "create", "--amount", "5.000", "--currency", "KWD", "--pg-code", "sandbox-kwd"
        )
    finally:
        os.umask(old_umask)
    data = tmp_path / "data"
    assert mode(data) == 0o700
    for name in ("payops.sqlite3", "secret.key", "sandbox-gateway.sqlite3", "demo.env"):
        assert mode(data / name) == 0o600, name
    for extra in data.glob("*.sqlite3-*"):  # WAL and shared-memory files follow the database
        assert mode(extra) & 0o077 == 0, extra.name


def test_an_existing_open_data_dir_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "payops.sqlite3").touch(mode=0o644)
    (data / "payops.sqlite3").chmod(0o644)
    cli = Cli(data, None, Fernet.generate_key().decode())
    del cli.env["PAYOPS_DATABASE_URL"]
    cli.ok("db", "upgrade")
    assert mode(data) == 0o700 and mode(data / "payops.sqlite3") == 0o600


def test_hmac_key_is_stored_encrypted_and_still_signs(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    cli.ok("webhook", "key", "set", input=f"{HMAC_KEY}\n{HMAC_KEY}\n")
    [(stored,)] = cli.sql("SELECT value FROM merchant_settings WHERE key='webhook_hmac_key'")
    assert HMAC_KEY not in stored and stored.startswith("fernet:")
    assert Fernet(cli.secret_key.encode()).decrypt(stored[len("fernet:") :]).decode() == HMAC_KEY
    assert HMAC_KEY not in repr(cli.sql("SELECT * FROM merchant_settings"))
    body = delivered_payment_webhook(cli)
    assert verify(body, body["signature"], HMAC_KEY)


def delivered_payment_webhook(cli: Cli) -> dict[str, Any]:
    """A sandbox payment whose webhook is delivered to a local receiver; its body."""
    cli.ok("gateway", "add", "sandbox", "--code", "sandbox-kwd", "--currency", "KWD")
    with receiving(Receiver()) as receiver:
        cli.ok(
            "txn",
            "create",
            "--amount",
            "5.000",
            "--currency",
            "KWD",
            "--pg-code",
            "sandbox-kwd",
            "--webhook-url",
            receiver.url,
        )
        cli.env["PAYOPS_WEBHOOK_ALLOW_PRIVATE"] = "true"
        cli.ok("webhooks", "deliver")
    [delivered] = receiver.delivered
    return delivered.body


def test_a_plaintext_hmac_key_from_an_older_version_is_encrypted_at_start(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    cli.sql_write(
        "INSERT INTO merchant_settings (key, value) VALUES ('webhook_hmac_key', :v)", v=HMAC_KEY
    )
    assert cli.sql("SELECT value FROM merchant_settings") == [(HMAC_KEY,)]
    cli.http(lambda client: client.get("/healthz"))  # the application starts once
    [(stored,)] = cli.sql("SELECT value FROM merchant_settings WHERE key='webhook_hmac_key'")
    assert stored.startswith("fernet:") and HMAC_KEY not in stored
    body = delivered_payment_webhook(cli)
    assert verify(body, body["signature"], HMAC_KEY)


def test_secret_rotate_re_encrypts_everything_under_the_new_key(cli: Cli) -> None:
    old_key = cli.secret_key
    cli.ok("db", "upgrade")
    cli.ok(
        "gateway",
        "add",
        "mpgs",
        "--code",
        "mpgs-kwd",
        "--currency",
        "KWD",
        "--credentials",
        json.dumps({"merchant_id": "TEST1", "api_password": GATEWAY_SECRET}),
        "--webhook-secret",
        "notification-secret",
    )
    cli.ok("webhook", "key", "set", input=f"{HMAC_KEY}\n{HMAC_KEY}\n")

    new_key = cli.ok("secret", "new-key").stdout.strip()
    Fernet(new_key.encode())  # a valid key
    cli.env["PAYOPS_SECRET_KEY"] = f"{new_key},{old_key}"
    result = cli.ok("secret", "rotate")
    assert "2 gateway secret(s) and 1 setting(s)" in result.stdout

    cli.env["PAYOPS_SECRET_KEY"] = cli.secret_key = new_key  # the old key is gone
    [(credentials, webhook_secret)] = cli.sql(
        "SELECT credentials_encrypted, webhook_secret_encrypted FROM gateway_configs"
    )
    assert (
        json.loads(Fernet(new_key.encode()).decrypt(credentials))["api_password"] == GATEWAY_SECRET
    )
    assert json.loads(Fernet(new_key.encode()).decrypt(webhook_secret)) == {
        "secret": "notification-secret"
    }
    [(hmac_row,)] = cli.sql("SELECT value FROM merchant_settings WHERE key='webhook_hmac_key'")
    assert Fernet(new_key.encode()).decrypt(hmac_row[len("fernet:") :]).decode() == HMAC_KEY
    assert cli.http(lambda client: client.get("/healthz")).status_code == 200

    cli.env["PAYOPS_SECRET_KEY"] = old_key  # only the old key: nothing opens any more
    cli.fails("secret", "rotate", match="PAYOPS_SECRET_KEY does not decrypt")


def test_a_wrong_secret_key_stops_serve_with_one_line(cli: Cli, tmp_path: Path) -> None:
    cli.ok("db", "upgrade")
    cli.ok(
        "gateway",
        "add",
        "mpgs",
        "--code",
        "mpgs-kwd",
        "--currency",
        "KWD",
        "--credentials",
        json.dumps({"merchant_id": "TEST1", "api_password": "x"}),
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAYOPS_")}
    env.update(cli.env)
    env["PAYOPS_SECRET_KEY"] = Fernet.generate_key().decode()
    env["PAYOPS_PORT"] = "1"  # never reached: the check comes first
    done = subprocess.run(
        [sys.executable, "-m", "payops.cli.main", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert (
        "PAYOPS_SECRET_KEY does not decrypt the stored credentials of gateway 'mpgs-kwd'"
        in lines[0]
    )


def test_a_wrong_secret_key_stops_the_application_start(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    cli.ok("webhook", "key", "set", input=f"{HMAC_KEY}\n{HMAC_KEY}\n")
    wrong = cli.settings.model_copy(update={"secret_key": Fernet.generate_key().decode()})

    async def start() -> None:
        async with LifespanManager(create_app(wrong)):
            pass

    with pytest.raises(SecretKeyMismatch, match="setting 'webhook_hmac_key'"):
        asyncio.run(start())
    # With the right key the same database starts.
    assert cli.http(lambda client: client.get("/readyz")).json() == {"status": "ok"}


def test_the_app_still_starts_before_the_database_is_migrated(tmp_path: Path) -> None:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}")

    async def start() -> int:
        application = create_app(settings)
        async with LifespanManager(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return (await client.get("/healthz")).status_code

    assert asyncio.run(start()) == 200
