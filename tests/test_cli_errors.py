"""The CLI's manners: ``--help`` loads no heavy stack, an ordinary mistake is one line on stderr
with exit code 2 (never a traceback), and ``payops serve`` says where it listens and writes every
log line as one JSON object."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from tests.conftest import _pg_admin
from tests.helpers import serve_env, wait_until_healthy
from tests.live import free_port
from tests.test_cli import Cli

HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "httpx",
    "asyncpg",
    "aiosqlite",
)
CONNECTOR_MODULES = (
    "payops.connectors.sandbox",
    "payops.connectors.mpgs",
    "payops.connectors.tabby",
    "payops.connectors.ngenius",
    "payops.connectors.myfatoorah",
    "payops.connectors.knet",
    "payops.connectors.payu_india",
    "payops.connectors.qpay",
    "payops.connectors.kit",
)
# Runs `payops ARGS` as the console script does and prints the modules it loaded.
PROBE = """
import json, sys
from payops.cli.main import app
try:
    app(args=sys.argv[1:], prog_name="payops")
except SystemExit as done:
    code = done.code
print("\\n@@MODULES@@" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded_by(*args: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    report = json.loads(done.stdout.rsplit("@@MODULES@@", 1)[1])
    return report["code"], report["modules"]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["serve", "--help"],
        ["db", "--help"],
        ["user", "--help"],
        ["apikey", "--help"],
        ["gateway", "--help"],
        ["gateway", "add", "--help"],
        ["txn", "--help"],
        ["ops", "--help"],
        ["webhook", "--help"],
        ["webhooks", "--help"],
        ["secret", "--help"],
        ["reconcile", "--help"],
        ["demo", "--help"],
    ],
)
def test_help_loads_neither_the_web_stack_nor_the_database_nor_a_connector(
    args: list[str],
) -> None:
    code, modules = loaded_by(*args)
    assert code in (0, None)
    heavy = [
        m
        for m in modules
        if m.split(".")[0] in HEAVY
        or any(m == c or m.startswith(c + ".") for c in CONNECTOR_MODULES)
    ]
    assert heavy == [], heavy
    # The probe can see a heavy import: a command that runs loads them.
    assert "payops.cli.gateways" in modules


