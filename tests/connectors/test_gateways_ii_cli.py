"""`payops gateway add knet|payu_india|qpay` and `payops txn import` with their references, then a
refund through the API against the fake gateway."""

from __future__ import annotations

import json

from tests.connectors.knet import fake_server as knet_fake
from tests.connectors.knet.fake_server import TRANPORTAL_ID, TRANPORTAL_PASSWORD, FakeKnet
from tests.test_cli import Cli, cli, row_for  # noqa: F401 - the CLI fixture, reused

fake_knet = knet_fake.fake_knet


def test_add_needs_the_credentials_and_stores_them_encrypted(cli: Cli) -> None:  # noqa: F811
    cli.fails(
        "gateway",
        "add",
        "knet",
        "--code",
        "k",
        "--currency",
        "KWD",
        match="knet needs credentials: tranportal_id, tranportal_password",
    )
    cli.fails(
        "gateway",
        "add",
        "payu_india",
        "--code",
        "p",
        "--currency",
        "INR",
        "--credentials",
        '{"merchant_key": "K"}',
        match="payu_india needs credentials: salt",
    )
    cli.fails(
        "gateway",
        "add",
        "qpay",
        "--code",
        "q",
        "--currency",
        "QAR",
        match="qpay needs credentials: merchant_id, bank_id, secret_key",
    )
    cli.fails(
        "gateway",
        "add",
        "knet",
        "--code",
        "k",
        "--currency",
        "KWD",
        "--credentials",
        json.dumps({"tranportal_id": "1", "tranportal_password": "2"}),
        "--operation",
        "capture",
        match="cannot perform: capture",
    )

    added = cli.ok(
        "gateway",
        "add",
        "knet",
        "--code",
        "knet-kwd",
        "--currency",
        "KWD",
        "--credentials",
        json.dumps({"tranportal_id": TRANPORTAL_ID, "tranportal_password": TRANPORTAL_PASSWORD}),
    )
    cli.ok(
        "gateway",
        "add",
        "payu_india",
        "--code",
        "payu-p",
        "--currency",
        "INR",
        "--credentials",
        json.dumps({"merchant_key": "gtKFFx", "salt": "pepper-salt"}),
    )
    cli.ok(
        "gateway",
        "add",
        "payu_india",
        "--code",
        "payu-a",
        "--currency",
        "INR",
        "--mode",
        "authorize",
        "--credentials",
        json.dumps({"merchant_key": "gtKFFx", "salt": "pepper-salt"}),
    )
    cli.ok(
        "gateway",
        "add",
        "qpay",
        "--code",
        "qpay-qar",
        "--currency",
        "QAR",
        "--credentials",
        json.dumps({"merchant_id": "m", "bank_id": "QIB", "secret_key": "qpay-secret-xyz"}),
        "--option",
        "partial_refunds=true",
    )
    assert TRANPORTAL_PASSWORD not in added.output
    listed = cli.ok("gateway", "list").stdout
    assert row_for(listed, "knet-kwd")[1:6] == ["knet", "purchase", "KWD", "KWD", "inquiry, refund"]
    assert row_for(listed, "payu-p")[5] == "inquiry, refund"
    assert row_for(listed, "payu-a")[5] == "capture, inquiry, refund, void"
    assert row_for(listed, "qpay-qar")[5] == "inquiry, refund"
    stored = repr(cli.sql("SELECT * FROM gateway_configs"))
    for secret in (TRANPORTAL_PASSWORD, "pepper-salt", "qpay-secret-xyz"):
        assert secret not in stored and secret not in listed


def test_import_then_refund_at_knet(cli: Cli, fake_knet: FakeKnet) -> None:  # noqa: F811
    payment_id = fake_knet.add_payment("TRK77", "30.000")
    cli.ok(
        "gateway",
        "add",
        "knet",
        "--code",
        "knet-kwd",
        "--currency",
        "KWD",
        "--credentials",
        json.dumps({"tranportal_id": TRANPORTAL_ID, "tranportal_password": TRANPORTAL_PASSWORD}),
        "--option",
        f"base_url={fake_knet.url}",
    )
    cli.ok(
        "txn",
        "import",
        "--pg-code",
        "knet-kwd",
        "--amount",
        "30.000",
        "--currency",
        "KWD",
        "--order-no",
        "K-1",
        "--ref",
        "track_id=TRK77",
        "--ref",
        f"payment_id={payment_id}",
    )
    key = cli.ok("apikey", "create", "ops").stdout.strip().split()[-1]
    response = cli.post(
        "/b/pbl/v1/operation/K-1",
        {"Authorization": f"Api-Key {key}"},
        {"operation": "refund", "amount": "30.000"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["txn"]["state"] == "refunded"
    assert fake_knet.sent_fields()["transid"] == "TRK77"
    assert [str(a) for a in fake_knet.payments["TRK77"].refunds] == ["30.000"]
