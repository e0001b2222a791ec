"""Secrets that never show in a ``repr``: configuration dumps, tracebacks and debug logs print
``'**********'`` instead of the value.

``Masked`` is a ``str`` (so every caller that needs the value — a header, an encryption key, a
database URL — uses it unchanged) whose ``repr`` hides it. It is the masking of pydantic's
``SecretStr`` without its explicit unwrapping; PayOps chose it so that the value keeps flowing to
the few places that need it while every accidental print of a settings or connector object shows
nothing (docs/decisions.md). ``Credentials`` is a gateway's decrypted credentials: a dict whose
``repr`` shows the keys only, with every text value ``Masked``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator

MASK = "**********"


class Masked(str):
    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK) if self else "''"

    def get_secret_value(self) -> str:
        """The value as a plain ``str`` (the name ``SecretStr`` uses)."""
        return str.__str__(self)


def masked(value: Any) -> Any:
    return Masked(value) if isinstance(value, str) and not isinstance(value, Masked) else value


# A settings field holding a secret: ``secret_key: MaskedStr = ""``.
MaskedStr = Annotated[str, AfterValidator(masked)]


class Credentials(dict[str, Any]):
    """Decrypted gateway credentials: text values are ``Masked``, and the ``repr`` names the
    keys only."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        super().__init__({key: masked(value) for key, value in (values or {}).items()})

    def __repr__(self) -> str:
        return f"Credentials({{{', '.join(f'{key!r}: {MASK!r}' for key in self)}}})"

    __str__ = __repr__