def test_a_command_that_runs_does_load_the_database_layer(tmp_path: Path) -> None:
    """The probe above could not pass by never seeing sys.modules fill up."""
    env = {
        **os.environ,
        "PAYOPS_DATA_DIR": str(tmp_path / "data"),
        "PAYOPS_SECRET_KEY": Fernet.generate_key().decode(),
        "PAYOPS_DATABASE_URL": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    report = json.loads(done.stdout.rsplit("@@MODULES@@", 1)[1])
    assert report["code"] in (0, None), done.stderr
    assert "sqlalchemy" in report["modules"] and "alembic" in report["modules"]


# -- ordinary mistakes ------------------------------------------------------------------------


def one_line(result: Result, *needles: str) -> str:
    """Exit 2, no traceback, exactly one non-empty stderr line holding every needle."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def fresh(tmp_path: Path) -> Cli:
    """The CLI on a data directory where nothing exists yet (the embedded database)."""
    return Cli(tmp_path / "data", None, Fernet.generate_key().decode())


@pytest.mark.parametrize(
    "args",
    [
        ["user", "list"],
        ["apikey", "create", "shop"],
        ["gateway", "list"],
        ["txn", "show", "o1"],
        ["ops", "list"],
        ["webhooks", "list"],
        ["reconcile"],
    ],
)
def test_no_database_yet(fresh: Cli, args: list[str]) -> None:
    one_line(fresh(*args), "no database yet", "payops db upgrade")
    assert not (fresh.data_dir / "payops.sqlite3").exists(), "an empty database was created"


def test_an_empty_database_file_says_to_migrate(fresh: Cli) -> None:
    fresh.data_dir.mkdir(parents=True)
    (fresh.data_dir / "payops.sqlite3").touch()
    one_line(fresh("user", "list"), "no PayOps schema yet", "payops db upgrade")


def test_postgresql_without_the_schema_or_the_database(fresh: Cli, postgres_url: str) -> None:
    empty = f"payops_cli_empty_{os.getpid()}"
    asyncio.run(_pg_admin([f'DROP DATABASE IF EXISTS "{empty}"', f'CREATE DATABASE "{empty}"']))
    try:
        url = make_url(postgres_url)
        fresh.env["PAYOPS_DATABASE_URL"] = url.set(database=empty).render_as_string(False)
        one_line(fresh("user", "list"), "no PayOps schema yet", "payops db upgrade")
        missing = url.set(database=f"{empty}_missing").render_as_string(False)
        fresh.env["PAYOPS_DATABASE_URL"] = missing
        one_line(fresh("user", "list"), f"{empty}_missing does not exist", "createdb")
        one_line(fresh("db", "upgrade"), f"{empty}_missing does not exist", "createdb")
    finally:
        asyncio.run(_pg_admin([f'DROP DATABASE IF EXISTS "{empty}" WITH (FORCE)']))


@pytest.mark.parametrize("args", [["user", "list"], ["db", "upgrade"], ["gateway", "list"]])
def test_unreachable_database(fresh: Cli, args: list[str]) -> None:
    closed = free_port()  # nothing listens there
    fresh.env["PAYOPS_DATABASE_URL"] = (
        f"postgresql+asyncpg://payops:hunter2-secret@127.0.0.1:{closed}/payops"
    )
    line = one_line(
        fresh(*args),
        "cannot reach the database",
        f"127.0.0.1:{closed}",
        "connection refused",
        "PAYOPS_DATABASE_URL",
    )
    assert "hunter2-secret" not in line


def test_a_bad_setting_names_its_variable(fresh: Cli) -> None:
    fresh.env["PAYOPS_PORT"] = "eighty"
    line = one_line(fresh("user", "list"), "PAYOPS_PORT", "not valid")
    assert "eighty" not in line  # an input is never echoed: it may be a secret


@pytest.mark.parametrize("url", ["mysql://shop:pw@db/shop", "nonsense", "postgresql://db/x"])
def test_a_database_payops_does_not_run_on(fresh: Cli, url: str) -> None:
    fresh.env["PAYOPS_DATABASE_URL"] = url
    one_line(
        fresh("user", "list"),
        "PAYOPS_DATABASE_URL is not a database PayOps runs on",
        "postgresql+asyncpg://",
    )


def test_a_secret_key_that_is_no_key(fresh: Cli) -> None:
    fresh.ok("db", "upgrade")
    fresh.env["PAYOPS_SECRET_KEY"] = "not-a-fernet-key"
    for args in (["user", "list"], ["secret", "rotate"]):
        one_line(fresh(*args), "PAYOPS_SECRET_KEY is not a valid key", "payops secret new-key")
    # serve in a process of its own: it sets up this process's logging before its checks.
    env = {**os.environ, **fresh.env, "PAYOPS_PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-m", "payops.cli.main", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.strip()]
    assert "PAYOPS_SECRET_KEY is not a valid key" in line


def test_a_data_dir_that_cannot_be_made(fresh: Cli, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    fresh.env["PAYOPS_DATA_DIR"] = str(tmp_path / "a-file" / "data")
    one_line(fresh("db", "upgrade"), "cannot create the data directory", "PAYOPS_DATA_DIR")


@pytest.fixture
def ready(fresh: Cli) -> Cli:
    fresh.ok("db", "upgrade")
    fresh.ok("gateway", "add", "sandbox", "--code", "gw", "--currency", "KWD")
    return fresh


def test_unknown_pg_code(ready: Cli) -> None:
    one_line(
        ready("txn", "create", "--amount", "1.000", "--currency", "KWD", "--pg-code", "nope"),
        "no sandbox gateway configuration 'nope'",
        "payops gateway list",
    )
    one_line(
        ready(
            "txn",
            "import",
            "--amount",
            "1.000",
            "--currency",
            "KWD",
            "--pg-code",
            "nope",
            "--ref",
            "payment_id=P1",
        ),
        "no gateway configuration 'nope'",
        "payops gateway list",
    )
    assert ready.sql("SELECT count(*) FROM payment_transactions") == [(0,)]


@pytest.mark.parametrize(
    "args",
    [
        ["txn", "create", "--amount", "1.000", "--currency", "XYZ", "--pg-code", "gw"],
        [
            "txn",
            "import",
            "--amount",
            "1.000",
            "--currency",
            "XYZ",
            "--pg-code",
            "gw",
            "--ref",
            "payment_id=P1",
        ],
        ["gateway", "add", "sandbox", "--code", "gw2", "--currency", "XYZ"],
        ["gateway", "add", "sandbox", "--code", "gw2", "--currency", "KWD", "--accept", "XYZ"],
    ],
)
def test_bad_currency(ready: Cli, args: list[str]) -> None:
    one_line(ready(*args), "unknown currency XYZ", "ISO 4217")


@pytest.mark.parametrize(
    ("amount", "why"),
    [
        ("1.0001", "no more than 3 decimal places"),
        ("-1", "valid number"),
        ("ten", "valid number"),
    ],
)
def test_bad_amount(ready: Cli, amount: str, why: str) -> None:
    one_line(
        ready("txn", "create", "--amount", amount, "--currency", "KWD", "--pg-code", "gw"),
        "--amount",
        why,
        "not an amount in KWD",
    )
    one_line(
        ready(
            "txn",
            "create",
            "--amount",
            "1.000",
            "--fee",
            amount,
            "--currency",
            "KWD",
            "--pg-code",
            "gw",
        ),
        "--fee",
        why,
    )
    assert ready.sql("SELECT count(*) FROM payment_transactions") == [(0,)]


def test_unknown_print_field_is_refused_before_any_work(ready: Cli) -> None:
    line = one_line(
        ready(
            "txn",
            "create",
            "--amount",
            "1.000",
            "--currency",
            "KWD",
            "--pg-code",
            "gw",
            "--order-no",
            "o1",
            "--print",
            "sesion_id",
        ),
        "--print 'sesion_id'",
        "valid fields:",
    )
    for field in ("order_no", "session_id", "state", "amount", "currency_code", "pg_code"):
        assert field in line
    assert ready.sql("SELECT count(*) FROM payment_transactions") == [(0,)]
    one_line(
        ready(
            "txn",
            "import",
            "--amount",
            "1.000",
            "--currency",
            "KWD",
            "--pg-code",
            "gw",
            "--ref",
            "payment_id=P1",
            "--print",
            "amount",
        ),
        "valid fields: order_no",
    )
    # A valid field prints that field alone.
    printed = ready.ok(
        "txn",
        "create",
        "--amount",
        "1.000",
        "--currency",
        "KWD",
        "--pg-code",
        "gw",
        "--order-no",
        "o2",
        "--print",
        "currency_code",
    )
    assert printed.stdout == "KWD\n"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["txn", "create", "--amount", "1.000"],
            ["Missing option '--currency'", "txn create --help`"],
        ),
        (["ops", "list", "--limit", "many"], ["Invalid value for '--limit'", "ops list --help`"]),
        (["serve", "--workers", "0"], ["'--workers'", "serve --help`"]),
        (["teleport"], ["No such command 'teleport'", " --help`"]),
    ],
)
def test_usage_mistakes_are_one_line_too(fresh: Cli, args: list[str], needles: list[str]) -> None:
    one_line(fresh(*args), *needles)


def test_a_group_alone_still_shows_its_help(fresh: Cli) -> None:
    shown = fresh("txn")
    assert "Usage: " in shown.output and " txn [OPTIONS] COMMAND" in shown.output
    assert "error:" not in shown.output


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_bad_port_option(fresh: Cli, port: str) -> None:
    one_line(fresh("serve", "--port", port), f"--port {port!r} is not a port", "1 to 65535")
    assert not fresh.data_dir.exists(), "refused before any work"


def test_bad_port_setting(fresh: Cli) -> None:
    fresh.env["PAYOPS_PORT"] = "65536"
    one_line(fresh("serve"), "PAYOPS_PORT '65536' is not a port")


def test_bad_log_level(fresh: Cli) -> None:
    fresh.env["PAYOPS_LOG_LEVEL"] = "chatty"
    one_line(fresh("serve"), "PAYOPS_LOG_LEVEL 'chatty' is not a level", "INFO")
    assert not fresh.data_dir.exists(), "refused before any work"


# -- payops serve -----------------------------------------------------------------------------


def test_serve_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "payops.cli.main", "serve", "--port", str(port)],
            env=serve_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"cannot listen on http://127.0.0.1:{port}" in errors[0]
    assert "address is in use" in errors[0] and "--port" in errors[0]


def json_lines(text: str) -> list[dict[str, Any]]:
    entries = []
    for line in text.splitlines():
        entry = json.loads(line)  # every line, or the test fails here
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_says_where_it_listens_and_logs_only_json(tmp_path: Path, workers: int) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "payops.cli.main",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=serve_env(tmp_path, PYTHONUNBUFFERED="1"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(server, base)
        # A request of our own id, one of the server's choosing, and bytes that are not HTTP:
        # uvicorn itself logs that one ("Invalid HTTP request received.").
        chosen = httpx.post(f"{base}/b/pbl/v1/inquiry/ORD-1", headers={"X-Request-Id": "abc123"})
        assigned = httpx.get(f"{base}/healthz").headers["x-request-id"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw.recv(4096)
        time.sleep(1.0)
    finally:
        server.terminate()
        out, err = server.communicate(timeout=60)
    assert chosen.status_code == 401
    entries = json_lines(out) + json_lines(err)
    for entry in entries:
        assert {"ts", "level", "logger", "message", "request_id"} <= set(entry), entry
    [listening] = [e for e in entries if e["logger"] == "payops.serve"]
    assert listening["url"] == base and listening["workers"] == workers
    assert f"listening on {base}" in listening["message"]
    requests = {e["request_id"]: e for e in entries if e["message"] == "request"}
    # The access line carries the request id and the extra fields of the call.
    assert requests["abc123"]["path"] == "/b/pbl/v1/inquiry/{order_no}"
    assert requests["abc123"]["status"] == 401 and requests["abc123"]["method"] == "POST"
    assert requests[assigned]["path"] == "/healthz" and "duration_ms" in requests[assigned]
    assert any(
        e["logger"] == "uvicorn.error" and "Invalid HTTP request" in e["message"] for e in entries
    ), entries
