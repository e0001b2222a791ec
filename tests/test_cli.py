"""The ``payops`` command line, driven through its real Typer app on both backends.

Each CLI invocation reads its settings from the environment (``get_settings`` is cached, so the
cache is cleared around every call); HTTP checks run the real ASGI app on the same database, data
directory and secret key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from asgi_lifespan import LifespanManager
from click.testing import Result
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from payops.api.app import create_app
from payops.auth import secrets as auth_secrets
from payops.cli.main import app as cli_app
from payops.config import Settings, get_settings
from tests.conftest import basic, make_settings

API_KEY = re.compile(r"^([A-Za-z0-9]{8})\.([A-Za-z0-9]{32})$", re.MULTILINE)
PASSWORD = "correct horse battery"
DECLINED_CARD = "4000000000000002"
PENDING_CARD = "4000000000000259"


class Cli:
    """Runs ``payops`` commands in-process with a fixed PAYOPS_* environment."""

    def __init__(self, data_dir: Path, database_url: str | None, secret_key: str) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.secret_key = secret_key
        self.env = {
            "PAYOPS_DATA_DIR": str(data_dir),
            "PAYOPS_DATABASE_URL": database_url or "",
            "PAYOPS_SECRET_KEY": secret_key,
            "PAYOPS_SANDBOX_QUEUE_SECONDS": "0.3",
            "PAYOPS_SANDBOX_LATENCY_MS": "0",
            "COLUMNS": "300",  # wide enough that rich never wraps or truncates a table cell
        }
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        get_settings.cache_clear()
        try:
            return self.runner.invoke(cli_app, list(args), env=self.env, input=input)
        finally:
            get_settings.cache_clear()

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    def fails(self, *args: str, match: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 2, (result.output, result.exception)
        assert re.search(match, result.stderr), result.stderr
        return result

    @property
    def settings(self) -> Settings:
        # conftest's test settings (no background loops, no inquiry throttle) on the very data
        # dir, database and secret key the CLI uses.
        return make_settings(
            self.data_dir.parent,
            self.database_url or "",
            data_dir=self.data_dir,
            secret_key=self.secret_key,
        )

    # -- the HTTP API on the same deployment -------------------------------------------------
    def http(self, fn: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            application = create_app(self.settings)
            async with LifespanManager(application):
                transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://testserver"
                ) as client:
                    return await fn(client)

        return asyncio.run(main())

    def post(self, path: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
        async def call(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post(path, headers=headers, json=body)

        return self.http(call)

    def statuses(self, *credentials: dict[str, str]) -> list[int]:
        """Inquiry on an unknown order with each credential, in one app run: 401 when the
        credential is refused, 403 or 404 once it authenticates."""

        async def calls(client: httpx.AsyncClient) -> list[int]:
            return [
                (await client.post("/b/pbl/v1/inquiry/no-such-order", headers=h)).status_code
                for h in credentials
            ]

        return self.http(calls)

    # -- the database, bypassing the application ---------------------------------------------
    def sql(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        async def main() -> list[tuple[Any, ...]]:
            engine = create_async_engine(self.settings.effective_database_url)
            try:
                async with engine.connect() as conn:
                    return [tuple(r) for r in await conn.execute(text(statement), params)]
            finally:
                await engine.dispose()

        return asyncio.run(main())

    def sql_write(self, statement: str, **params: Any) -> None:
        async def main() -> None:
            engine = create_async_engine(self.settings.effective_database_url)
            try:
                async with engine.begin() as conn:
                    await conn.execute(text(statement), params)
            finally:
                await engine.dispose()

        asyncio.run(main())


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id through the real code path, with the cheapest parameters: the production
    ones cost most of a second per hash on a loaded CI machine and these tests hash many times."""
    monkeypatch.setattr(
        auth_secrets, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    return Cli(tmp_path / "data", database_url, Fernet.generate_key().decode())


def rows(output: str) -> list[list[str]]:
    """The cells of every table row rich printed (box-drawing separators)."""
    found = []
    for line in output.splitlines():
        if "│" in line:
            found.append([cell.strip() for cell in line.strip().strip("│").split("│")])
    return found


def row_for(output: str, first: str) -> list[str]:
    matches = [r for r in rows(output) if r and r[0] == first]
    assert len(matches) == 1, output
    return matches[0]


def api_key_header(key: str) -> dict[str, str]:
    return {"Authorization": f"Api-Key {key}"}


def created_key(result: Result) -> tuple[str, str, str]:
    match = API_KEY.search(result.stdout)
    assert match, result.stdout
    return match.group(0), match.group(1), match.group(2)


# -- db ---------------------------------------------------------------------------------------


def test_db_upgrade(cli: Cli) -> None:
    result = cli.ok("db", "upgrade")
    assert "is up to date" in result.stdout
    assert cli.sql("SELECT count(*) FROM alembic_version") == [(1,)]
    cli.ok("db", "upgrade")  # idempotent


def test_db_upgrade_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "fresh", None, Fernet.generate_key().decode())
    cli.ok("db", "upgrade")
    assert (tmp_path / "fresh" / "payops.sqlite3").exists()
    assert cli.sql("SELECT count(*) FROM users") == [(0,)]


