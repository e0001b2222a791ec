"""Gateway configurations and their connectors, built once per process.

Building a connector decrypts the configuration's credentials (Fernet) and, for HTTP gateways,
opens a client with its connection pool; doing that for every operation cost more than the rest
of the operation. Each process keeps one detached copy of a configuration with its connector and
rebuilds both when the configuration's ``version`` (bumped by every UPDATE, models.GatewayConfig)
differs from the one the operation's own query read, so a change made by any process is used by
every process from its next operation on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from payops.config import Settings
from payops.connectors.base import Connector
from payops.db.models import GatewayConfig
from payops.gateways import repository
from payops.gateways.service import call_budget_seconds, connector_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedGateway:
    config: GatewayConfig  # detached from any session: read its columns only
    # None when it cannot be built (credentials that no longer decrypt, ...): the guarded call
    # path then builds it inside its deadline and turns the failure into an unknown outcome.
    connector: Connector | None
    version: int


class GatewayCache:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._entries: dict[int, CachedGateway] = {}
        # Replaced connectors may still serve calls in flight: closed once those calls' time is up.
        self._retired: list[tuple[float, Connector]] = []

    def current(self, gateway_id: int, version: int | None) -> CachedGateway | None:
        """The entry of ``gateway_id`` if it is at ``version``, without reading anything."""
        entry = self._entries.get(gateway_id)
        return entry if entry is not None and entry.version == version else None

    async def get(
        self, session: AsyncSession, gateway_id: int, version: int | None
    ) -> CachedGateway | None:
        """The configuration ``gateway_id`` at ``version`` (None: unknown, read it now)."""
        entry = self._entries.get(gateway_id)
        if entry is not None and version is not None and entry.version == version:
            return entry
        await self._close_retired()
        config = await repository.get_fresh(session, gateway_id)
        if config is None:
            return None
        session.expunge(config)
        current = self._entries.get(gateway_id)
        if current is not None and current.version == config.version:
            return current
        try:
            connector: Connector | None = connector_for(config, self.settings)
        except Exception as exc:  # noqa: BLE001 - reported by the call that needs it
            log.warning("connector for %s not built: %s", config.pg_code, type(exc).__name__)
            connector = None
        fresh = CachedGateway(config, connector, config.version)
        self._entries[gateway_id] = fresh
        if current is not None and current.connector is not None:
            deadline = time.monotonic() + call_budget_seconds(current.config, self.settings)
            self._retired.append((deadline, current.connector))
        return fresh

    async def _close_retired(self) -> None:
        now = time.monotonic()
        due = [connector for deadline, connector in self._retired if deadline <= now]
        self._retired = [(d, c) for d, c in self._retired if d > now]
        for connector in due:
            await connector.aclose()

    async def aclose(self) -> None:
        entries, self._entries = self._entries, {}
        retired, self._retired = self._retired, []
        for connector in [e.connector for e in entries.values()] + [c for _, c in retired]:
            if connector is not None:
                await connector.aclose()
