"""Merchant notifications are written here, in the same DB transaction as the change they report."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.models import MerchantSetting, OutboxEvent
from payops.gateways.crypto import SecretBox
from payops.ids import new_event_id

HMAC_KEY_SETTING = "webhook_hmac_key"
OPERATIONS_URL_SETTING = "operations_webhook_url"
# Settings stored encrypted with the secret key (like gateway credentials).
SECRET_SETTINGS = frozenset({HMAC_KEY_SETTING})
# Where a session finds the SecretBox (``session.info``, set by AppContext for every session).
SECRET_BOX = "secret_box"


def secret_box(session: AsyncSession) -> SecretBox:
    box = session.info.get(SECRET_BOX)
    if box is None:
        raise RuntimeError("this database session has no secret box to protect stored secrets")
    return box


async def merchant_setting(session: AsyncSession, key: str) -> str:
    value = await session.scalar(select(MerchantSetting.value).where(MerchantSetting.key == key))
    if value and key in SECRET_SETTINGS:
        return secret_box(session).open_text(value)
    return value or ""


def settings_version() -> ScalarSelect[int]:
    """A scalar subquery that changes whenever a merchant setting does: every UPDATE bumps its
    row's version and rows are never deleted, so the sum only grows. Operations read it with the
    parent row, at no extra statement."""
    return select(func.coalesce(func.sum(MerchantSetting.version), 0)).scalar_subquery()


async def all_merchant_settings(session: AsyncSession) -> tuple[dict[str, str], int]:
    """Every merchant setting and their version (as ``settings_version``), in one statement."""
    rows = (
        await session.execute(
            select(MerchantSetting.key, MerchantSetting.value, MerchantSetting.version)
        )
    ).all()
    values = {key: value or "" for key, value, _ in rows}
    for key in SECRET_SETTINGS & values.keys():
        if values[key]:
            values[key] = secret_box(session).open_text(values[key])
    return values, sum(version for _, _, version in rows)


class MerchantSettingsCache:
    """The merchant settings as one process last read them (HMAC key, operations webhook URL),
    reread when the version an operation's query saw differs, so a change made through any
    process applies in every process from its next operation on."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self.version: int | None = None  # of the values held; None before the first read

    def current(self, version: int | None) -> dict[str, str] | None:
        """The values if they are at ``version``, without reading anything."""
        return self._values if version is not None and version == self.version else None

    async def get(self, session: AsyncSession, version: int | None) -> dict[str, str]:
        if version is None or version != self.version:
            self._values, self.version = await all_merchant_settings(session)
        return self._values


async def set_merchant_setting(session: AsyncSession, key: str, value: str) -> None:
    if value and key in SECRET_SETTINGS:
        value = secret_box(session).seal_text(value)
    row = await session.get(MerchantSetting, key)
    if row is None:
        session.add(MerchantSetting(key=key, value=value))
    else:
        row.value = value


def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    target_url: str,
    payload: dict[str, Any],
    transaction_id: int | None,
) -> OutboxEvent | None:
    if not target_url:
        return None
    event = OutboxEvent(
        event_id=new_event_id(),
        kind=kind,
        target_url=target_url,
        payload=payload,
        transaction_id=transaction_id,
    )
    session.add(event)
    return event


async def secret_setting_rows(
    session: AsyncSession, *, for_update: bool = False
) -> list[MerchantSetting]:
    """The stored rows of the secret settings, as stored (sealed); ``for_update`` locks them."""
    query = select(MerchantSetting).where(MerchantSetting.key.in_(SECRET_SETTINGS))
    if for_update:
        query = query.with_for_update()
    return list(await session.scalars(query))
