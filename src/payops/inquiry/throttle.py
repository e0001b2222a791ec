"""Inquiry throttling (spec §6.6), as a pure decision over the recorded gateway inquiries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class ThrottlePolicy:
    initial_delay: timedelta = timedelta(minutes=10)
    gap: timedelta = timedelta(minutes=30)
    daily_max: int = 3
    global_per_minute: int = 30


def seconds_to_wait(
    policy: ThrottlePolicy,
    *,
    now: datetime,
    created_at: datetime,
    served_for_transaction: list[datetime],
    served_last_minute_all: list[datetime],
) -> float:
    """0 when a gateway inquiry may run now, else how long the caller must wait."""
    waits = [(created_at + policy.initial_delay - now).total_seconds()]
    today = sorted(t for t in served_for_transaction if t > now - DAY)
    if len(today) >= policy.daily_max:
        waits.append((today[-policy.daily_max] + DAY - now).total_seconds())
    if today:
        waits.append((today[-1] + policy.gap - now).total_seconds())
    recent = sorted(t for t in served_last_minute_all if t > now - MINUTE)
    if len(recent) >= policy.global_per_minute:
        waits.append((recent[-policy.global_per_minute] + MINUTE - now).total_seconds())
    return max(0.0, *waits)
