"""What every command group shares: output, one-line errors, settings, the database run and the
audit actor.

Only the standard library, Typer and rich are imported here at module level: ``payops --help``
must not load the web stack, the database layer or the connectors (``tests/test_cli_errors.py``
checks ``sys.modules``). Everything heavier is imported inside the function that needs it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

if TYPE_CHECKING:
    from payops.auth.service import Principal
    from payops.config import Settings
    from payops.context import AppContext

# Piped or captured output gets full-width tables: a reference number cut to "GU9U4…" is useless
# to an operator's script.
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)
T = TypeVar("T")

# An ordinary mistake (a wrong argument, a missing database, an unreachable server) exits with 2,
# after one line on stderr; 1 is left for what nobody foresaw (a traceback).
MISTAKE = 2


def fail(message: str) -> NoReturn:
    """One line on stderr saying what is wrong and what to do; exit code 2."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code=MISTAKE)


def load_settings() -> Settings:
    """The settings from the environment (and .env), or one line naming the bad variable."""
    from pydantic import ValidationError

    from payops.config import get_settings

    try:
        settings = get_settings()
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = str(problem["loc"][0]) if problem["loc"] else ""
        name = f"PAYOPS_{field.upper()}" if field else "a PAYOPS_ setting"
        # The input is never echoed: it may be a secret (a key, a database URL with a password).
        fail(f"{name} is not valid ({problem['msg']}); fix it in the environment or in .env")
    _check_database_url(settings.effective_database_url)
    return settings


DRIVERS = ("postgresql+asyncpg", "sqlite+aiosqlite")


def _check_database_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        driver = make_url(url).drivername
    except (ArgumentError, ValueError):
        driver = ""
    if driver not in DRIVERS:
        fail(
            "PAYOPS_DATABASE_URL is not a database PayOps runs on: give "
            "postgresql+asyncpg://USER:PASSWORD@HOST:5432/NAME, or leave it empty for the "
            "embedded SQLite file"
        )


def safe_url(url: str) -> str:
    """A database URL fit to print: the password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL: say nothing of what it holds
        return "(PAYOPS_DATABASE_URL)"


def _sqlite_file(settings: Settings) -> str | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(settings.effective_database_url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return parsed.database if parsed.database != ":memory:" else None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, the driver's error it wraps and their causes."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        orig = getattr(current, "orig", None)
        todo += [
            orig if isinstance(orig, BaseException) else None,
            current.__cause__,
            current.__context__,
        ]
    return found


def _reason(chain: list[BaseException]) -> str:
    """The short cause of a connection failure, without the URL (which may hold a password)."""
    for current in chain:
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, TimeoutError):
            return "timed out"
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
    return type(chain[-1]).__name__


NO_SCHEMA = ("no such table", "undefinedtableerror")
NO_DATABASE = ("invalidcatalognameerror", "unable to open database file")
LOGIN_REFUSED = (
    "invalidpassworderror",
    "invalidauthorizationspecificationerror",
    "password authentication failed",
)
UNREACHABLE = (
    "connectiondoesnotexisterror",
    "cannotconnectnowerror",
    "toomanyconnectionserror",
    "connection was closed",
    "could not connect",
    "connection refused",
)


@contextmanager
def database_errors(settings: Settings) -> Iterator[None]:
    """Turn the database's ordinary failures (not created yet, not reachable, refusing the
    login) into one line with what to do; anything else is left to surface."""
    from sqlalchemy.exc import DBAPIError

    where = safe_url(settings.effective_database_url)
    try:
        yield
    except (DBAPIError, OSError) as exc:
        chain = _chain(exc)
        text = " ".join(f"{type(e).__name__} {e}" for e in chain).lower()
        if any(marker in text for marker in NO_SCHEMA) or (
            "relation" in text and "does not exist" in text
        ):
            fail(
                f"the database at {where} has no PayOps schema yet: run `payops db upgrade` "
                "(or `payops serve`, which migrates first)"
            )
        if any(marker in text for marker in NO_DATABASE):
            fail(
                f"the database at {where} does not exist: create it (PostgreSQL: `createdb`) "
                "or correct PAYOPS_DATABASE_URL"
            )
        if any(marker in text for marker in LOGIN_REFUSED):
            fail(
                f"the database at {where} refused the login: check the user and password in "
                "PAYOPS_DATABASE_URL"
            )
        if any(isinstance(e, OSError) for e in chain) or any(m in text for m in UNREACHABLE):
            fail(
                f"cannot reach the database at {where} ({_reason(chain)}): check "
                "PAYOPS_DATABASE_URL and that the database server is running"
            )
        raise


def require_database(settings: Settings) -> None:
    """Before a command that reads or writes: the embedded SQLite file exists (opening a missing
    one would create an empty database, then fail on the first table)."""
    from pathlib import Path

    path = _sqlite_file(settings)
    if path is not None and not Path(path).exists():
        fail(
            f"no database yet at {path}: run `payops db upgrade` (or `payops demo` for a "
            "playground) first"
        )


def run(work: Callable[[AppContext], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run ``work`` with an application context on the configured database."""
    chosen = settings or load_settings()
    require_database(chosen)

    async def main() -> T:
        from payops.context import AppContext

        try:
            ctx = AppContext.build(chosen)
        except ValueError as exc:
            if "Fernet key" not in str(exc):
                raise
            fail(
                f"PAYOPS_SECRET_KEY is not a valid key ({exc}); make one with "
                "`payops secret new-key`"
            )
        try:
            return await work(ctx)
        finally:
            await ctx.aclose()

    with database_errors(chosen):
        return asyncio.run(main())


