"""Issue 16: what real Ottu integrations send and read, through the public API.

Form and multipart bodies read as Django REST framework reads them; the keys Ottu's checkout
schema requires; fields PayOps cannot honour refused, descriptive ones kept; gateways that take
no payments through PayOps refused at create; URLs up to Ottu's 2,000 characters.
"""

from __future__ import annotations

import json

import httpx
import pytest

from payops.gateways.service import add_gateway
from tests.helpers import Seed

URL = "/b/checkout/v1/pymt-txn/"
FORM = {"type": "e_commerce", "amount": "25.000", "currency_code": "KWD"}


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    await seed.gateway("sandbox-kwd", "purchase", "KWD")
    await seed.gateway("sandbox-auth-kwd", "authorize", "KWD")
    return await seed.api_key()


# -- form and multipart bodies ------------------------------------------------------------------


async def test_form_create_with_repeated_pg_codes_and_nested_fields(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = [
        *FORM.items(),
        ("pg_codes", "sandbox-kwd"),
        ("pg_codes", "sandbox-auth-kwd"),
        ("billing_address[line1]", "Street 1"),
        ("billing_address[city]", "Kuwait City"),
        ("billing_address.country", "KW"),
        ("extra[cart]", "42"),
        ("extra[tags][0]", "a"),
        ("extra[tags][1]", "b"),
        ("order_no", "F-1"),
    ]
    response = await client.post(
        URL,
        content=str(httpx.QueryParams(body)),
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["pg_codes"] == ["sandbox-kwd", "sandbox-auth-kwd"]
    assert [m["code"] for m in created["payment_methods"]] == ["sandbox-kwd", "sandbox-auth-kwd"]
    assert created["billing_address"] == {
        "line1": "Street 1",
        "line2": "",
        "city": "Kuwait City",
        "state": "",
        "country": "KW",
        "postal_code": "",
    }
    assert created["extra"] == {"cart": "42", "tags": ["a", "b"]}
    assert created["order_no"] == "F-1"


async def test_form_create_with_indexed_pg_codes(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        URL,
        data={**FORM, "pg_codes[1]": "sandbox-auth-kwd", "pg_codes[0]": "sandbox-kwd"},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    assert response.json()["pg_codes"] == ["sandbox-kwd", "sandbox-auth-kwd"]


async def test_multipart_create_with_a_json_part(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # As DRF's MultiPartParser: plain parts, repeated keys for a list, JSON text for a JSON field.
    parts = [(key, (None, value)) for key, value in FORM.items()]
    parts += [
        ("pg_codes", (None, "sandbox-kwd")),
        ("pg_codes", (None, "sandbox-auth-kwd")),
        ("extra", (None, json.dumps({"cart": {"id": 7, "price": "1.250"}}))),
        ("billing_address", (None, json.dumps({"city": "Hawally", "country": "KW"}))),
    ]
    response = await client.post(URL, files=parts, headers=auth)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["pg_codes"] == ["sandbox-kwd", "sandbox-auth-kwd"]
    assert created["extra"] == {"cart": {"id": 7, "price": "1.250"}}
    assert created["billing_address"]["city"] == "Hawally"


async def test_multipart_json_part_that_is_not_json_is_a_field_error(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    parts = [(key, (None, value)) for key, value in FORM.items()]
    parts += [("pg_codes", (None, "sandbox-kwd")), ("extra", (None, "{not json"))]
    response = await client.post(URL, files=parts, headers=auth)
    assert response.status_code == 400
    assert response.json() == {"extra": ["Value must be valid JSON."]}


async def test_attachment_file_is_refused_naming_the_field(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed
) -> None:
    parts = [(key, (None, value)) for key, value in FORM.items()]
    parts += [
        ("pg_codes", (None, "sandbox-kwd")),
        ("attachment", ("invoice.pdf", b"%PDF-1.4 fake", "application/pdf")),
    ]
    response = await client.post(URL, files=parts, headers=auth)
    assert response.status_code == 400
    assert list(response.json()) == ["attachment"]
    assert "Attachments are not supported" in response.json()["attachment"][0]
    assert (await seed.snapshot())["transactions"] == []


async def test_form_patch_and_put(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    created = (
        await client.post(URL, json={**FORM, "pg_codes": ["sandbox-kwd"]}, headers=auth)
    ).json()
    path = URL + created["session_id"]
    patched = await client.patch(
        path,
        data={"pg_codes": ["sandbox-kwd", "sandbox-auth-kwd"], "extra": '{"step": 2}'},
        headers=auth,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["pg_codes"] == ["sandbox-kwd", "sandbox-auth-kwd"]
    assert patched.json()["extra"] == {"step": 2}
    parts = [(key, (None, value)) for key, value in FORM.items()]
    parts += [("pg_codes[0]", (None, "sandbox-auth-kwd")), ("amount", (None, "30.000"))]
    replaced = await client.put(path, files=parts, headers=auth)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["pg_codes"] == ["sandbox-auth-kwd"]
    assert replaced.json()["amount"] == "30.000"


async def test_form_and_multipart_operations(client: httpx.AsyncClient, seed: Seed) -> None:
    auth = await seed.api_key()
    parent = await seed.transaction("10.000", order_no="OP-F")
    refund = await client.post(
        "/b/pbl/v2/operation/",
        headers=auth,
        data={
            "operation": "refund",
            "session_id": parent.session_id,
            "amount": "1.000",
            "extra[note]": "form",
        },
    )
    assert refund.status_code == 200, refund.text
    assert refund.json()["amount"] == "1.000" and refund.json()["txn"]["state"] == "refunded"
    again = await client.post(
        "/b/pbl/v1/operation/OP-F",
        headers=auth,
        files=[
            ("operation", (None, "refund")),
            ("amount", (None, "2.000")),
            ("extra", (None, '{"orders": []}')),
        ],
    )
    assert again.status_code == 200, again.text
    assert again.json()["amount"] == "2.000"
    blank = await client.post(
        "/b/pbl/v2/operation/",
        headers=auth,
        files=[
            ("operation", (None, "refund")),
            ("session_id", (None, parent.session_id)),
            ("attachment", ("x.pdf", b"%PDF", "application/pdf")),
        ],
    )
    assert blank.status_code == 400 and list(blank.json()) == ["attachment"]


# -- checkout response keys ----------------------------------------------------------------------


async def test_create_and_retrieve_carry_ottu_required_keys(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    created = (
        await client.post(URL, json={**FORM, "pg_codes": ["sandbox-kwd"]}, headers=auth)
    ).json()
    for body in (created, (await client.get(URL + created["session_id"], headers=auth)).json()):
        assert body["settled_pg_code"] is None
        assert body["checkout_page_url"] == body["checkout_url"]
        assert body["billing"] == "Total 25.000 KWD"
        assert body["qr_code_url"] == "" and body["attachment_short_url"] == ""
        assert body["sdk_setup_preload_payload"] is None
    card = {
        "card_number": "4111111111111111",
        "expiry": "12/39",
        "cvv": "123",
        "cardholder_name": "Test Customer",
    }
    paid = await client.post(f"/checkout/{created['session_id']}", data=card)
    assert paid.status_code == 200, paid.text
    after = (await client.get(URL + created["session_id"], headers=auth)).json()
    assert after["state"] == "paid" and after["settled_pg_code"] == "sandbox-kwd"


# -- fields PayOps cannot honour, and descriptive fields -------------------------------------

FEATURES_ASKED = {
    "notifications": {"sms": ["created"]},
    "email_recipients": ["ops@example.com"],
    "generate_qr_code": True,
    "shortify_checkout_url": True,
    "shortify_attachment_url": True,
    "attachment_upload_url": "uploads/invoice.pdf",
    "payment_instrument": {"type": "card"},
    "loyalty": {"enabled": True},
    "include_sdk_setup_preload": True,
    "preload_checkout_page": True,
    "branding_options": {"payment_methods": {"x": {}}},
    "agreement": {"id": "A-1"},
}


@pytest.mark.parametrize("field", sorted(FEATURES_ASKED))
async def test_a_feature_request_is_refused_naming_it(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed, field: str
) -> None:
    response = await client.post(
        URL, json={**FORM, "pg_codes": ["sandbox-kwd"], field: FEATURES_ASKED[field]}, headers=auth
    )
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert field in response.json()[field][0] and "not support" in response.json()[field][0]
    assert (await seed.snapshot())["transactions"] == []


async def test_feature_fields_that_ask_for_nothing_are_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    off = {
        "notifications": {},
        "email_recipients": [],
        "generate_qr_code": False,
        "shortify_checkout_url": None,
        "shortify_attachment_url": False,
        "attachment_upload_url": "",
        "payment_instrument": None,
        "loyalty": None,
        "include_sdk_setup_preload": False,
        "preload_checkout_page": False,
        "branding_options": {},
        "agreement": {},
    }
    response = await client.post(
        URL, json={**FORM, "pg_codes": ["sandbox-kwd"], **off}, headers=auth
    )
    assert response.status_code == 201, response.text
    form = await client.post(
        URL,
        data={
            **FORM,
            "pg_codes": "sandbox-kwd",
            "generate_qr_code": "false",
            "email_recipients": "",
            "include_sdk_setup_preload": "0",
        },
        headers=auth,
    )
    assert form.status_code == 201, form.text
    asked = await client.post(
        URL, data={**FORM, "pg_codes": "sandbox-kwd", "generate_qr_code": "true"}, headers=auth
    )
    assert asked.status_code == 400 and list(asked.json()) == ["generate_qr_code"]


async def test_descriptive_fields_are_stored_and_echoed(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    shipping = {
        "line1": "Block 1",
        "city": "Salmiya",
        "country": "KW",
        "first_name": "Amal",
        "last_name": "K",
        "email": "amal@example.com",
        "phone": "+96550000000",
    }
    described = {
        "due_datetime": "2026-12-31T18:00:00+03:00",
        "vendor_name": "Shop A",
        "product_type": "books",
        "unit_code": "north",
        "customer_phone_2": "+96551111111",
        "customer_birthdate": "1990-05-17",
    }
    created = await client.post(
        URL,
        json={**FORM, "pg_codes": ["sandbox-kwd"], **described, "shipping_address": shipping},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    fetched = (await client.get(URL + created.json()["session_id"], headers=auth)).json()
    for body in (created.json(), fetched):
        for key, value in described.items():
            assert body[key] == value, key
        assert body["shipping_address"] == {**shipping, "line2": "", "state": "", "postal_code": ""}
    bad = await client.post(
        URL,
        json={
            **FORM,
            "pg_codes": ["sandbox-kwd"],
            "customer_birthdate": "17/05/1990",
            "shipping_address": {"city": "Salmiya"},
        },
        headers=auth,
    )
    assert bad.status_code == 400
    assert set(bad.json()) == {"customer_birthdate", "shipping_address"}
    assert bad.json()["shipping_address"]["line1"] == ["This field is required."]


# -- gateways that take no payments through PayOps --------------------------------------------


async def test_session_on_a_gateway_without_payments_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every registered gateway takes payments since issue 17: the rule is tested on a
    # connector made to take none.
    from payops.connectors.mpgs.connector import MpgsConnector

    monkeypatch.setattr(MpgsConnector, "takes_payments", False)
    async with seed.ctx.db.write() as session:
        await add_gateway(
            session,
            seed.ctx.settings,
            pg_code="mpgs-kwd",
            connector="mpgs",
            operation_mode="purchase",
            default_currency="KWD",
            credentials={"merchant_id": "M1", "api_password": "p"},
        )
    response = await client.post(
        URL, json={**FORM, "pg_codes": ["sandbox-kwd", "mpgs-kwd"]}, headers=auth
    )
    assert response.status_code == 400
    [message] = response.json()["pg_codes"]
    assert '"mpgs-kwd" takes no payments through PayOps' in message and "import" in message
    assert (await seed.snapshot())["transactions"] == []
    created = (
        await client.post(URL, json={**FORM, "pg_codes": ["sandbox-kwd"]}, headers=auth)
    ).json()
    patched = await client.patch(
        URL + created["session_id"], json={"pg_codes": ["mpgs-kwd"]}, headers=auth
    )
    assert patched.status_code == 400 and "takes no payments" in patched.json()["pg_codes"][0]

    methods = await client.post("/b/pbl/v2/payment-methods/", json={}, headers=auth)
    takes = {m["code"]: m["takes_payments"] for m in methods.json()["payment_methods"]}
    assert takes == {"mpgs-kwd": False, "sandbox-auth-kwd": True, "sandbox-kwd": True}


# -- URL lengths -------------------------------------------------------------------------------


async def test_urls_up_to_2000_characters(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed
) -> None:
    def long_url(size: int) -> str:
        base = "https://merchant.example/"
        return base + "a" * (size - len(base))

    urls = {"redirect_url": long_url(2000), "webhook_url": long_url(2000)}
    created = await client.post(
        URL, json={**FORM, "pg_codes": ["sandbox-kwd"], **urls}, headers=auth
    )
    assert created.status_code == 201, created.text
    fetched = (await client.get(URL + created.json()["session_id"], headers=auth)).json()
    assert fetched["redirect_url"] == urls["redirect_url"]
    assert fetched["webhook_url"] == urls["webhook_url"]
    too_long = await client.post(
        URL,
        json={**FORM, "pg_codes": ["sandbox-kwd"], "redirect_url": long_url(2001)},
        headers=auth,
    )
    assert too_long.status_code == 400
    assert too_long.json() == {
        "redirect_url": ["Ensure this field has no more than 2000 characters."]
    }
    parent = await seed.transaction("5.000", order_no="DISC-1")
    inquiry = await client.post(
        "/b/pbl/v1/inquiry/DISC-1",
        headers=auth,
        json={"disclose_to_merchant": True, "disclosure_url": long_url(2000)},
    )
    assert inquiry.status_code == 200, inquiry.text
    assert inquiry.json()["session_id"] == parent.session_id


# -- operation bodies: exactly Ottu's ExternalOperation ------------------------------------------

EXTERNAL_OPERATION = {
    "amount",
    "session_id",
    "order_no",
    "initiator",
    "is_sandbox",
    "operation",
    "pg_code",
    "pg_response",
    "pg_params",
    "reference_number",
    "source",
    "success",
    "result",
    "signature",
    "timestamp_utc",
    "txn",
    "extra",
}
# The field list of Ottu's PHP/.NET/Ruby snippets, walked in this order, unsorted.
SNIPPET_FIELDS = (
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
)


def snippet_signature(body: dict[str, object], key: str) -> str:
    import hashlib
    import hmac

    message = "".join(
        f"{name}{body[name]}" for name in SNIPPET_FIELDS if body.get(name) not in (None, "")
    )
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


async def test_operation_response_webhook_and_replay_are_exact(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.api_key()
    await seed.set_hmac_key("hmac-1")
    parent = await seed.transaction("20.000", order_no="EX-1", webhook_url="https://m.example/h")
    response = await client.post(
        "/b/pbl/v2/operation/",
        headers={**auth, "Tracking-Key": "t-1"},
        json={"operation": "refund", "session_id": parent.session_id, "amount": "4.000"},
    )
    assert response.status_code == 200, response.text
    replay = await client.post(
        "/b/pbl/v2/operation/",
        headers={**auth, "Tracking-Key": "t-1"},
        json={"operation": "refund", "session_id": parent.session_id, "amount": "4.000"},
    )
    assert replay.status_code == 200
    [webhook] = [e.payload for e in await seed.outbox() if e.kind == "operation"]
    for body in (response.json(), replay.json(), webhook):
        assert set(body) == EXTERNAL_OPERATION
        assert set(body["txn"]) == {"amount", "currency_code", "order_no", "session_id", "state"}
        assert body["txn"]["state"] == "refunded" and body["amount"] == "4.000"
        # Only amount, order_no, reference_number and result are signed; a verifier walking
        # Ottu's field list unsorted (the PHP/.NET/Ruby snippets) agrees with the sorted one.
        assert body["signature"] == snippet_signature(body, "hmac-1")
    assert replay.json()["reference_number"] == response.json()["reference_number"]


async def test_form_keys_nested_absurdly_deep_are_a_field_error(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed
) -> None:
    key = "extra" + "[a]" * 5000
    response = await client.post(
        URL, data={**FORM, "pg_codes": "sandbox-kwd", key: "x"}, headers=auth
    )
    assert response.status_code == 400
    assert response.json() == {"extra": ["Nested more than 32 levels deep."]}
    assert (await seed.snapshot())["transactions"] == []