def test_db_upgrade_hides_the_database_password(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "d", None, Fernet.generate_key().decode())
    cli.env["PAYOPS_DATABASE_URL"] = "postgresql+asyncpg://payops:hunter2-secret@127.0.0.1:1/x"
    result = cli("db", "upgrade")
    assert result.exit_code != 0  # nothing listens on port 1
    assert "hunter2-secret" not in result.output


# -- users ------------------------------------------------------------------------------------


def test_user_create_list_grant_revoke(cli: Cli) -> None:
    result = cli.ok(
        "user", "create", "alice", "--password-stdin", "-p", "payment.refund", input=PASSWORD
    )
    assert "created user alice" in result.stdout
    assert PASSWORD not in result.output
    # Never taken as an argument (it would show in `ps` and the shell's history).
    cli.fails("user", "create", "dave", "--password", PASSWORD, match="No such option")
    # The prompt path: hidden input, asked twice.
    cli.ok("user", "create", "bob", "--superuser", input=f"{PASSWORD}\n{PASSWORD}\n")

    listed = cli.ok("user", "list").stdout
    assert row_for(listed, "alice") == ["alice", "no", "yes", "payment.refund"]
    assert row_for(listed, "bob") == ["bob", "yes", "yes", "-"]
    assert PASSWORD not in listed

    granted = cli.ok("user", "grant", "alice", "payment.capture")
    assert "alice: payment.capture, payment.refund" in granted.stdout
    again = cli.ok("user", "grant", "alice", "payment.capture")  # granting again changes nothing
    assert "alice: payment.capture, payment.refund" in again.stdout
    assert row_for(cli.ok("user", "list").stdout, "alice")[3] == "payment.capture, payment.refund"

    revoked = cli.ok("user", "grant", "alice", "payment.refund", "--revoke")
    assert "alice: payment.capture" in revoked.stdout
    assert row_for(cli.ok("user", "list").stdout, "alice")[3] == "payment.capture"
    cli.ok("user", "grant", "alice", "payment.capture", "--revoke")
    assert row_for(cli.ok("user", "list").stdout, "alice")[3] == "-"

    for (stored,) in cli.sql("SELECT password_hash FROM users"):
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
    # Over HTTP: alice authenticates but lacks payment.inquiry (403); bob is a superuser.
    assert cli.statuses(
        basic("alice", PASSWORD), basic("alice", "wrong password"), basic("bob", PASSWORD)
    ) == [403, 401, 404]
    cli.ok("user", "grant", "alice", "payment.inquiry")
    assert cli.statuses(basic("alice", PASSWORD)) == [404]


def test_user_refusals(cli: Cli) -> None:
    cli.fails(
        "user",
        "create",
        "alice",
        "--password-stdin",
        "-p",
        "payment.teleport",
        match="unknown permission.*payment.teleport",
    )
    cli.fails(
        "user", "create", "carol", "--password-stdin", input="short", match="at least 8 characters"
    )
    assert cli.sql("SELECT count(*) FROM users") == [(0,)]

    cli.ok("user", "create", "alice", "--password-stdin", input=PASSWORD)
    cli.fails("user", "grant", "alice", "payment.teleport", match="unknown permission")
    cli.fails("user", "grant", "alice", "payment.capture", "nope", match="unknown permission")
    cli.fails("user", "grant", "nobody", "payment.capture", match="no user 'nobody'")
    cli.fails(
        "user",
        "create",
        "alice",
        "--password-stdin",
        input="another password",
        match="user 'alice' exists",
    )
    assert row_for(cli.ok("user", "list").stdout, "alice")[3] == "-"
    assert cli.sql("SELECT count(*) FROM users") == [(1,)]
    # The duplicate did not replace the password.
    assert cli.statuses(basic("alice", PASSWORD), basic("alice", "another password")) == [403, 401]


