"""`payops db …`: the database schema."""

from __future__ import annotations

import typer

from payops.cli.common import console, load_settings, migrate, safe_url

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the latest version."""
    settings = load_settings()
    migrate(settings)
    console.print(
        f"database at [bold]{safe_url(settings.effective_database_url)}[/bold] is up to date"
    )
