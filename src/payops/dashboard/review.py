"""The needs-review page: operations in ``processing`` past the reconcile threshold (ask the
gateway now) and in ``needs_review`` (ask now, or resolve as succeeded / failed with a reason).
Both actions are the operator-review service's (``operations.review``), as the API's are."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from payops.auth.permissions import RESOLVE_PERMISSION
from payops.dashboard.rendering import render
from payops.dashboard.service import DashboardError, record_visit, require
from payops.dashboard.web import posted, redirect, signed_in
from payops.errors import ApiError
from payops.money import AmountError, parse_amount
from payops.operations import review
from payops.transactions import attempt_review
from payops.web.dependencies import get_context

router = APIRouter()


def _message(error: ApiError) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    return str(body.get("detail", "The request was refused."))


@router.get("/review")
async def review_page(request: Request, done: str = "", outcome: str = "") -> Response:
    visitor = await signed_in(request)
    require(visitor, RESOLVE_PERMISSION)
    ctx = get_context(request)
    queue = await review.review_queue(
        ctx, include_processing_older_than=ctx.settings.reconcile_after_seconds
    )
    attempts = await attempt_review.review_queue(ctx)
    return render(
        request,
        visitor,
        "review.html",
        queue=queue,
        attempts=attempts,
        done=done[:20],
        outcome=outcome[:200],
    )


@router.post("/review/{reference_number}/recheck")
async def recheck(request: Request, reference_number: str) -> Response:
    visitor, _ = await posted(request)
    require(visitor, RESOLVE_PERMISSION)
    ctx = get_context(request)
    try:
        after = await review.recheck_operation(ctx, reference_number, visitor.principal)
    except ApiError as error:
        raise DashboardError(_message(error), error.status_code) from None
    await record_visit(
        ctx,
        visitor,
        "dashboard.recheck",
        after["state"],
        order_no=after.get("order_no", ""),
        reference_number=reference_number,
    )
    return redirect(
        "/dashboard/review",
        done=reference_number,
        outcome=f"{after['state']}: {after.get('message') or ''}".strip(": "),
    )


@router.post("/review/{reference_number}/resolve")
async def resolve(request: Request, reference_number: str) -> Response:
    visitor, form = await posted(request)
    require(visitor, RESOLVE_PERMISSION)
    ctx = get_context(request)
    outcome, reason = form.get("outcome"), form.get("reason").strip()
    if outcome not in review.OUTCOMES:
        raise DashboardError("Choose whether the operation succeeded or failed.")
    if not reason:
        raise DashboardError("Give a reason: it is kept with the resolution and in the audit log.")
    try:
        after = await review.resolve_operation(
            ctx,
            reference_number,
            outcome=outcome,
            reason=reason,
            evidence=form.get("evidence"),
            actor=visitor.principal,
        )
    except ApiError as error:
        raise DashboardError(_message(error), error.status_code) from None
    await record_visit(
        ctx,
        visitor,
        "dashboard.resolve",
        outcome,
        order_no=after.get("order_no", ""),
        reference_number=reference_number,
        reason=reason,
    )
    return redirect(
        "/dashboard/review",
        done=reference_number,
        outcome=f"resolved as {outcome}; now {after['state']}",
    )


# -- payment attempts in review (transactions/attempt_review.py) ------------------------------


@router.post("/review/attempts/{reference_number}/recheck")
async def recheck_attempt(request: Request, reference_number: str) -> Response:
    visitor, _ = await posted(request)
    require(visitor, RESOLVE_PERMISSION)
    ctx = get_context(request)
    try:
        after = await attempt_review.recheck_attempt(ctx, reference_number, visitor.principal)
    except ApiError as error:
        raise DashboardError(_message(error), error.status_code) from None
    await record_visit(
        ctx,
        visitor,
        "dashboard.attempt_recheck",
        after["state"],
        order_no=after.get("order_no", ""),
        reference_number=reference_number,
    )
    return redirect(
        "/dashboard/review",
        done=reference_number,
        outcome=f"{after['state']}: {after.get('message') or ''}".strip(": "),
    )


@router.post("/review/attempts/{reference_number}/resolve")
async def resolve_attempt(request: Request, reference_number: str) -> Response:
    visitor, form = await posted(request)
    require(visitor, RESOLVE_PERMISSION)
    ctx = get_context(request)
    outcome, reason = form.get("outcome"), form.get("reason").strip()
    if outcome not in attempt_review.OUTCOMES:
        raise DashboardError("Choose whether the payment was taken or not.")
    if not reason:
        raise DashboardError("Give a reason: it is kept with the resolution and in the audit log.")
    try:
        amount = None
        if form.get("amount").strip():
            found = await attempt_review._find(ctx, reference_number)
            try:
                amount = parse_amount(form.get("amount").strip(), found.currency_code)
            except AmountError as exc:
                raise DashboardError(f"Amount: {exc}") from None
        after = await attempt_review.resolve_attempt(
            ctx,
            reference_number,
            outcome=outcome,
            reason=reason,
            evidence=form.get("evidence"),
            actor=visitor.principal,
            amount=amount,
        )
    except ApiError as error:
        raise DashboardError(_message(error), error.status_code) from None
    await record_visit(
        ctx,
        visitor,
        "dashboard.attempt_resolve",
        outcome,
        order_no=after.get("order_no", ""),
        reference_number=reference_number,
        reason=reason,
    )
    return redirect(
        "/dashboard/review",
        done=reference_number,
        outcome=f"resolved as {outcome}; now {after['state']}",
    )
