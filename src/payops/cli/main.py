"""The ``payops`` command line: it only assembles the command groups, one module each.

``payops --help`` (and every group's ``--help``) loads Typer, rich and these modules alone: each
command imports the web stack, the database layer or a connector inside its own body
(``tests/test_cli_errors.py`` checks ``sys.modules``; ``benchmarks/cli_help.py`` times it).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from payops.cli import (
    apikeys,
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
from payops.cli.common import fail


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


# Locals in tracebacks could hold passwords or keys: never print them.
app = typer.Typer(help="PayOps: payment operations for your gateways.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False, pretty_exceptions_enable=False,
                  cls=OneLineUsageErrors)
for group, name in ((db.app, "db"), (users.app, "user"), (apikeys.app, "apikey"),
                    (gateways.app, "gateway"), (transactions.app, "txn"), (ops.app, "ops"),
                    (webhooks.settings_app, "webhook"), (webhooks.events_app, "webhooks"),
                    (secrets.app, "secret")):
    app.add_typer(group, name=name)
app.command()(serve.serve)
app.command()(ops.reconcile)
app.command()(demo.demo)


if __name__ == "__main__":
    app()
