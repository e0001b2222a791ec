"""Operator review over HTTP (for the dashboard): ``/b/payops/v1/operations/…``.

Every route needs ``payment.resolve``, which API keys never hold: a decision about money that a
gateway did not confirm belongs to a named person (decisions §13).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from payops.auth.permissions import RESOLVE_PERMISSION
from payops.auth.service import Principal
from payops.domain import messages
from payops.errors import field_error
from payops.operations import review
from payops.web.dependencies import authenticate, get_context, require_permission
from payops.web.requests import choice, identifier, read_object
from payops.web.review import RESPONSES, review_text

router = APIRouter(tags=["operator review"])
MAX_AGE_SECONDS = 10 * 365 * 86400


class ResolveRequest(BaseModel):
    outcome: str = Field(description="succeeded or failed")
    reason: str = Field(description="Why (what the gateway's dashboard shows)")
    evidence: str = Field(
        default="", description="e.g. the gateway's transaction id, a screenshot name"
    )


@router.get(
    "/b/payops/v1/operations/review",
    responses=RESPONSES,
    summary="Operations waiting for an operator (needs_review), oldest first",
)
async def review_queue(
    request: Request,
    include_processing_older_than: float | None = None,
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    require_permission(principal, RESOLVE_PERMISSION)
    if include_processing_older_than is not None and not (
        0 <= include_processing_older_than <= MAX_AGE_SECONDS
    ):  # also refuses nan
        raise field_error(
            "include_processing_older_than", messages.REVIEW_AGE_RANGE.format(n=MAX_AGE_SECONDS)
        )
    results = await review.review_queue(
        get_context(request), include_processing_older_than=include_processing_older_than
    )
    return {"count": len(results), "results": results}


@router.post(
    "/b/payops/v1/operations/{reference_number}/recheck",
    responses=RESPONSES,
    summary="Ask the gateway about an open operation now and settle it",
)
async def recheck(
    reference_number: str,
    request: Request,
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    reference = identifier("reference_number", reference_number, max_length=20)
    require_permission(principal, RESOLVE_PERMISSION)
    return await review.recheck_operation(get_context(request), reference or "", principal)


@router.post(
    "/b/payops/v1/operations/{reference_number}/resolve",
    responses=RESPONSES,
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": ResolveRequest.model_json_schema()}}
        }
    },
    summary="Settle an operation in needs_review with an operator's decision",
)
async def resolve(
    reference_number: str,
    request: Request,
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    ctx = get_context(request)
    reference = identifier("reference_number", reference_number, max_length=20)
    require_permission(principal, RESOLVE_PERMISSION)
    body = await read_object(request, ctx.settings.max_body_bytes)
    outcome = choice("outcome", body.get("outcome"), review.OUTCOMES)
    reason = review_text("reason", body.get("reason"), required=True)
    evidence = review_text("evidence", body.get("evidence"), required=False)
    return await review.resolve_operation(
        ctx, reference or "", outcome=outcome, reason=reason, evidence=evidence, actor=principal
    )
