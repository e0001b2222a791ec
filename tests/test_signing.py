"""Webhook signature (ottu-api.md §7.3) and encryption at rest of gateway secrets (decisions §7)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.fernet import Fernet

from payops.config import Settings
from payops.gateways import crypto
from payops.gateways.crypto import SecretBox, load_or_create_key
from payops.webhooks import signing
from payops.webhooks.signing import SIGNED_FIELDS, sign, signing_message, verify

VECTOR_KEY = "pu9MpX3yPR"
VECTOR_PAYLOAD = {
    "amount": "86.000",
    "currency_code": "KWD",
    "customer_first_name": "example-customer",
}
VECTOR_MESSAGE = "amount86.000currency_codeKWDcustomer_first_nameexample-customer"
VECTOR_SIGNATURE = "6143b8ad4bd283540721ab000f6de746e722231aaaa90bc38f639081d3ff9f67"


def _hmac(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


# -- the documented vector ------------------------------------------------------------------


def test_documented_vector_message() -> None:
    assert signing_message(VECTOR_PAYLOAD) == VECTOR_MESSAGE


def test_documented_vector_signature() -> None:
    assert sign(VECTOR_PAYLOAD, VECTOR_KEY) == VECTOR_SIGNATURE


def test_documented_vector_verifies() -> None:
    assert verify(VECTOR_PAYLOAD, VECTOR_SIGNATURE, VECTOR_KEY) is True


def test_signature_is_lowercase_hex_sha256() -> None:
    signature = sign({"amount": "1.000", "order_no": "X"}, "k")
    assert len(signature) == 64
    assert signature == signature.lower()
    int(signature, 16)


def test_the_eighteen_signed_fields() -> None:
    assert SIGNED_FIELDS == {
        "amount",
        "currency_code",
        "customer_first_name",
        "customer_last_name",
        "customer_email",
        "customer_phone",
        "customer_address_line1",
        "customer_address_line2",
        "customer_address_city",
        "customer_address_state",
        "customer_address_country",
        "customer_address_postal_code",
        "gateway_name",
        "gateway_account",
        "order_no",
        "reference_number",
        "result",
        "state",
    }
    assert len(SIGNED_FIELDS) == 18


# -- which fields, in which order -----------------------------------------------------------


@pytest.mark.parametrize("empty", ["", None])
def test_empty_and_none_values_are_skipped(empty: str | None) -> None:
    payload = {**VECTOR_PAYLOAD, "customer_last_name": empty, "order_no": empty}
    assert signing_message(payload) == VECTOR_MESSAGE
    assert sign(payload, VECTOR_KEY) == VECTOR_SIGNATURE


def test_non_signed_keys_are_ignored() -> None:
    payload = {
        **VECTOR_PAYLOAD,
        "session_id": "a" * 40,
        "signature": "whatever",  # the signature field is itself not signed
        "extra": {"amount": "1"},
        "txn": {"state": "refunded", "currency_code": "KWD"},  # nested: not top level
        "pg_response": {"result": "x"},
        "Amount": "99.000",  # key names are case sensitive
    }
    assert signing_message(payload) == VECTOR_MESSAGE
    assert sign(payload, VECTOR_KEY) == VECTOR_SIGNATURE


def test_keys_are_sorted_by_name_whatever_the_payload_order() -> None:
    payload = {
        "state": "paid",
        "result": "success",
        "reference_number": "R1",
        "order_no": "O1",
        "customer_first_name": "F",
        "customer_email": "e@x.io",
        "currency_code": "KWD",
        "amount": "9.000",
    }
    expected = (
        "amount9.000currency_codeKWDcustomer_emaile@x.iocustomer_first_nameF"
        "order_noO1reference_numberR1resultsuccessstatepaid"
    )
    assert signing_message(payload) == expected
    assert signing_message(dict(reversed(list(payload.items())))) == expected
    assert sign(payload, "key") == _hmac("key", expected)


def test_byte_order_sort_puts_customer_address_fields_before_customer_email() -> None:
    payload = {"customer_email": "e", "customer_address_city": "c", "customer_address_line1": "l"}
    assert signing_message(payload) == (
        "customer_address_cityccustomer_address_line1lcustomer_emaile"
    )


def test_all_fields_signed() -> None:
    payload = {name: f"v-{name}" for name in SIGNED_FIELDS}
    expected = "".join(f"{name}v-{name}" for name in sorted(SIGNED_FIELDS))
    assert sign(payload, "k") == _hmac("k", expected)


def test_non_string_values_are_stringified() -> None:
    assert signing_message({"amount": 5, "result": True}) == "amount5resultTrue"


def test_empty_key_gives_no_signature_and_never_verifies() -> None:
    assert sign(VECTOR_PAYLOAD, "") == ""
    assert verify(VECTOR_PAYLOAD, "", "") is False
    assert verify(VECTOR_PAYLOAD, VECTOR_SIGNATURE, "") is False


# -- verification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "87.000"},
        {"currency_code": "USD"},
        {"customer_first_name": "Example-customer"},
        {"order_no": "added"},
        {"customer_first_name": ""},  # removing a signed value
    ],
)
def test_verify_rejects_tampered_payload(change: dict[str, str]) -> None:
    assert verify({**VECTOR_PAYLOAD, **change}, VECTOR_SIGNATURE, VECTOR_KEY) is False


def test_verify_rejects_wrong_key_and_bad_signatures() -> None:
    assert verify(VECTOR_PAYLOAD, VECTOR_SIGNATURE, "pu9MpX3yPr") is False
    flipped = VECTOR_SIGNATURE[:-1] + ("0" if VECTOR_SIGNATURE[-1] != "0" else "1")
    assert verify(VECTOR_PAYLOAD, flipped, VECTOR_KEY) is False
    assert verify(VECTOR_PAYLOAD, VECTOR_SIGNATURE.upper(), VECTOR_KEY) is False
    assert verify(VECTOR_PAYLOAD, VECTOR_SIGNATURE[:32], VECTOR_KEY) is False
    assert verify(VECTOR_PAYLOAD, "", VECTOR_KEY) is False
    assert verify(VECTOR_PAYLOAD, None, VECTOR_KEY) is False  # type: ignore[arg-type]


def test_verify_ignores_unsigned_changes() -> None:
    payload = {**VECTOR_PAYLOAD, "session_id": "changed", "signature": "x"}
    assert verify(payload, VECTOR_SIGNATURE, VECTOR_KEY) is True


def test_verify_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: object, b: object) -> bool:
        calls.append((a, b))
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    assert verify(VECTOR_PAYLOAD, VECTOR_SIGNATURE, VECTOR_KEY) is True
    assert verify(VECTOR_PAYLOAD, "0" * 64, VECTOR_KEY) is False
    assert calls == [(VECTOR_SIGNATURE, VECTOR_SIGNATURE), (VECTOR_SIGNATURE, "0" * 64)]


# -- SecretBox (Fernet) ---------------------------------------------------------------------


def test_secret_box_round_trip() -> None:
    box = SecretBox(Fernet.generate_key())
    data = {"secret": "s3cr3t-value", "merchant_id": "TEST123", "nested": {"a": [1, 2]}}
    token = box.seal(data)
    assert "s3cr3t-value" not in token and "TEST123" not in token
    assert box.open(token) == data
    # Fernet tokens are randomised: the same data never seals to the same text twice.
    assert box.seal(data) != token


def test_secret_box_is_fernet_compatible() -> None:
    key = Fernet.generate_key()
    token = SecretBox(key).seal({"b": 1, "a": "x"})
    assert json.loads(Fernet(key).decrypt(token.encode())) == {"a": "x", "b": 1}


def test_secret_box_empty_token_opens_to_empty_dict() -> None:
    assert SecretBox(Fernet.generate_key()).open("") == {}


def test_secret_box_wrong_key_fails_loudly() -> None:
    token = SecretBox(Fernet.generate_key()).seal({"secret": "x"})
    with pytest.raises(RuntimeError, match="cannot be decrypted"):
        SecretBox(Fernet.generate_key()).open(token)


def test_secret_box_tampered_token_fails() -> None:
    key = Fernet.generate_key()
    token = SecretBox(key).seal({"secret": "x"})
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(RuntimeError):
        SecretBox(key).open(tampered)


def test_secret_box_rejects_invalid_key() -> None:
    with pytest.raises(ValueError):
        SecretBox(b"not-a-fernet-key")


def test_configured_secret_key_is_used(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = Fernet.generate_key()
    settings = Settings(data_dir=tmp_path, secret_key=key.decode())
    assert load_or_create_key(settings) == key
    assert not (tmp_path / crypto.KEY_FILE).exists()


def test_generated_key_is_persisted_once_with_private_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "data", secret_key="")
    first = load_or_create_key(settings)
    path = tmp_path / "data" / crypto.KEY_FILE
    assert path.exists()
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(settings) == first
    token = SecretBox(first).seal({"secret": "x"})
    assert SecretBox(load_or_create_key(settings)).open(token) == {"secret": "x"}
