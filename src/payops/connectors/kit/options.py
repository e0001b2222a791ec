"""Reading a configuration's options (``payops gateway add --option``) and a payment's refs.

Options arrive as text from the CLI or as JSON values from the API: every reader accepts both
and never raises; a bad value gives the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payops.connectors.base import ConnectorConfig

TRUE_WORDS = ("1", "true", "yes", "on")


def flag(value: Any) -> bool:
    """``true``/``yes``/``on``/``1`` (any case) or a true JSON value."""
    if isinstance(value, str):
        return value.strip().lower() in TRUE_WORDS
    return bool(value)


def options(config: ConnectorConfig) -> dict[str, Any]:
    return config.options or {}


def text_option(config: ConnectorConfig, name: str, default: str = "") -> str:
    value = options(config).get(name)
    return default if value is None or str(value).strip() == "" else str(value).strip()


def flag_option(config: ConnectorConfig, name: str, default: bool = False) -> bool:
    value = options(config).get(name)
    return default if value is None else flag(value)


def float_option(config: ConnectorConfig, name: str, default: float) -> float:
    try:
        return float(options(config).get(name, default))
    except (TypeError, ValueError):
        return float(default)


def base_url(config: ConnectorConfig, default: str | None) -> str | None:
    """The ``base_url`` option (tests point it at a fake gateway) or ``default``, without a
    trailing slash."""
    override = options(config).get("base_url")
    if override:
        return str(override).rstrip("/")
    return default.rstrip("/") if default else default


def credential(config: ConnectorConfig, name: str, *, strip: bool = False) -> str:
    """A credential as text; "" when missing or not text. Connectors read credentials only
    through this (they may be held as masked secrets, see ``ConnectorConfig``)."""
    value = (config.credentials or {}).get(name)
    reveal = getattr(value, "get_secret_value", None)
    if callable(reveal):
        value = reveal()
    if not isinstance(value, str):
        return ""
    return value.strip() if strip else value


def ref(refs: Mapping[str, Any] | None, name: str) -> str | None:
    """A gateway reference as non-empty text, or None."""
    value = (refs or {}).get(name)
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text or None
