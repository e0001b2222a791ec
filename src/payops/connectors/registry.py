"""Connector name → class. Adding a gateway adds one line here."""

from __future__ import annotations

from payops.connectors.base import Connector, ConnectorConfig
from payops.connectors.sandbox.connector import SandboxConnector

CONNECTORS: dict[str, type[Connector]] = {
    SandboxConnector.name: SandboxConnector,
}


def connector_class(name: str) -> type[Connector]:
    try:
        return CONNECTORS[name]
    except KeyError:
        raise ValueError(f"unknown connector {name!r}; known: {', '.join(sorted(CONNECTORS))}") from None


def build_connector(name: str, config: ConnectorConfig) -> Connector:
    return connector_class(name)(config)
