"""The ``payops`` command line: it only assembles the command groups, one module each.

``payops --help`` (and every group's ``--help``) loads Typer, rich and these modules alone: each
command imports the web stack, the database layer or a connector inside its own body
(``tests/test_cli_errors.py`` checks ``sys.modules``; ``benchmarks/cli_help.py`` times it).
"""

from __future__ import annotations

import typer

from payops.cli import (
    apikeys,
    attempts,
    db,
    demo,
    gateways,
    ops,
    secrets,
    serve,
    transactions,
    users,
    webhooks,
)
from payops.cli.common import OneLineUsageErrors

# Locals in tracebacks could hold passwords or keys: never print them.
app = typer.Typer(
    help="PayOps: payment operations for your gateways.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    cls=OneLineUsageErrors,
)
for group, name in (
    (db.app, "db"),
    (users.app, "user"),
    (apikeys.app, "apikey"),
    (gateways.app, "gateway"),
    (transactions.app, "txn"),
    (ops.app, "ops"),
    (webhooks.settings_app, "webhook"),
    (webhooks.events_app, "webhooks"),
    (secrets.app, "secret"),
    (attempts.app, "attempt"),
):
    app.add_typer(group, name=name)
app.command()(serve.serve)
app.command()(ops.reconcile)
app.command()(demo.demo)


if __name__ == "__main__":
    app()
