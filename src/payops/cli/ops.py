"""`payops ops …` and `payops reconcile`: operations (child transactions), their review and
reconciliation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from payops.cli.common import console, emit, err, fail, load_settings, operator, run

if TYPE_CHECKING:
    from payops.context import AppContext

app = typer.Typer(help="Operations (child transactions) and their states.", no_args_is_help=True)

OPERATION_STATES = ("processing", "queued", "needs_review", "succeeded", "failed", "rejected")
OPERATOR_MAX = 100


@app.command("list")
def ops_list(
    state: list[str] = typer.Option(
        ["processing", "needs_review"], "--state", help="State to show; repeat"
    ),
    limit: int = typer.Option(200, help="At most this many rows"),
) -> None:
    """List operations by state (default: the unresolved ones)."""
    from payops.money import format_minor

    unknown = set(state) - set(OPERATION_STATES)
    if unknown:
        fail(
            f"unknown state(s): {', '.join(sorted(unknown))}; known: {', '.join(OPERATION_STATES)}"
        )

    async def work(ctx: AppContext) -> list[tuple[Any, Any]]:
        from payops.operations.repository import operations_in_states

        async with ctx.db.read() as session:
            return await operations_in_states(session, state, limit)

    table = Table(
        "reference",
        "order_no",
        "operation",
        "state",
        "amount",
        "gateway",
        "asked",
        "created",
        title=f"operations: {', '.join(state)}",
    )
    rows = run(work)
    for op, parent in rows:
        table.add_row(
            op.reference_number,
            parent.order_no or parent.session_id,
            op.operation,
            op.state,
            f"{format_minor(op.amount, op.currency_code)} {op.currency_code}",
            op.gateway_config.pg_code,
            str(op.reconcile_attempts),
            str(op.created_at)[:19],
        )
    console.print(table)
    console.print(f"{len(rows)} operation(s)")


def _review_call(work: Callable[[AppContext], Awaitable[dict[str, Any]]]) -> None:
    from payops.errors import ApiError

    try:
        result = run(work)
    except ApiError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        fail(str(body.get("detail", exc.body)))
    emit(result, None)


@app.command("recheck")
def ops_recheck(
    reference: str = typer.Argument(..., help="The operation's reference_number"),
    operator_name: str = typer.Option("", "--operator", help="Your name, for the audit trail"),
) -> None:
    """Ask the gateway about an open (processing, queued, needs_review) operation now and settle
    it; for a resolved one, check that the gateway agrees (an alert is raised if not)."""
    from payops.operations.review import recheck_operation

    actor = operator(operator_name.strip() or None)
    _review_call(lambda ctx: recheck_operation(ctx, reference, actor))


@app.command("resolve")
def ops_resolve(
    reference: str = typer.Argument(..., help="The operation's reference_number"),
    outcome: str = typer.Option(
        ..., "--outcome", help="succeeded or failed, as the gateway's own dashboard shows it"
    ),
    reason: str = typer.Option(..., "--reason", help="Why: what you checked"),
    evidence: str = typer.Option("", "--evidence", help="e.g. the gateway's transaction id"),
    operator_name: str = typer.Option(
        ..., "--operator", help="Your name (recorded with the OS user)"
    ),
) -> None:
    """Settle an operation in needs_review with an operator's decision (audited)."""
    from payops.operations.review import OUTCOMES, resolve_operation
    from payops.web.review import TEXT_MAX

    if outcome not in OUTCOMES:
        fail(f"--outcome must be one of {', '.join(OUTCOMES)}")
    if not operator_name.strip():
        fail("--operator must name you")
    if len(operator_name.strip()) > OPERATOR_MAX:
        # The audit's actor column holds the name with the OS user; longer, the OS user was cut.
        fail(f"--operator may have at most {OPERATOR_MAX} characters")
    if not reason.strip():
        fail("--reason is required: say what you checked")
    for name, text in (("--reason", reason), ("--evidence", evidence)):
        if len(text) > TEXT_MAX:  # the API's limit: one rule for both doors
            fail(f"{name} may have at most {TEXT_MAX} characters")
    actor = operator(operator_name.strip())
    _review_call(
        lambda ctx: resolve_operation(
            ctx, reference, outcome=outcome, reason=reason, evidence=evidence, actor=actor
        )
    )


def reconcile(
    older_than: float = typer.Option(
        None,
        help="Ask about processing operations older than this many seconds "
        "(default PAYOPS_RECONCILE_AFTER_SECONDS)",
    ),
) -> None:
    """Settle open operations now by asking their gateways (safe beside a running server)."""
    from rich.progress import Progress

    from payops.operations.reconciler import reconcile_once

    settings = load_settings()
    if older_than is not None:
        settings = settings.model_copy(update={"reconcile_after_seconds": older_than})

    async def work(ctx: AppContext) -> Any:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("reconciling", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return await reconcile_once(ctx, on_progress=advance)

    summary = run(work, settings)
    table = Table("outcome", "operations", title="reconciliation")
    for outcome, count in sorted(summary.outcomes.items()):
        table.add_row(outcome, str(count))
    table.add_row("total examined", str(summary.examined))
    console.print(table)
