"""``POST /b/pbl/v2/payment-methods/``: the enabled gateway configurations a checkout may use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from payops.auth.service import Principal
from payops.checkout.endpoints import can_view
from payops.checkout.service import payment_methods as payment_methods_of
from payops.errors import field_error
from payops.web.dependencies import authenticate, get_context, require_permission
from payops.web.requests import FormShape, boolean, choice, read_object
from payops.web.responses import Detail

router = APIRouter(tags=["payment methods"])


class PaymentMethodsRequest(BaseModel):
    plugin: str | None = None
    currencies: list[str] | None = None
    customer_id: str | None = None
    operation: str | None = None
    tokenizable: bool | None = None
    pg_names: list[str] | None = None
    type: str | None = None


def _string_list(name: str, value: Any) -> list[str] | None:
    if value in (None, ""):
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise field_error(name, f'Expected a list of items but got type "{type(value).__name__}".')
    return value


async def payment_methods(
    request: Request, principal: Principal = Depends(authenticate)
) -> dict[str, Any]:
    if not can_view(principal):
        require_permission(principal, "checkout.view")
    ctx = get_context(request)
    body = await read_object(
        request, ctx.settings.max_body_bytes, FormShape(lists=frozenset({"currencies", "pg_names"}))
    )
    kind = choice("type", body["type"], ("sandbox", "production")) if body.get("type") else None
    operation = (
        choice("operation", body["operation"], ("purchase", "authorize"))
        if body.get("operation")
        else None
    )
    currencies = {c.upper() for c in _string_list("currencies", body.get("currencies")) or []}
    pg_names = set(_string_list("pg_names", body.get("pg_names")) or [])
    if boolean("tokenizable", body.get("tokenizable")):
        return {"payment_methods": [], "customer_payment_methods": []}
    methods = await payment_methods_of(
        ctx, kind=kind, operation=operation, currencies=currencies, pg_names=pg_names
    )
    return {"payment_methods": methods, "customer_payment_methods": []}


for path, name in (
    ("/b/pbl/v2/payment-methods/", "payment_methods"),
    ("/b/pbl/v2/payment-methods", "payment_methods_no_slash"),
):
    router.add_api_route(
        path,
        payment_methods,
        methods=["POST"],
        operation_id=name,
        responses={
            400: {"description": "Field errors"},
            401: {"model": Detail},
            403: {"model": Detail},
            413: {"model": Detail},
            415: {"model": Detail},
        },
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {"schema": PaymentMethodsRequest.model_json_schema()}
                }
            }
        },
        summary="List the enabled payment methods (gateway configurations)",
    )
