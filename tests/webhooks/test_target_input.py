"""Webhook and disclosure URLs on internal addresses are refused when they arrive (a 400 field
error), not only when delivery later tries them; PAYOPS_WEBHOOK_ALLOW_PRIVATE lifts the rule."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import Seed

CHECKOUT = "/b/checkout/v1/pymt-txn/"
VALID = {
    "type": "e_commerce",
    "amount": "25.000",
    "currency_code": "KWD",
    "pg_codes": ["sandbox-purchase-kwd"],
}
REFUSED = [
    "Enter a URL whose host is a public address; loopback, private, link-local and "
    "metadata addresses are not allowed."
]
INTERNAL = [
    "http://127.0.0.1:9/hook",
    "http://localhost:9/hook",
    "http://10.0.0.8/hook",
    "http://192.168.1.20/hook",
    "http://172.16.0.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]:9/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://0.0.0.0/hook",
    "https://100.64.0.1/hook",
    "http://[fd00:ec2::254]/latest",
]
PUBLIC = "https://93.184.215.14/hook"  # a literal public address: no DNS needed


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"webhook_allow_private": False}


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    await seed.gateway("sandbox-purchase-kwd", "purchase", "KWD")
    return await seed.api_key()


@pytest.mark.parametrize("target", INTERNAL)
async def test_checkout_create_refuses_an_internal_webhook_url(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], target: str
) -> None:
    response = await client.post(CHECKOUT, json={**VALID, "webhook_url": target}, headers=auth)
    assert response.status_code == 400, response.text
    assert response.json() == {"webhook_url": REFUSED}
    assert (await seed.snapshot())["transactions"] == []


async def test_checkout_patch_and_put_refuse_an_internal_webhook_url(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    created = await client.post(CHECKOUT, json={**VALID, "webhook_url": PUBLIC}, headers=auth)
    assert created.status_code == 201, created.text
    path = f"{CHECKOUT}{created.json()['session_id']}"
    before = await seed.snapshot()
    patched = await client.patch(path, json={"webhook_url": "http://localhost/hook"}, headers=auth)
    assert patched.status_code == 400 and patched.json() == {"webhook_url": REFUSED}
    put = await client.put(path, json={**VALID, "webhook_url": "http://10.1.2.3/h"}, headers=auth)
    assert put.status_code == 400 and put.json() == {"webhook_url": REFUSED}
    assert await seed.snapshot() == before
    fine = await client.patch(path, json={"webhook_url": "https://93.184.215.15/h"}, headers=auth)
    assert fine.status_code == 200 and fine.json()["webhook_url"] == "https://93.184.215.15/h"


@pytest.mark.parametrize("field", ["webhook_url", "disclosure_url"])
async def test_v2_inquiry_refuses_an_internal_target(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], field: str
) -> None:
    await seed.transaction("10.000")
    before = await seed.snapshot()
    response = await client.post(
        "/b/pbl/v2/inquiry/",
        headers=auth,
        json={"order_no": "ORD-1", "notify_webhook_url": True, field: "http://169.254.169.254/x"},
    )
    assert response.status_code == 400, response.text
    assert response.json() == {field: REFUSED}
    assert await seed.snapshot() == before


async def test_v1_inquiry_refuses_an_internal_disclosure_url(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("10.000")
    before = await seed.snapshot()
    response = await client.post(
        "/b/pbl/v1/inquiry/ORD-1",
        headers=auth,
        json={"disclose_to_merchant": True, "disclosure_url": "http://[::1]:8000/x"},
    )
    assert response.status_code == 400, response.text
    assert response.json() == {"disclosure_url": REFUSED}
    assert await seed.snapshot() == before
    allowed = await client.post(
        "/b/pbl/v1/inquiry/ORD-1",
        headers=auth,
        json={"disclose_to_merchant": True, "disclosure_url": PUBLIC},
    )
    assert allowed.status_code == 200, allowed.text
    assert [e.target_url for e in await seed.outbox()][-1] == PUBLIC


async def test_an_unresolvable_name_is_accepted_at_input(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # DNS may be down or the record not yet published: delivery checks and retries later.
    response = await client.post(
        CHECKOUT, json={**VALID, "webhook_url": "https://hooks.payops-test.invalid/x"}, headers=auth
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": True}])
async def test_allow_private_accepts_internal_targets(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        CHECKOUT, json={**VALID, "webhook_url": "http://127.0.0.1:9/hook"}, headers=auth
    )
    assert response.status_code == 201, response.text


def test_cli_operations_url_refuses_an_internal_target(tmp_path: Any, database_url: str) -> None:
    from cryptography.fernet import Fernet

    from tests.test_cli import Cli

    cli = Cli(tmp_path / "data", database_url, Fernet.generate_key().decode())
    cli.ok("db", "upgrade")
    cli.fails("webhook", "operations-url", "http://169.254.169.254/latest", match="link-local")
    cli.env["PAYOPS_WEBHOOK_ALLOW_PRIVATE"] = "true"
    cli.ok("webhook", "operations-url", "http://127.0.0.1:9/hook")


WITH_CREDENTIALS = ["Enter a URL without a user name or password."]


@pytest.mark.parametrize(
    "settings_overrides", [{"webhook_allow_private": False}, {"webhook_allow_private": True}]
)
async def test_a_target_with_credentials_is_refused_at_input(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    # Delivery refuses a URL carrying user:password for good; accepted here, the events were
    # dropped silently at their first send (a literal private address slipped through this way).
    for target in (
        "https://user:pw@10.0.0.1/hook",
        "https://user@93.184.215.14/hook",
        "https://:secret@93.184.215.14/hook",
    ):
        response = await client.post(CHECKOUT, json={**VALID, "webhook_url": target}, headers=auth)
        assert (response.status_code, response.json()) == (400, {"webhook_url": WITH_CREDENTIALS})
    assert (await seed.snapshot())["transactions"] == []
    await seed.transaction("10.000")
    before = await seed.snapshot()
    response = await client.post(
        "/b/pbl/v2/inquiry/",
        headers=auth,
        json={
            "order_no": "ORD-1",
            "disclose_to_merchant": True,
            "disclosure_url": "https://u:p@93.184.215.14/x",
        },
    )
    assert (response.status_code, response.json()) == (400, {"disclosure_url": WITH_CREDENTIALS})
    assert await seed.snapshot() == before
