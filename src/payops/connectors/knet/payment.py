"""KNET's payment page: the AES ``trandata`` envelope both ways, and what a posted result says.
Pure protocol code, no I/O (spec: gateways-payment-acceptance.md §5, gateways-knet… §1).

- Request (PayOps → browser → KNET): ``id=…&password=…&action=1&langid=EN&currencycode=414&
  amt=12.500&responseURL=…&errorURL=…&trackid=…&udf1=…&…&udf5=…`` (``&``-joined, values not
  URL-encoded) → PKCS#5 padding → AES-128-CBC with key = IV = the 16-character terminal
  resource key → hex. The browser is sent (GET) to ``PaymentHTTP.htm?param=paymentInit&
  trandata=<hex>&tranportalId=<id>&responseURL=<url>&errorURL=<url>``.
- Result (KNET's server → PayOps's responseURL, form POST): ``trandata`` decrypts to
  ``paymentid=…&result=CAPTURED&auth=…&ref=…&tranid=…&postdate=…&trackid=…&udf1=…&amt=…&
  authRespCode=…``. Hex is read in either case. A value that does not decrypt and unpad cleanly
  is not KNET's. There is no MAC: the track id and amount are claims, checked against the
  attempt, and a ``CAPTURED`` is confirmed by inquiry (action 8) before it is believed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from payops.connectors.base import Outcome

ACTION_PURCHASE = "1"
CURRENCY_CODE = "414"
PAGE_PATH = "/kpg/PaymentHTTP.htm"
TRACK_ID_MAX = 40
UDF_MAX = 255
_TRACK_ID_SHAPE = re.compile(r"^[A-Za-z0-9]+$")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{32})+$")
# What a decrypted result may hold worth keeping (nothing secret or personal).
RESULT_FIELDS = (
    "paymentid",
    "result",
    "auth",
    "avr",
    "ref",
    "tranid",
    "postdate",
    "trackid",
    "amt",
    "authrespcode",
    "udf1",
    "udf2",
    "udf3",
    "udf4",
    "udf5",
)


class EnvelopeError(ValueError):
    """Not a ``trandata`` this terminal's key made (bad hex, length, padding or text)."""


def _cipher(resource_key: str) -> Cipher[modes.CBC]:
    key = resource_key.encode("utf-8")
    if len(key) != 16:
        raise EnvelopeError("the terminal resource key must be 16 characters")
    return Cipher(algorithms.AES(key), modes.CBC(key))


def encrypt(plaintext: str, resource_key: str) -> str:
    """Pad (PKCS#5), AES-128-CBC with key = IV = resource key, lower-case hex."""
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = _cipher(resource_key).encryptor()
    return (encryptor.update(data) + encryptor.finalize()).hex()


def decrypt(trandata: str, resource_key: str) -> str:
    """The reverse of :func:`encrypt`; raises EnvelopeError for anything else."""
    text = (trandata or "").strip()
    if not _HEX.match(text):
        raise EnvelopeError("trandata is not hex of whole AES blocks")
    decryptor = _cipher(resource_key).decryptor()
    data = decryptor.update(bytes.fromhex(text)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(data) + unpadder.finalize()
        return plain.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise EnvelopeError("trandata does not decrypt with this terminal's key") from None


def join_fields(fields: list[tuple[str, str]]) -> str:
    """KNET's plaintext: ``name=value`` joined with ``&``, values as they are."""
    return "&".join(f"{name}={value}" for name, value in fields)


def split_fields(plaintext: str) -> dict[str, str]:
    """A decrypted plaintext → its fields (names lower-cased; ``authRespCode`` too). Values are
    not URL-decoded (KNET does not encode them); a value may itself contain ``=``."""
    fields: dict[str, str] = {}
    for part in plaintext.split("&"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            fields[name.strip().lower()] = value.strip()
    return fields


def check_track_id(track_id: str) -> str:
    if not track_id or len(track_id) > TRACK_ID_MAX or not _TRACK_ID_SHAPE.match(track_id):
        raise ValueError("KNET needs a track id of at most 40 letters and digits")
    return track_id


def check_udf(value: str) -> str:
    """A UDF value KNET accepts: at most 255 characters, no ``@`` ``/`` ``&`` ``=``."""
    text = (value or "").strip()
    text = re.sub(r"[@/&=]", " ", text)[:UDF_MAX]
    return text.strip()


def purchase_plaintext(
    *,
    tranportal_id: str,
    password: str,
    amount: str,
    language: str,
    response_url: str,
    error_url: str,
    track_id: str,
    udfs: tuple[str, str, str, str, str] = ("", "", "", "", ""),
) -> str:
    """The purchase (action 1) request, in K-064's field order."""
    fields = [
        ("id", tranportal_id),
        ("password", password),
        ("action", ACTION_PURCHASE),
        ("langid", language),
        ("currencycode", CURRENCY_CODE),
        ("amt", amount),
        ("responseURL", response_url),
        ("errorURL", error_url),
        ("trackid", check_track_id(track_id)),
    ]
    fields += [(f"udf{n}", check_udf(value)) for n, value in enumerate(udfs, start=1)]
    return join_fields(fields)


def language(code: str) -> str:
    return "AR" if (code or "").lower().startswith("ar") else "EN"


# -- the posted result ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PostedResult:
    fields: Mapping[str, str]

    def get(self, name: str) -> str:
        return str(self.fields.get(name, "")).strip()

    @property
    def result(self) -> str:
        return self.get("result").upper()

    @property
    def track_id(self) -> str:
        return self.get("trackid")

    @property
    def amount(self) -> str:
        return self.get("amt")

    def evidence(self) -> dict[str, str]:
        return {name: self.get(name) for name in RESULT_FIELDS if name in self.fields}


def read_result(trandata: str, resource_key: str) -> PostedResult:
    """Decrypt a posted ``trandata``; EnvelopeError when it is not this terminal's."""
    fields = split_fields(decrypt(trandata, resource_key))
    if "result" not in fields or "trackid" not in fields:
        raise EnvelopeError("decrypted trandata lacks result or trackid")
    return PostedResult(fields)


# What a posted ``result`` says (spec §5.3). ``CAPTURED`` is still confirmed by inquiry.
POSTED_OUTCOME: dict[str, tuple[Outcome, str | None]] = {
    "CAPTURED": (Outcome.SUCCESS, None),
    "NOT CAPTURED": (Outcome.FAILED, None),
    "DENIED BY RISK": (Outcome.FAILED, None),
    "CANCELED": (Outcome.FAILED, "canceled"),
    "CANCELLED": (Outcome.FAILED, "canceled"),
    "HOST TIMEOUT": (Outcome.PENDING, None),
}


def posted_outcome(result: str) -> tuple[Outcome, str | None]:
    """An unknown word is pending (never a success, never a failure)."""
    return POSTED_OUTCOME.get(result.upper().strip(), (Outcome.PENDING, None))


# Codes KNET puts on the browser's errorURL (spec §5.3): only hints, never a result by themselves.
ERROR_URL_CODES = {"IPAY0100048": "canceled", "IPAY0100042": "expired"}
