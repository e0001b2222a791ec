"""Crash points for the crash-recovery tests.

``PAYOPS_CRASH_POINT=<name>``, set when the process starts, makes it kill itself (SIGKILL: no cleanup, no flush) when
execution reaches that point. Unset, as in every real deployment, each call is a no-op.
"""

from __future__ import annotations

import os
import signal

AFTER_INTENT = "after_intent"  # intent committed, gateway not yet called
AFTER_GATEWAY = "after_gateway"  # gateway answered, nothing settled yet
AFTER_SETTLE = "after_settle"  # settled and committed, client not yet answered
POINTS = (AFTER_INTENT, AFTER_GATEWAY, AFTER_SETTLE)


# Read once, at start-up: the operation path passes three crash points per operation.
ARMED = os.environ.get("PAYOPS_CRASH_POINT")


def reach(point: str) -> None:
    if ARMED is not None and ARMED == point:
        os.kill(os.getpid(), signal.SIGKILL)
