"""Gateway configurations ("MIDs"): creation with encrypted credentials, and connectors for them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from payops.config import Settings
from payops.connectors.base import (
    CALL_MARGIN_SECONDS,
    Connector,
    ConnectorConfig,
    GatewayOperation,
    GatewayResult,
    Outcome,
    PaymentRef,
)
from payops.connectors.redaction import redact_result
from payops.connectors.registry import build_connector, connector_class
from payops.db.models import GatewayConfig
from payops.domain import messages
from payops.domain.rules import GatewayFacts
from payops.gateways import repository
from payops.gateways.crypto import SecretBox, box_for
from payops.money import is_known_currency

OPERATION_MODES = ("purchase", "authorize")
log = logging.getLogger(__name__)
T = TypeVar("T")


class GatewayConfigError(ValueError):
    pass


def secret_box(settings: Settings) -> SecretBox:
    return box_for(settings)  # loaded once per process and key, not per gateway call


async def add_gateway(
    session: AsyncSession,
    settings: Settings,
    *,
    pg_code: str,
    connector: str,
    operation_mode: str,
    default_currency: str,
    accepted_currencies: list[str] | None = None,
    is_sandbox: bool = True,
    credentials: dict[str, Any] | None = None,
    enabled_operations: list[str] | None = None,
    multi_attempt: bool = True,
    inquiry_window_minutes: int = 0,
    webhook_secret: str = "",
    options: dict[str, Any] | None = None,
) -> GatewayConfig:
    cls = connector_class(connector)
    missing = [key for key in cls.required_credentials if not (credentials or {}).get(key)]
    if missing:
        raise GatewayConfigError(f"{connector} needs credentials: {', '.join(missing)}")
    if operation_mode not in OPERATION_MODES:
        raise GatewayConfigError(f"operation mode must be one of {', '.join(OPERATION_MODES)}")
    if cls.takes_payments and operation_mode not in cls.payment_modes:
        # KNET and QPay only sell: an authorize-mode configuration could take no payment.
        raise GatewayConfigError(
            f"{connector} takes payments only in "
            f"{' or '.join(sorted(cls.payment_modes))} mode, not {operation_mode}"
        )
    default_currency = default_currency.upper()
    accepted = sorted({c.upper() for c in (accepted_currencies or [])} | {default_currency})
    for code in accepted:
        if not is_known_currency(code):
            raise GatewayConfigError(f"unknown currency {code}")
    if enabled_operations is None:
        enabled = sorted(cls.default_operations(operation_mode))
    else:
        enabled = sorted(set(enabled_operations))
        unsupported = set(enabled) - cls.capabilities
        if unsupported:
            raise GatewayConfigError(
                f"{connector} cannot perform: {', '.join(sorted(unsupported))}"
            )
    if await repository.get_by_code(session, pg_code):
        raise GatewayConfigError(f"a gateway configuration with code {pg_code!r} exists")
    box = secret_box(settings)
    config = GatewayConfig(
        pg_code=pg_code,
        connector=connector,
        operation_mode=operation_mode,
        default_currency=default_currency,
        accepted_currencies=accepted,
        is_sandbox=is_sandbox,
        credentials_encrypted=box.seal(credentials or {}),
        options=options or {},
        enabled_operations=enabled,
        multi_attempt=multi_attempt,
        inquiry_window_minutes=inquiry_window_minutes,
        webhook_secret_encrypted=box.seal({"secret": webhook_secret}) if webhook_secret else "",
    )
    session.add(config)
    await session.flush()
    return config


def supported_operations(config: GatewayConfig) -> frozenset[str]:
    """What this MID may do: enabled by the merchant and possible for the connector."""
    return frozenset(config.enabled_operations) & connector_class(config.connector).capabilities


def takes_payments(config: GatewayConfig) -> bool:
    """Can a customer pay at this gateway through PayOps (a checkout session may name it)?"""
    try:
        return connector_class(config.connector).takes_payments
    except ValueError:
        return False


def gateway_facts(config: GatewayConfig) -> GatewayFacts:
    return GatewayFacts(supported_operations(config), config.default_currency)


def timeout_seconds(config: GatewayConfig, settings: Settings) -> float:
    return float((config.options or {}).get("timeout_seconds", settings.gateway_timeout_seconds))


def call_budget_seconds(config: GatewayConfig, settings: Settings) -> float:
    """The longest one connector call may take before PayOps stops waiting for it."""
    return timeout_seconds(config, settings) + CALL_MARGIN_SECONDS


def connector_for(config: GatewayConfig, settings: Settings) -> Connector:
    box = secret_box(settings)
    return build_connector(
        config.connector,
        ConnectorConfig(
            pg_code=config.pg_code,
            is_sandbox=config.is_sandbox,
            credentials=box.open(config.credentials_encrypted),
            timeout_seconds=timeout_seconds(config, settings),
            options=dict(config.options or {}),
            webhook_secret=str(box.open(config.webhook_secret_encrypted).get("secret", "")),
            deployment=connector_class(config.connector).deployment(settings),
        ),
    )


async def _call_connector(
    config: GatewayConfig,
    settings: Settings,
    call: Callable[[Connector], Awaitable[T]],
    label: str,
    fallback: Callable[[Exception], T],
    shared: Connector | None = None,
) -> T:
    """Run one connector call with a hard deadline; anything but an answer — a timeout, a
    connector bug, credentials that no longer decrypt — becomes ``fallback``, never a result.
    ``shared`` is a connector the process keeps (gateways/cache.py): used, not closed."""
    connector: Connector | None = shared
    try:
        if connector is None:
            connector = connector_for(config, settings)
        # A deadline on this task (no second task, as asyncio.wait_for makes); a timeout
        # cancels the call and arrives here as TimeoutError.
        async with asyncio.timeout(connector.config.timeout_seconds + CALL_MARGIN_SECONDS):
            return await call(connector)
    except Exception as exc:
        log.warning("gateway call for %s ended without an answer: %s", label, type(exc).__name__)
        return fallback(exc)
    finally:
        if connector is not None and connector is not shared:
            await connector.aclose()


async def ask_gateway(
    config: GatewayConfig,
    settings: Settings,
    call: Callable[[Connector], Awaitable[GatewayResult]],
    label: str,
    shared: Connector | None = None,
) -> GatewayResult:
    """One connector call whose failure is an unknown outcome. Every gateway answer PayOps
    stores passes here, so this is where buyer personal data leaves the reply."""
    result = await _call_connector(
        config,
        settings,
        call,
        label,
        lambda exc: GatewayResult(
            Outcome.UNKNOWN, {"error": type(exc).__name__}, {}, messages.GATEWAY_UNCONFIRMED
        ),
        shared,
    )
    return without_personal_data(config, result)


def without_personal_data(config: GatewayConfig, result: GatewayResult) -> GatewayResult:
    return redact_result(result, connector_class(config.connector).personal_fields)


async def ask_gateway_for_operations(
    config: GatewayConfig, settings: Settings, payment: PaymentRef
) -> list[GatewayOperation] | None:
    """The gateway's own list of operations on a payment; None when it cannot tell."""
    return await _call_connector(
        config, settings, lambda c: c.list_operations(payment), config.pg_code, lambda exc: None
    )