# -- API keys ---------------------------------------------------------------------------------


def test_apikey_create_authenticate_list_revoke(cli: Cli) -> None:
    result = cli.ok("apikey", "create", "ci-key")
    key, prefix, secret = created_key(result)
    assert f"prefix {prefix}" in result.stdout
    other, other_prefix, other_secret = created_key(cli.ok("apikey", "create", "other"))

    # Stored as prefix + SHA-256 of the secret only.
    stored = cli.sql("SELECT prefix, secret_hash, name FROM api_keys WHERE prefix=:p", p=prefix)
    assert stored == [(prefix, hashlib.sha256(secret.encode()).hexdigest(), "ci-key")]
    assert secret not in repr(cli.sql("SELECT * FROM api_keys"))

    # 404: authenticated (unknown order); 401: refused.
    assert cli.statuses(
        api_key_header(key), api_key_header(f"{prefix}.{'x' * 32}"), api_key_header(other), {}
    ) == [404, 401, 404, 401]

    cli.ok("apikey", "revoke", prefix)
    revoked = cli.ok("apikey", "revoke", other)  # the whole key is accepted too
    assert f"revoked API key {other_prefix}" in revoked.stdout and other not in revoked.output
    assert cli.statuses(api_key_header(key), api_key_header(other)) == [401, 401]

    _, live_prefix, live_secret = created_key(
        cli.ok("apikey", "create", "short-lived", "--expires-in-days", "1")
    )
    listed = cli.ok("apikey", "list").stdout
    for full, _prefix, sec in (
        (key, prefix, secret),
        (other, other_prefix, other_secret),
        (None, live_prefix, live_secret),
    ):
        assert sec not in listed and sec[:8] not in listed
        assert full is None or full not in listed
    assert row_for(listed, prefix)[1] == "ci-key" and row_for(listed, prefix)[4] != "-"
    assert row_for(listed, live_prefix)[3] != "-" and row_for(listed, live_prefix)[4] == "-"

    cli.fails("apikey", "revoke", "ZZZZZZZZ", match="no API key with prefix")
    cli.fails("apikey", "create", "n" * 51, match="at most 50 characters")
    assert cli.sql("SELECT count(*) FROM api_keys") == [(3,)]


# -- gateways ---------------------------------------------------------------------------------


def test_gateway_add_and_list(cli: Cli) -> None:
    result = cli.ok(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "X",
        "--mode",
        "authorize",
        "--currency",
        "KWD",
        "--accept",
        "USD",
    )
    assert "added gateway X (sandbox, authorize, KWD)" in result.stdout
    cli.ok(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "refund-only",
        "--currency",
        "usd",
        "--operation",
        "refund",
        "--operation",
        "inquiry",
        "--production",
        "--single-attempt",
    )
    listed = cli.ok("gateway", "list").stdout
    assert row_for(listed, "X") == [
        "X",
        "sandbox",
        "authorize",
        "KWD",
        "KWD, USD",
        "capture, inquiry, refund, void",
        "yes",
    ]
    assert row_for(listed, "refund-only") == [
        "refund-only",
        "sandbox",
        "purchase",
        "USD",
        "USD",
        "inquiry, refund",
        "no",
    ]
    [(multi,)] = cli.sql("SELECT multi_attempt FROM gateway_configs WHERE pg_code='refund-only'")
    assert not multi


def test_gateway_add_refusals(cli: Cli) -> None:
    cli.ok("gateway", "add", "sandbox", "--code", "X", "--currency", "KWD")
    cli.fails(
        "gateway", "add", "sandbox", "--code", "X", "--currency", "KWD", match="code 'X' exists"
    )
    cli.fails(
        "gateway",
        "add",
        "teleport",
        "--code",
        "Y",
        "--currency",
        "KWD",
        match="unknown connector 'teleport'",
    )
    cli.fails(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "Y",
        "--mode",
        "sale",
        "--currency",
        "KWD",
        match="operation mode must be one of purchase, authorize",
    )
    cli.fails(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "Y",
        "--currency",
        "XYZ",
        match="unknown currency XYZ",
    )
    cli.fails(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "Y",
        "--currency",
        "KWD",
        "--accept",
        "QQQ",
        match="unknown currency QQQ",
    )
    cli.fails(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "Y",
        "--currency",
        "KWD",
        "--operation",
        "teleport",
        match="cannot perform: teleport",
    )
    cli.fails(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "Y",
        "--currency",
        "KWD",
        "--credentials",
        "{not json",
        match="must be a JSON object",
    )
    cli.fails(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "Y",
        "--currency",
        "KWD",
        "--credentials",
        "[1, 2]",
        match="must be a JSON object",
    )
    assert cli.sql("SELECT pg_code FROM gateway_configs") == [("X",)]


