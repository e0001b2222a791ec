"""The periodic loops inside `payops serve`: reconciler, webhook delivery, session expiry,
automatic attempt inquiry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


async def every(interval: float, name: str, work: Callable[[], Awaitable[Any]]) -> None:
    """Run ``work`` every ``interval`` seconds until cancelled; a failed pass is logged and the
    loop goes on, so one bad row never stops reconciliation or delivery for good."""
    while True:
        try:
            outcome = await work()
            if outcome:
                log.info("%s pass: %s", name, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s pass failed", name)
        await asyncio.sleep(interval)
