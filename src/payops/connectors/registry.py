"""Connector name → class. Adding a gateway adds one line here.

Classes are imported on first use, so a deployment loads only the connectors it configures.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names alone (`payops gateway add --help`) need no connector code
    from payops.connectors.base import Connector, ConnectorConfig

CONNECTORS: dict[str, str | type[Connector]] = {
    "sandbox": "payops.connectors.sandbox.connector:SandboxConnector",
    "mpgs": "payops.connectors.mpgs.connector:MpgsConnector",
    "tabby": "payops.connectors.tabby.connector:TabbyConnector",
    "ngenius": "payops.connectors.ngenius.connector:NgeniusConnector",
    "myfatoorah": "payops.connectors.myfatoorah.connector:MyFatoorahConnector",
    "knet": "payops.connectors.knet.connector:KnetConnector",
    "payu_india": "payops.connectors.payu_india.connector:PayuIndiaConnector",
    "qpay": "payops.connectors.qpay.connector:QpayConnector",
}


def connector_class(name: str) -> type[Connector]:
    try:
        target = CONNECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown connector {name!r}; known: {', '.join(sorted(CONNECTORS))}"
        ) from None
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        try:
            target = getattr(import_module(module), attribute)
        except (ImportError, AttributeError):
            raise ValueError(f"connector {name!r} is not available in this build") from None
    return target


def build_connector(name: str, config: ConnectorConfig) -> Connector:
    return connector_class(name)(config)