def test_gateway_credentials_encrypted_and_never_printed(cli: Cli) -> None:
    secret = "s3cr3t-value"
    added = cli.ok(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "X",
        "--currency",
        "KWD",
        "--credentials",
        json.dumps({"secret": secret, "merchant_id": "MID-42"}),
    )
    assert secret not in added.output
    [(column,)] = cli.sql("SELECT credentials_encrypted FROM gateway_configs WHERE pg_code='X'")
    assert column and secret not in column and "MID-42" not in column
    assert secret not in repr(cli.sql("SELECT * FROM gateway_configs"))
    # It is Fernet under the configured key, and opens to what was given.
    assert json.loads(Fernet(cli.secret_key.encode()).decrypt(column.encode())) == {
        "merchant_id": "MID-42",
        "secret": secret,
    }
    listed = cli.ok("gateway", "list").output
    assert row_for(listed, "X")[0] == "X"
    assert secret not in listed and "MID-42" not in listed and column not in listed


# -- transactions -----------------------------------------------------------------------------


def _gateways(cli: Cli) -> None:
    cli.ok("gateway", "add", "sandbox", "--code", "gw-p", "--currency", "KWD")
    cli.ok(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "gw-a",
        "--mode",
        "authorize",
        "--currency",
        "KWD",
        "--accept",
        "USD",
    )
    cli.ok("gateway", "add", "sandbox", "--code", "gw-s", "--currency", "KWD", "--single-attempt")


def test_txn_create_states(cli: Cli) -> None:
    _gateways(cli)
    result = cli.ok(
        "txn",
        "create",
        "--amount",
        "25.000",
        "--currency",
        "KWD",
        "--pg-code",
        "gw-p",
        "--order-no",
        "o1",
    )
    body = json.loads(result.stdout)
    session = body.pop("session_id")
    assert re.fullmatch(r"[0-9a-f]{40}", session)
    assert body == {
        "order_no": "o1",
        "state": "paid",
        "amount": "25.000",
        "currency_code": "KWD",
        "pg_code": "gw-p",
    }
    assert cli.sql(
        "SELECT state, paid_total, authorized_total FROM payment_transactions WHERE session_id=:s",
        s=session,
    ) == [("paid", 25_000, 0)]

    authorized = json.loads(
        cli.ok(
            "txn",
            "create",
            "--amount",
            "25.000",
            "--currency",
            "KWD",
            "--pg-code",
            "gw-a",
            "--order-no",
            "o2",
        ).stdout
    )
    assert authorized["state"] == "authorized"

    cases = [
        ("gw-p", DECLINED_CARD, "attempted"),
        ("gw-a", DECLINED_CARD, "attempted"),
        ("gw-s", DECLINED_CARD, "failed"),
        ("gw-p", PENDING_CARD, "pending"),
    ]
    for number, (pg_code, card, state) in enumerate(cases):
        out = cli.ok(
            "txn",
            "create",
            "--amount",
            "25.000",
            "--currency",
            "KWD",
            "--pg-code",
            pg_code,
            "--order-no",
            f"card-{number}",
            "--card",
            card,
            "--print",
            "state",
        )
        assert out.stdout == f"{state}\n", (pg_code, card)
        assert card not in out.output
    assert DECLINED_CARD not in repr(cli.sql("SELECT * FROM payment_attempts"))
    assert PENDING_CARD not in repr(cli.sql("SELECT * FROM payment_attempts"))

    # --print for scripts; a generated order number; a currency the gateway also accepts.
    usd = cli.ok(
        "txn",
        "create",
        "--amount",
        "10.50",
        "--currency",
        "usd",
        "--pg-code",
        "gw-a",
        "--print",
        "session_id",
    ).stdout
    assert re.fullmatch(r"[0-9a-f]{40}\n", usd)
    [(order_no, state, amount, currency)] = cli.sql(
        "SELECT order_no, state, amount, currency_code FROM payment_transactions "
        "WHERE session_id=:s",
        s=usd.strip(),
    )
    assert order_no.startswith("demo-") and (state, amount, currency) == ("authorized", 1050, "USD")


