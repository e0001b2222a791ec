"""SQL for gateway configurations."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.models import GatewayConfig


async def get_by_code(session: AsyncSession, pg_code: str) -> GatewayConfig | None:
    return await session.scalar(select(GatewayConfig).where(GatewayConfig.pg_code == pg_code))


async def list_all(session: AsyncSession) -> list[GatewayConfig]:
    return list(await session.scalars(select(GatewayConfig).order_by(GatewayConfig.pg_code)))


async def list_enabled(session: AsyncSession) -> list[GatewayConfig]:
    return list(
        await session.scalars(select(GatewayConfig).where(GatewayConfig.is_enabled.is_(True)))
    )


async def get_fresh(session: AsyncSession, gateway_id: int) -> GatewayConfig | None:
    """The configuration as stored now, even if this session holds an older copy."""
    return await session.scalar(
        select(GatewayConfig)
        .where(GatewayConfig.id == gateway_id)
        .execution_options(populate_existing=True)
    )


async def all_by_id(session: AsyncSession, *, for_update: bool = False) -> list[GatewayConfig]:
    """Every configuration in id order; ``for_update`` locks them all (key rotation)."""
    query = select(GatewayConfig).order_by(GatewayConfig.id)
    if for_update:
        query = query.with_for_update()
    return list(await session.scalars(query))
