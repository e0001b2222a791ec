"""``payops attempt``: customers' payment attempts at gateways — automatic inquiry and review."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from payops.cli.common import console, emit, fail, operator, run
from payops.cli.ops import OPERATOR_MAX, _review_call

if TYPE_CHECKING:
    from payops.context import AppContext

app = typer.Typer(
    help="Customers' payment attempts: automatic inquiry and review.", no_args_is_help=True
)


@app.command("review")
def attempt_review_list() -> None:
    """Payment attempts waiting for an operator (amount mismatch, no answer, flagged)."""
    from payops.transactions.attempt_review import review_queue

    results = run(review_queue)
    emit({"count": len(results), "results": results}, None)


@app.command("inquire")
def attempt_inquire() -> None:
    """Ask the gateways now about pending attempts whose automatic inquiry is due (what
    `payops serve` does every PAYOPS_ATTEMPT_INQUIRY_INTERVAL_SECONDS); safe beside a server."""
    from payops.transactions.attempt_inquiry import inquire_due_attempts

    asked = run(lambda ctx: inquire_due_attempts(ctx))
    console.print(f"{asked} attempt(s) inquired")


@app.command("recheck")
def attempt_recheck(
    reference: str = typer.Argument(..., help="The attempt's reference_number"),
    operator_name: str = typer.Option("", "--operator", help="Your name, for the audit trail"),
) -> None:
    """Ask the gateway about a pending or needs_review payment attempt now and apply its answer."""
    from payops.transactions.attempt_review import recheck_attempt

    if len(operator_name.strip()) > OPERATOR_MAX:
        fail(f"--operator may have at most {OPERATOR_MAX} characters")
    actor = operator(operator_name.strip() or None)
    _review_call(lambda ctx: recheck_attempt(ctx, reference, actor))


@app.command("resolve")
def attempt_resolve(
    reference: str = typer.Argument(..., help="The attempt's reference_number"),
    outcome: str = typer.Option(
        ..., "--outcome", help="paid or failed, as the gateway's own dashboard shows it"
    ),
    reason: str = typer.Option(..., "--reason", help="Why: what you checked"),
    evidence: str = typer.Option("", "--evidence", help="e.g. the gateway's transaction id"),
    amount: str = typer.Option(
        None,
        "--amount",
        help="For paid: what the gateway charged, fee included (default: the amount the "
        "attempt asked for)",
    ),
    operator_name: str = typer.Option(
        ..., "--operator", help="Your name (recorded with the OS user)"
    ),
) -> None:
    """Settle a payment attempt in review with an operator's decision (audited)."""
    from payops.money import AmountError, parse_amount
    from payops.transactions.attempt_review import OUTCOMES, _find, resolve_attempt
    from payops.web.review import TEXT_MAX

    if outcome not in OUTCOMES:
        fail(f"--outcome must be one of {', '.join(OUTCOMES)}")
    if not operator_name.strip():
        fail("--operator must name you")
    if len(operator_name.strip()) > OPERATOR_MAX:
        fail(f"--operator may have at most {OPERATOR_MAX} characters")
    if not reason.strip():
        fail("--reason is required: say what you checked")
    for name, text in (("--reason", reason), ("--evidence", evidence)):
        if len(text) > TEXT_MAX:
            fail(f"{name} may have at most {TEXT_MAX} characters")
    actor = operator(operator_name.strip())

    async def work(ctx: AppContext) -> dict[str, Any]:
        minor = None
        if amount is not None:
            attempt = await _find(ctx, reference)
            try:
                minor = parse_amount(amount, attempt.currency_code)
            except AmountError as exc:
                fail(f"--amount: {exc}")
        return await resolve_attempt(
            ctx,
            reference,
            outcome=outcome,
            reason=reason,
            evidence=evidence,
            actor=actor,
            amount=minor,
        )

    _review_call(work)
