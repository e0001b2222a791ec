"""Checkout API: create, retrieve, PATCH and PUT, with DRF-shaped validation errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import Seed

URL = "/b/checkout/v1/pymt-txn/"
VALID = {
    "type": "e_commerce",
    "amount": "25.000",
    "currency_code": "KWD",
    "pg_codes": ["sandbox-kwd"],
}


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    await seed.gateway("sandbox-kwd", "purchase", "KWD")
    await seed.gateway("sandbox-usd", "purchase", "USD")
    return await seed.api_key()


async def create(client: httpx.AsyncClient, auth: dict[str, str], **fields: Any) -> httpx.Response:
    return await client.post(URL, json={**VALID, **fields}, headers=auth)


async def test_create_returns_201_with_the_session(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await create(
        client,
        auth,
        order_no="C-1",
        customer_email="a@example.com",
        customer_first_name="Amal",
        extra={"cart": "42"},
        billing_address={"line1": "Street 1", "city": "Kuwait City", "country": "KW"},
        expiration_time="02:00:00",
        redirect_url="https://shop.example/done",
        webhook_url="https://shop.example/hook",
        language="ar",
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["session_id"]) == 40 and body["state"] == "created"
    assert body["checkout_url"] == f"http://testserver/checkout/{body['session_id']}"
    assert body["amount"] == "25.000" and body["currency_code"] == "KWD"
    assert body["order_no"] == "C-1" and body["expiration_time"] == "02:00:00"
    assert body["billing_address"]["country"] == "KW" and body["extra"] == {"cart": "42"}
    assert body["payment_methods"][0]["code"] == "sandbox-kwd"
    assert body["transactions"] == []


async def test_default_lifetime_is_24_hours(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = (await create(client, auth)).json()
    assert body["expiration_time"] == "1 00:00:00"


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"amount": None}, {"amount": ["This field is required."]}),
        (
            {"type": None, "currency_code": None, "pg_codes": None},
            {
                "type": ["This field is required."],
                "currency_code": ["This field is required."],
                "pg_codes": ["This field is required."],
            },
        ),
        ({"type": "donation"}, {"type": ['"donation" is not a valid choice.']}),
        (
            {"pg_codes": ["knet-prod"]},
            {"pg_codes": ['Payment gateway code "knet-prod" does not exist or is disabled.']},
        ),
        (
            {"pg_codes": "sandbox-kwd"},
            {"pg_codes": ['Expected a list of items but got type "str".']},
        ),
        ({"currency_code": "XYZ"}, {"currency_code": ['"XYZ" is not a valid currency code.']}),
        (
            {"currency_code": "SAR", "amount": "10.00"},
            {"currency_code": ["None of the payment gateways in pg_codes accepts SAR."]},
        ),
        (
            {"amount": "1.2345"},
            {"amount": ["Ensure that there are no more than 3 decimal places for KWD."]},
        ),
        ({"amount": "0"}, {"amount": ["Ensure this value is greater than 0."]}),
        ({"amount": "-5.000"}, {"amount": ["A valid number is required."]}),
        ({"amount": 5}, {"amount": ['Send the amount as a decimal string, e.g. "10.000".']}),
        ({"customer_email": "not-an-email"}, {"customer_email": ["Enter a valid email address."]}),
        (
            {"customer_phone": "1" * 33},
            {"customer_phone": ["Ensure this field has no more than 32 characters."]},
        ),
        (
            {"billing_address": {"country": "KWT", "city": "x" * 41}},
            {
                "billing_address": {
                    "country": ["Ensure this field has no more than 2 characters."],
                    "city": ["Ensure this field has no more than 40 characters."],
                }
            },
        ),
        (
            {"expiration_time": "forever"},
            {
                "expiration_time": [
                    "Duration has wrong format. Use one of these formats instead: "
                    "[DD] [HH:[MM:]]ss[.uuuuuu]."
                ]
            },
        ),
        ({"webhook_url": "javascript:alert(1)"}, {"webhook_url": ["Enter a valid URL."]}),
        ({"language": "fr"}, {"language": ['"fr" is not a valid choice.']}),
        ({"extra": ["a"]}, {"extra": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
)
async def test_validation_errors_are_drf_shaped(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    seed: Seed,
    fields: dict[str, Any],
    errors: dict[str, Any],
) -> None:
    body = {key: value for key, value in {**VALID, **fields}.items() if value is not None}
    response = await client.post(URL, json=body, headers=auth)
    assert response.status_code == 400
    assert response.json() == errors
    assert (await seed.snapshot())["transactions"] == []


async def test_usd_amounts_take_two_decimals(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    too_fine = await create(
        client, auth, currency_code="USD", amount="1.234", pg_codes=["sandbox-usd"]
    )
    assert too_fine.json() == {
        "amount": ["Ensure that there are no more than 2 decimal places for USD."]
    }
    ok = await create(client, auth, currency_code="USD", amount="1.23", pg_codes=["sandbox-usd"])
    assert ok.status_code == 201 and ok.json()["amount"] == "1.23"


async def test_order_no_cannot_be_reused(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert (await create(client, auth, order_no="ONCE")).status_code == 201
    again = await create(client, auth, order_no="ONCE")
    assert again.status_code == 400
    assert again.json() == {
        "order_no": ["Payment transaction with this order number already exists."]
    }


async def test_retrieve_with_and_without_slash(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    sid = (await create(client, auth)).json()["session_id"]
    for path in (f"{URL}{sid}", f"{URL}{sid}/"):
        response = await client.get(path, headers=auth)
        assert response.status_code == 200 and response.json()["session_id"] == sid
    missing = await client.get(f"{URL}{'0' * 40}", headers=auth)
    assert missing.status_code == 404 and missing.json() == {"detail": "Not found."}


async def test_patch_and_put(client: httpx.AsyncClient, auth: dict[str, str], seed: Seed) -> None:
    sid = (await create(client, auth)).json()["session_id"]
    patched = await client.patch(
        f"{URL}{sid}", json={"amount": "30.500", "customer_first_name": "Noor"}, headers=auth
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["amount"] == "30.500" and patched.json()["customer_first_name"] == "Noor"
    incomplete = await client.put(f"{URL}{sid}/", json={"amount": "10.000"}, headers=auth)
    assert incomplete.status_code == 400
    assert set(incomplete.json()) == {"type", "currency_code", "pg_codes"}
    put = await client.put(f"{URL}{sid}/", json={**VALID, "amount": "12.000"}, headers=auth)
    assert put.status_code == 200 and put.json()["amount"] == "12.000"
    bad = await client.patch(f"{URL}{sid}", json={"amount": "1.0001"}, headers=auth)
    assert bad.status_code == 400 and "amount" in bad.json()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"amount": ""}, {"amount": ["A valid number is required."]}),
        ({"amount": "  "}, {"amount": ["A valid number is required."]}),
        ({"amount": None}, {"amount": ["This field may not be null."]}),
        ({"currency_code": None}, {"currency_code": ["This field may not be null."]}),
        ({"type": ""}, {"type": ["This field may not be blank."]}),
        ({"pg_codes": []}, {"pg_codes": ["This list may not be empty."]}),
    ],
)
async def test_patch_with_a_blank_or_null_field_is_refused(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    seed: Seed,
    body: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    # Only an absent key keeps the stored value; a blank one answered 200 and changed nothing,
    # so a merchant's bug left the customer paying the old amount without a word.
    sid = (await create(client, auth)).json()["session_id"]
    before = await seed.snapshot()
    response = await client.patch(f"{URL}{sid}", json=body, headers=auth)
    assert (response.status_code, response.json()) == (400, errors)
    form = await client.patch(
        f"{URL}{sid}",
        data={k: "" if v is None else v for k, v in body.items() if v != []},
        headers=auth,
    )
    assert form.status_code == 400 or body.get("pg_codes") == [], form.text
    assert await seed.snapshot() == before


async def test_patch_resending_the_same_currency_needs_no_amount(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # "Send the amount again when the currency changes" was said although it did not change.
    sid = (await create(client, auth)).json()["session_id"]
    for code in ("KWD", "kwd"):
        same = await client.patch(f"{URL}{sid}", json={"currency_code": code}, headers=auth)
        assert same.status_code == 200 and same.json()["currency_code"] == "KWD", same.text
    other = await client.patch(
        f"{URL}{sid}", json={"currency_code": "USD", "pg_codes": ["sandbox-usd"]}, headers=auth
    )
    assert (other.status_code, other.json()) == (
        400,
        {"amount": ["Send the amount again when the currency changes."]},
    )


async def test_paid_session_cannot_be_changed(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed
) -> None:
    parent = await seed.transaction("10.000", gateway_code="sandbox-kwd")
    response = await client.patch(
        f"{URL}{parent.session_id}", json={"amount": "1.000"}, headers=auth
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "A transaction in state paid cannot be changed."}


async def test_permissions(client: httpx.AsyncClient, auth: dict[str, str], seed: Seed) -> None:
    viewer = await seed.user("viewer", permissions=["checkout.view"])
    creator = await seed.user("creator", permissions=["checkout.create"])
    nobody = await seed.user("nobody")
    assert (await client.post(URL, json=VALID, headers=viewer)).status_code == 403
    created = await client.post(URL, json=VALID, headers=creator)
    assert created.status_code == 201
    sid = created.json()["session_id"]
    assert (await client.get(f"{URL}{sid}", headers=viewer)).status_code == 200
    assert (await client.get(f"{URL}{sid}", headers=creator)).status_code == 200  # implied
    assert (await client.get(f"{URL}{sid}", headers=nobody)).status_code == 403
    assert (await client.patch(f"{URL}{sid}", json={}, headers=viewer)).status_code == 403
    assert (await client.get(f"{URL}{sid}")).status_code == 401
