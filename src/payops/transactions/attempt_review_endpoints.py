"""Operator review of payment attempts over HTTP: ``/b/payops/v1/attempts/…``.

Every route needs ``payment.resolve``, which API keys never hold: deciding about a payment the
gateway did not confirm belongs to a named person (decisions §13).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from payops.auth.permissions import RESOLVE_PERMISSION
from payops.auth.service import Principal
from payops.errors import field_error
from payops.money import AmountError, parse_amount
from payops.transactions import attempt_review
from payops.web.dependencies import authenticate, get_context, require_permission
from payops.web.requests import choice, identifier, read_object
from payops.web.review import RESPONSES, review_text

router = APIRouter(tags=["operator review"])


class AttemptResolveRequest(BaseModel):
    outcome: str = Field(description="paid or failed, as the gateway's own dashboard shows it")
    reason: str = Field(description="Why (what the gateway's dashboard shows)")
    evidence: str = Field(default="", description="e.g. the gateway's transaction id")
    amount: str | None = Field(
        default=None,
        description="For paid: what the gateway charged (fee included), in the "
        "attempt's currency; default the amount the attempt asked for",
    )


@router.get(
    "/b/payops/v1/attempts/review",
    responses=RESPONSES,
    summary="Payment attempts waiting for an operator, oldest first",
)
async def review_queue(
    request: Request, principal: Principal = Depends(authenticate)
) -> dict[str, Any]:
    require_permission(principal, RESOLVE_PERMISSION)
    results = await attempt_review.review_queue(get_context(request))
    return {"count": len(results), "results": results}


@router.post(
    "/b/payops/v1/attempts/{reference_number}/recheck",
    responses=RESPONSES,
    summary="Ask the gateway about a pending or needs_review payment attempt now",
)
async def recheck(
    reference_number: str, request: Request, principal: Principal = Depends(authenticate)
) -> dict[str, Any]:
    reference = identifier("reference_number", reference_number, max_length=20)
    require_permission(principal, RESOLVE_PERMISSION)
    return await attempt_review.recheck_attempt(get_context(request), reference or "", principal)


@router.post(
    "/b/payops/v1/attempts/{reference_number}/resolve",
    responses=RESPONSES,
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": AttemptResolveRequest.model_json_schema()}}
        }
    },
    summary="Settle a payment attempt in review with an operator's decision",
)
async def resolve(
    reference_number: str, request: Request, principal: Principal = Depends(authenticate)
) -> dict[str, Any]:
    ctx = get_context(request)
    reference = identifier("reference_number", reference_number, max_length=20)
    require_permission(principal, RESOLVE_PERMISSION)
    body = await read_object(request, ctx.settings.max_body_bytes)
    outcome = choice("outcome", body.get("outcome"), attempt_review.OUTCOMES)
    reason = review_text("reason", body.get("reason"), required=True)
    evidence = review_text("evidence", body.get("evidence"), required=False)
    amount = await _amount(ctx, reference or "", body)
    return await attempt_review.resolve_attempt(
        ctx,
        reference or "",
        outcome=outcome,
        reason=reason,
        evidence=evidence,
        actor=principal,
        amount=amount,
    )


async def _amount(ctx: Any, reference: str, body: dict[str, Any]) -> int | None:
    if "amount" not in body:
        return None
    attempt = await attempt_review._find(ctx, reference)
    try:
        return parse_amount(body["amount"], attempt.currency_code)
    except AmountError as exc:
        raise field_error("amount", str(exc)) from None