def test_txn_create_and_show_refusals(cli: Cli) -> None:
    _gateways(cli)
    cli.ok(
        "txn",
        "create",
        "--amount",
        "25.000",
        "--currency",
        "KWD",
        "--pg-code",
        "gw-p",
        "--order-no",
        "o1",
    )
    cli.fails(
        "txn",
        "create",
        "--amount",
        "1.000",
        "--currency",
        "KWD",
        "--pg-code",
        "gw-p",
        "--order-no",
        "o1",
        match="order number 'o1' is taken",
    )
    cli.fails(
        "txn",
        "create",
        "--amount",
        "1.000",
        "--currency",
        "KWD",
        "--pg-code",
        "nope",
        match="no sandbox gateway configuration 'nope'",
    )
    cli.fails(
        "txn",
        "create",
        "--amount",
        "1.0001",
        "--currency",
        "KWD",
        "--pg-code",
        "gw-p",
        match="amount",
    )
    cli.fails(
        "txn", "create", "--amount", "-1", "--currency", "KWD", "--pg-code", "gw-p", match="amount"
    )
    assert cli.sql("SELECT count(*) FROM payment_transactions") == [(1,)]
    cli.fails("txn", "show", "nope", match="no such transaction")
    cli.fails("txn", "show", match="order number or --session-id")


def test_txn_create_refused_currency_leaves_nothing(cli: Cli) -> None:
    _gateways(cli)
    cli.fails(
        "txn",
        "create",
        "--amount",
        "1.00",
        "--currency",
        "USD",
        "--pg-code",
        "gw-p",
        "--order-no",
        "u1",
        match="does not accept USD",
    )
    assert cli.sql("SELECT count(*) FROM payment_transactions") == [(0,)]


def test_txn_show_parent_and_child_after_http_refund(cli: Cli) -> None:
    _gateways(cli)
    session = cli.ok(
        "txn",
        "create",
        "--amount",
        "25.000",
        "--currency",
        "KWD",
        "--pg-code",
        "gw-p",
        "--order-no",
        "o1",
        "--fee",
        "1.000",
        "--print",
        "session_id",
    ).stdout.strip()
    key, _, _ = created_key(cli.ok("apikey", "create", "ops"))
    refund = cli.post(
        "/b/pbl/v1/operation/o1", api_key_header(key), {"operation": "refund", "amount": "5.000"}
    )
    assert refund.status_code == 200, refund.text
    child = refund.json()["txn"]
    reference = refund.json()["reference_number"]

    shown = cli.ok("txn", "show", "o1").stdout
    assert row_for(shown, "session_id") == ["session_id", session]
    assert row_for(shown, "order_no") == ["order_no", "o1"]
    assert row_for(shown, "state") == ["state", "paid"]
    assert row_for(shown, "amount") == ["amount", "25.000 KWD"]
    assert row_for(shown, "fee") == ["fee", "1.000"]
    assert row_for(shown, "gateway") == ["gateway", "gw-p"]
    assert row_for(shown, "mode") == ["mode", "purchase"]
    assert row_for(shown, "paid") == ["paid", "26.000"]
    assert row_for(shown, "refunded") == ["refunded", "5.000"]
    attempt = [r for r in rows(shown) if len(r) == 5 and r[1] == "success"]
    assert len(attempt) == 1 and attempt[0][2:4] == ["26.000", "gw-p"]
    op = row_for(shown, reference)
    assert op[:6] == [reference, "refund", "succeeded", "refunded", "5.000", child["session_id"]]
    assert child["session_id"] != session

    by_session = cli.ok("txn", "show", "--session-id", session).stdout
    assert row_for(by_session, reference)[5] == child["session_id"]


def test_pending_card_paid_by_inquiry_then_refunded(cli: Cli) -> None:
    _gateways(cli)
    cli.ok(
        "txn",
        "create",
        "--amount",
        "25.000",
        "--currency",
        "KWD",
        "--pg-code",
        "gw-p",
        "--order-no",
        "o1",
        "--card",
        PENDING_CARD,
    )
    key, _, _ = created_key(cli.ok("apikey", "create", "ops"))
    inquiry = cli.post("/b/pbl/v1/inquiry/o1", api_key_header(key))
    assert inquiry.status_code == 200, inquiry.text
    assert inquiry.json()["state"] == "paid"
    refund = cli.post(
        "/b/pbl/v1/operation/o1", api_key_header(key), {"operation": "refund", "amount": "5.000"}
    )
    assert refund.status_code == 200, refund.text


