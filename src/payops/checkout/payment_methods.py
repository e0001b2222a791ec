"""``POST /b/pbl/v2/payment-methods/``: the enabled gateway configurations a checkout may use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from payops.auth.service import Principal
from payops.checkout.endpoints import can_view
from payops.checkout.service import enabled_gateways
from payops.errors import field_error
from payops.gateways.service import supported_operations, takes_payments
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
        raise field_error(name, 'Expected a list of items but got type "%s".' % type(value).__name__)
    return value


async def payment_methods(request: Request, principal: Principal = Depends(authenticate)
                          ) -> dict[str, Any]:
    if not can_view(principal):
        require_permission(principal, "checkout.view")
    ctx = get_context(request)
    body = await read_object(request, ctx.settings.max_body_bytes,
                             FormShape(lists=frozenset({"currencies", "pg_names"})))
    kind = choice("type", body["type"], ("sandbox", "production")) if body.get("type") else None
    operation = (choice("operation", body["operation"], ("purchase", "authorize"))
                 if body.get("operation") else None)
    currencies = {c.upper() for c in _string_list("currencies", body.get("currencies")) or []}
    pg_names = set(_string_list("pg_names", body.get("pg_names")) or [])
    if boolean("tokenizable", body.get("tokenizable")):
        return {"payment_methods": [], "customer_payment_methods": []}
    async with ctx.db.read() as session:
        gateways = await enabled_gateways(session)
    methods = []
    for code, gw in sorted(gateways.items()):
        if kind and gw.is_sandbox != (kind == "sandbox"):
            continue
        if operation and gw.operation_mode != operation:
            continue
        if currencies and not currencies & set(gw.accepted_currencies):
            continue
        if pg_names and gw.connector not in pg_names:
            continue
        methods.append({
            "code": code, "name": code, "pg": gw.connector, "is_sandbox": gw.is_sandbox,
            "logo": "", "wallets": [], "default_currency": gw.default_currency,
            "accepted_currencies": list(gw.accepted_currencies), "operation": gw.operation_mode,
            "operations": sorted(supported_operations(gw) - {"inquiry"}),
            "is_tokenizable": False, "auto_debit_enabled": False, "payment_services": [],
            "tags": [],
            # Whether customers can pay at it through PayOps (a checkout session may name it);
            # payments taken elsewhere are registered with the import API.
            "takes_payments": takes_payments(gw),
        })
    return {"payment_methods": methods, "customer_payment_methods": []}


for path, name in (("/b/pbl/v2/payment-methods/", "payment_methods"),
                   ("/b/pbl/v2/payment-methods", "payment_methods_no_slash")):
    router.add_api_route(
        path, payment_methods, methods=["POST"], operation_id=name,
        responses={400: {"description": "Field errors"}, 401: {"model": Detail},
                   403: {"model": Detail}, 413: {"model": Detail}, 415: {"model": Detail}},
        openapi_extra={"requestBody": {"content": {"application/json": {
            "schema": PaymentMethodsRequest.model_json_schema()}}}},
        summary="List the enabled payment methods (gateway configurations)",
    )
