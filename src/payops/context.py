"""What a request handler or CLI command needs: settings, database, authenticator."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from payops.auth.metrics import AuthMetrics
from payops.auth.service import Authenticator
from payops.config import Settings
from payops.db import Database
from payops.gateways.cache import GatewayCache
from payops.gateways.crypto import box_for
from payops.webhooks.outbox import SECRET_BOX, MerchantSettingsCache


@dataclass
class AppContext:
    settings: Settings
    db: Database
    authenticator: Authenticator
    # Gateway calls run as tasks shielded from client disconnects; keep them referenced.
    background: set[asyncio.Task[object]] = field(default_factory=set)
    # Per-process caches on the operation path, checked against version columns (issue 11).
    gateways: GatewayCache = field(init=False)
    merchant_settings: MerchantSettingsCache = field(default_factory=MerchantSettingsCache)

    def __post_init__(self) -> None:
        self.gateways = GatewayCache(self.settings)

    @classmethod
    def build(cls, settings: Settings, *, auth_metrics: AuthMetrics | None = None) -> AppContext:
        settings.ensure_data_dir()
        db = Database(
            settings.effective_database_url,
            pool_size=settings.pool_share,
            info={SECRET_BOX: box_for(settings)},
        )
        return cls(
            settings=settings, db=db, authenticator=Authenticator(settings, db, auth_metrics)
        )

    async def aclose(self) -> None:
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        await self.gateways.aclose()
        await self.db.dispose()
