"""The Prometheus exposition: this process's registry, or every worker's counts when
`payops serve` runs several (prometheus-client multiprocess mode, api/serving.py)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, generate_latest, multiprocess


def exposition(registry: CollectorRegistry) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        gathered = CollectorRegistry()
        multiprocess.MultiProcessCollector(gathered)
        return generate_latest(gathered)
    return generate_latest(registry)
