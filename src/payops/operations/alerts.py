"""Alerts for an operator's resolution that a later gateway answer contradicts.

An operator resolves a ``needs_review`` operation from the gateway's own dashboard. If the
gateway later says otherwise, PayOps changes nothing (money records never flip on their own once a
human has decided), but it must not stay silent: a log line, a Prometheus counter and an audit row.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from payops import audit
from payops.auth.service import SETTLEMENT
from payops.connectors.base import GatewayResult, Outcome
from payops.db.models import Operation, PaymentTransaction

log = logging.getLogger(__name__)

# Not in the default registry: each app registers it in its own (api/app.py).
CONTRADICTED_RESOLUTIONS = Counter(
    "payops_resolution_contradicted_total",
    "Gateway answers that contradict an operator's resolution of an operation",
    ["operation"],
    registry=None,
)

# The outcome an operator resolved with → the gateway outcome that contradicts it.
CONTRADICTING = {"succeeded": Outcome.FAILED, "failed": Outcome.SUCCESS}


def contradicts(resolution: dict[str, object], result: GatewayResult) -> bool:
    return CONTRADICTING.get(str(resolution.get("outcome"))) == result.outcome


def report_contradiction(
    session: AsyncSession, op: Operation, parent: PaymentTransaction, result: GatewayResult
) -> bool:
    """Raise the alert when ``result`` contradicts ``op``'s resolution; True if it did."""
    resolution = op.resolution or {}
    if not contradicts(resolution, result):
        return False
    CONTRADICTED_RESOLUTIONS.labels(op.operation).inc()
    log.error(
        "gateway answer contradicts the resolution of operation %s: resolved %s by %s, "
        "gateway says %s",
        op.reference_number,
        resolution.get("outcome"),
        resolution.get("actor"),
        result.outcome.value,
    )
    audit.record(
        session,
        SETTLEMENT,
        "contradiction",
        "alert",
        parent,
        reference_number=op.reference_number,
        resolved_as=resolution.get("outcome"),
        resolved_by=resolution.get("actor"),
        gateway_outcome=result.outcome.value,
        gateway_message=result.message,
    )
    return True