def migrate(settings: Settings) -> None:
    from payops.db.migrate import upgrade

    try:
        settings.ensure_data_dir()
    except OSError as exc:
        fail(
            f"cannot create the data directory {settings.data_dir} "
            f"({(exc.strerror or str(exc)).lower()}): set PAYOPS_DATA_DIR to a directory this "
            "user may write"
        )
    with database_errors(settings):
        upgrade(settings.effective_database_url)


def check_print_field(print_field: str | None, fields: tuple[str, ...]) -> None:
    """``--print FIELD`` names one of the result's fields (checked before any work is done)."""
    if print_field is not None and print_field not in fields:
        fail(
            f"--print {print_field!r} is not a field of the result; valid fields: "
            f"{', '.join(fields)}"
        )


def emit(result: dict[str, Any], print_field: str | None) -> None:
    """A command's result as JSON, or one field of it alone (for shell scripts)."""
    if print_field:
        print(result[print_field])
    else:
        console.print_json(json.dumps(result))


def os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cli_actor() -> Principal:
    """Who ran a CLI command, for the audit trail: the operating-system account."""
    from payops.auth.permissions import ALL_PERMISSIONS
    from payops.auth.service import Principal

    return Principal("cli", f"cli:{os_user()}"[:150], ALL_PERMISSIONS)


def operator(name: str | None) -> Principal:
    """The CLI's actor for operations review: the operator named with --operator, recorded
    with the OS user."""
    from payops.auth.permissions import ALL_PERMISSIONS
    from payops.auth.service import Principal

    user = os_user()
    label = f"{name} (os user {user})" if name else f"cli (os user {user})"
    initiator = {"os_user": user, **({"operator": name} if name else {})}
    return Principal("cli", label[:150], frozenset(ALL_PERMISSIONS), initiator)


def check_currency(option: str, code: str) -> str:
    """An ISO 4217 code, upper-cased; or one line saying which option is wrong."""
    from payops.money import is_known_currency

    if not is_known_currency(code):
        fail(
            f"unknown currency {code.upper()} ({option}): use an ISO 4217 code such as KWD, "
            "SAR or USD"
        )
    return code.upper()


class OneLineUsageErrors(TyperGroup):
    """A usage mistake (a missing option, a value of the wrong type, an unknown command) is one
    line with the command's --help to read, exit code 2, like every other ordinary mistake."""

    def invoke(self, ctx: Any) -> Any:
        from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer is pinned

        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise  # `payops txn` alone shows the group's help
        except UsageError as exc:
            path = (exc.ctx or ctx).command_path
            fail(f"{exc.format_message()} (see `{path} --help`)")