# -- demo -------------------------------------------------------------------------------------


def _demo(cli: Cli) -> tuple[str, str, str]:
    out = cli.ok("demo").stdout
    password = row_for(out, "password")[1]
    key = row_for(out, "API key")[1]
    hmac_key = row_for(out, "webhook HMAC key")[1]
    assert row_for(out, "Basic user") == ["Basic user", "demo"]
    assert API_KEY.fullmatch(key)
    assert len(password) >= 12 and hmac_key
    return password, key, hmac_key


def test_demo_is_rerunnable_and_its_credentials_work(cli: Cli) -> None:
    password, key, hmac_key = _demo(cli)
    assert cli.statuses(basic("demo", password), api_key_header(key)) == [404, 404]
    listed = cli.ok("gateway", "list").stdout
    assert row_for(listed, "sandbox-kwd")[1:4] == ["sandbox", "purchase", "KWD"]
    assert row_for(listed, "sandbox-auth-kwd")[1:4] == ["sandbox", "authorize", "KWD"]
    assert row_for(listed, "sandbox-usd")[1:4] == ["sandbox", "purchase", "USD"]
    assert row_for(cli.ok("user", "list").stdout, "demo")[:3] == ["demo", "yes", "yes"]

    env_file = cli.data_dir / "demo.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert {
        "PAYOPS_DEMO_USER=demo",
        f"PAYOPS_DEMO_PASSWORD={password}",
        f"PAYOPS_DEMO_API_KEY={key}",
    } <= set(env_file.read_text().splitlines())

    password2, key2, hmac_key2 = _demo(cli)
    assert password2 != password and key2 != key
    assert hmac_key2 == hmac_key  # kept: receivers already verify with it
    # The password is reset on every run; earlier API keys stay valid.
    assert cli.statuses(
        basic("demo", password2), api_key_header(key2), basic("demo", password), api_key_header(key)
    ) == [404, 404, 401, 404]
    assert cli.sql("SELECT count(*) FROM users") == [(1,)]
    assert cli.sql("SELECT count(*) FROM gateway_configs") == [(3,)]
    assert cli.sql("SELECT count(*) FROM api_keys") == [(2,)]

    # The README walk-through: pay at a demo gateway and refund over HTTP with the demo key.
    cli.ok(
        "txn",
        "create",
        "--amount",
        "25.000",
        "--currency",
        "KWD",
        "--pg-code",
        "sandbox-kwd",
        "--order-no",
        "walk-1",
    )
    refund = cli.post(
        "/b/pbl/v1/operation/walk-1",
        api_key_header(key2),
        {"operation": "refund", "amount": "5.000"},
    )
    assert refund.status_code == 200, refund.text
    assert refund.json()["txn"]["state"] == "refunded"


# -- webhooks ---------------------------------------------------------------------------------


def test_webhooks_list_failed_and_retry(cli: Cli) -> None:
    _gateways(cli)
    for order in ("w1", "w2"):
        cli.ok(
            "txn",
            "create",
            "--amount",
            "1.000",
            "--currency",
            "KWD",
            "--pg-code",
            "gw-p",
            "--order-no",
            order,
            "--webhook-url",
            f"https://merchant.example/{order}",
        )
    events = cli.sql("SELECT id, target_url, state FROM outbox_events ORDER BY id")
    assert [(url, state) for _, url, state in events] == [
        ("https://merchant.example/w1", "pending"),
        ("https://merchant.example/w2", "pending"),
    ]
    (first, _, _), (second, _, _) = events
    listed = rows(cli.ok("webhooks", "list").stdout)
    assert [r[0] for r in listed if r[0].isdigit()] == [str(second), str(first)]  # newest first

    cli.sql_write("UPDATE outbox_events SET state='failed', attempts=7 WHERE id=:i", i=first)
    failed = [r for r in rows(cli.ok("webhooks", "list", "--failed").stdout) if r[0].isdigit()]
    assert [(r[0], r[3], r[4]) for r in failed] == [(str(first), "failed", "7")]

    assert f"event {first} queued" in cli.ok("webhooks", "retry", str(first)).stdout
    assert cli.sql("SELECT state, attempts FROM outbox_events WHERE id=:i", i=first) == [
        ("pending", 0)
    ]
    cli.sql_write("UPDATE outbox_events SET state='delivered' WHERE id=:i", i=second)
    cli.fails("webhooks", "retry", str(second), match="delivered already")
    cli.fails("webhooks", "retry", "999999", match="no webhook event 999999")
