"""Admin endpoint: register a payment taken at a real gateway outside PayOps (decisions §9), the
HTTP twin of ``payops txn import``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from payops.auth.permissions import IMPORT_PERMISSION
from payops.auth.service import Principal
from payops.errors import FieldErrors
from payops.money import AmountError, is_known_currency, parse_amount
from payops.transactions.importing import register_import
from payops.transactions.service import IMPORTABLE_STATES
from payops.web.dependencies import authenticate, get_context, require_permission
from payops.web.requests import choice, identifier, read_object

router = APIRouter(tags=["admin"])


class ImportRequest(BaseModel):
    pg_code: str
    amount: str
    currency_code: str
    state: str = Field(default="paid", description="paid or authorized")
    gateway_refs: dict[str, str] = Field(
        description='The gateway\'s identifiers, e.g. {"order_id": "…"} (MPGS), '
        '{"payment_id": "…"} (Tabby)'
    )
    order_no: str | None = None


async def import_payment(
    request: Request, principal: Principal = Depends(authenticate)
) -> JSONResponse:
    require_permission(principal, IMPORT_PERMISSION)
    ctx = get_context(request)
    body = await read_object(request, ctx.settings.max_body_bytes)
    pg_code = identifier("pg_code", body.get("pg_code"))
    order_no = identifier("order_no", body.get("order_no"), required=False)
    state = choice("state", body.get("state") or "paid", IMPORTABLE_STATES)
    currency = body.get("currency_code")
    if not isinstance(currency, str) or not is_known_currency(currency):
        raise FieldErrors({"currency_code": ["Enter a valid ISO 4217 currency code."]})
    if not isinstance(body.get("amount"), str):
        raise FieldErrors({"amount": ['Send the amount as a decimal string, e.g. "10.000".']})
    try:
        amount = parse_amount(body["amount"], currency)
    except AmountError as exc:
        raise FieldErrors({"amount": [str(exc)]}) from None
    refs = body.get("gateway_refs")
    if (
        not isinstance(refs, dict)
        or not refs
        or not all(
            isinstance(k, str) and isinstance(v, str) and v and len(v) <= 255
            for k, v in refs.items()
        )
    ):
        raise FieldErrors(
            {"gateway_refs": ["Give the gateway's identifiers as an object of non-empty strings."]}
        )
    result = await register_import(
        ctx,
        principal,
        pg_code=pg_code or "",
        order_no=order_no,
        amount=amount,
        currency_code=currency,
        state=state,
        gateway_refs=refs,
    )
    return JSONResponse(result, status_code=201)


for path, name in (
    ("/b/payops/v1/import/", "import_payment"),
    ("/b/payops/v1/import", "import_payment_no_slash"),
):
    router.add_api_route(
        path,
        import_payment,
        methods=["POST"],
        operation_id=name,
        status_code=201,
        responses={201: {"description": "The registered transaction"}},
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": ImportRequest.model_json_schema()}}
            }
        },
        summary="Register a payment taken at a gateway outside PayOps (superusers, API keys)",
    )
