"""The operation endpoints' POSTs are served before Starlette's router (api/operation_fast_route.py):
the same answers as through the router, counted and logged under the same route."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import Query
from fastapi.routing import APIRoute

import payops.operations.endpoints as operation_endpoints
from payops.api.operation_fast_route import OperationFastRoute
from tests.helpers import Seed, asgi_post_scope

METRICS_TOKEN = "metrics-token-fast-route"
MAX_BODY = 2048


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Every refused credential below is sent twice (fast route, router): no throttling between.
    return {"auth_failure_limit": 1000, "max_body_bytes": MAX_BODY, "metrics_token": METRICS_TOKEN}


@pytest.fixture
def through_the_router(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """Switch the fast route off (everything goes on to the router, the way before it) and on."""
    served_directly = OperationFastRoute.__call__

    async def router_only(self: OperationFastRoute, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def switch(router_only_: bool) -> None:
        monkeypatch.setattr(
            OperationFastRoute, "__call__", router_only if router_only_ else served_directly
        )

    return switch


def multipart(fields: dict[str, str], files: dict[str, bytes] | None = None) -> dict[str, Any]:
    boundary = "fastroute-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts += [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\n".encode()
        + content
        + b"\r\n"
        for name, content in (files or {}).items()
    ]
    return {
        "content": b"".join(parts) + f"--{boundary}--\r\n".encode(),
        "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    }


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked): only counting what arrives bounds it."""
    for piece in pieces:
        yield piece


V1 = "/b/pbl/v1/operation/ORD-1"
V2 = "/b/pbl/v2/operation/"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
REFUND = {"operation": "refund", "amount": "1.000"}

# (method, path, credentials, request arguments): a fresh set of arguments on every call, as a
# streamed body can be sent once. None of them changes any state the next one depends on.
CASES: list[tuple[str, str, str, Callable[[], dict[str, Any]]]] = [
    ("POST", V1, "key", lambda: {"json": {"operation": "refund", "amount": "1.000"}}),
    ("POST", V1 + "/", "key", lambda: {"json": {"operation": "refund", "amount": "1.000"}}),
    ("POST", "/b/pbl/v1/operation/NOPE", "key", lambda: {"json": REFUND}),
    ("POST", V1, "key", lambda: {"json": {"operation": "refund", "amount": "-1"}}),
    ("POST", V1, "key", lambda: {"json": {"operation": "refund", "amount": "1e400"}}),
    ("POST", V1, "key", lambda: {"json": {"operation": "fly"}}),
    ("POST", V1, "key", lambda: {"json": {"operation": "refund", "amount": 1.0001}}),
    ("POST", V1, "key", lambda: {"json": {"operation": "", "amount": ""}}),
    ("POST", V1, "key", lambda: {"json": {}}),
    ("POST", V1, "key", lambda: {"json": ["refund"]}),
    ("POST", V1, "key", lambda: {"content": b"", "headers": JSON}),
    ("POST", V1, "key", lambda: {"content": b"   ", "headers": JSON}),
    ("POST", V1, "key", lambda: {"content": b'{"operation": "refund",', "headers": JSON}),
    ("POST", V1, "key", lambda: {"content": b'{"operation": "\\ud800"}', "headers": JSON}),
    ("POST", V1, "key", lambda: {"content": b"operation=refund&amount=1.000", "headers": FORM}),
    ("POST", V1, "key", lambda: {"content": b"operation=&amount=", "headers": FORM}),
    ("POST", V1, "key", lambda: {"content": b"\xff\xfe=1", "headers": FORM}),
    ("POST", V1, "key", lambda: multipart({"operation": "refund", "amount": "1.000"})),
    ("POST", V1, "key", lambda: multipart(REFUND, {"attachment": b"x"})),
    (
        "POST",
        V1,
        "key",
        lambda: {"content": b"--broken", "headers": {"Content-Type": "multipart/form-data"}},
    ),
    (
        "POST",
        V1,
        "key",
        lambda: {"content": b"operation=refund", "headers": {"Content-Type": "text/plain"}},
    ),
    ("POST", V1, "key", lambda: {"content": b"operation=refund"}),
    ("POST", V1, "key", lambda: {"json": {"operation": "refund", "pad": "x" * MAX_BODY}}),
    ("POST", V1, "key", lambda: {"content": chunks(b"{" + b" " * MAX_BODY, b"}"), "headers": JSON}),
    ("POST", V1, "key", lambda: {"content": b"{}", "headers": {**JSON, "Content-Length": "x"}}),
    ("POST", V1, "key", lambda: {"json": REFUND, "headers": {"Tracking-Key": ""}}),
    ("POST", V1, "key", lambda: {"json": REFUND, "headers": {"Tracking-Key": "k" * 300}}),
    ("POST", V1, "key", lambda: {"json": REFUND, "headers": {"Tracking-Key": "a\tb"}}),
    ("POST", "/b/pbl/v1/operation/A%07B", "key", lambda: {"json": REFUND}),
    ("POST", "/b/pbl/v1/operation/%E2%82%AC%20x", "key", lambda: {"json": REFUND}),
    ("POST", "/b/pbl/v1/operation/" + "N" * 129, "key", lambda: {"json": REFUND}),
    ("POST", "/b/pbl/v1/operation/A%2FB", "key", lambda: {"json": REFUND}),
    ("POST", "/b/pbl/v1/operation/A/B", "key", lambda: {"json": REFUND}),
    ("POST", "/b/pbl/v1/operation/", "key", lambda: {"json": REFUND}),
    ("POST", "/b/pbl/v1/operation//", "key", lambda: {"json": REFUND}),
    ("POST", "/b/pbl/v1/operation/ORD-1?x=1", "key", lambda: {"json": REFUND}),
    ("POST", V2, "key", lambda: {"json": {**REFUND, "order_no": "ORD-1"}}),
    ("POST", V2[:-1], "key", lambda: {"json": {**REFUND, "session_id": "S"}}),
    ("POST", V2, "key", lambda: {"json": REFUND}),
    ("POST", V2, "key", lambda: {"json": {**REFUND, "order_no": "ORD-1", "destination": "wallet"}}),
    ("POST", V2, "key", lambda: {"json": {**REFUND, "order_no": "ORD-1", "extra": {"n": 1.10}}}),
    (
        "POST",
        V2,
        "key",
        lambda: {"content": b"operation=refund&order_no=ORD-1&extra=%7B", "headers": FORM},
    ),
    ("POST", V2 + "x", "key", lambda: {"json": REFUND}),
    ("POST", V1, "none", lambda: {"json": REFUND}),
    ("POST", V1, "wrong key", lambda: {"json": REFUND}),
    ("POST", V1, "bad basic", lambda: {"json": REFUND}),
    ("POST", V2, "none", lambda: {"content": b"not json", "headers": JSON}),
    ("POST", V1, "no permission", lambda: {"json": {"operation": "refund", "amount": "1.000"}}),
    ("POST", V2, "no permission", lambda: {"json": {"operation": "void", "order_no": "ORD-1"}}),
    ("POST", V1, "cross-site", lambda: {"json": REFUND}),
    ("GET", V1, "key", dict),
    ("HEAD", V1, "key", dict),
    ("OPTIONS", V2, "key", dict),
    ("PUT", V2[:-1], "key", lambda: {"json": REFUND}),
    ("DELETE", V1 + "/", "key", dict),
]


async def credentials(seed: Seed) -> dict[str, dict[str, str]]:
    return {
        "key": await seed.api_key(),
        "none": {},
        "wrong key": {"Authorization": "Api-Key nope.nope"},
        "bad basic": {"Authorization": "Basic !!!"},
        "no permission": await seed.user("reader", permissions=["view_paymenttransaction"]),
        "cross-site": {
            **(await seed.api_key()),
            "Origin": "https://elsewhere.example",
            "Sec-Fetch-Site": "cross-site",
        },
    }


def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    headers = [
        (k, v) for k, v in response.headers.multi_items() if k not in ("x-request-id", "date")
    ]
    return response.status_code, headers, response.content


async def test_every_answer_is_the_routers(
    client: httpx.AsyncClient, seed: Seed, through_the_router: Callable[[bool], None]
) -> None:
    await seed.transaction("100.000", "KWD", order_no="ORD-1")
    headers_for = await credentials(seed)
    refunded_before = len(await seed.operations("ORD-1"))
    served: dict[bool, list[Any]] = {False: [], True: []}
    for router_only in (False, True):
        through_the_router(router_only)
        for method, path, who, arguments in CASES:
            request = arguments()
            headers = {**headers_for[who], **request.pop("headers", {})}
            response = await client.request(method, path, headers=headers, **request)
            status, headers_, body = answer(response)
            if status == 200 and method == "POST":
                # A refund's answer names its own operation (and so its length): compare the
                # fields it has.
                body = sorted(json.loads(body))
                headers_ = [(k, v) for k, v in headers_ if k != "content-length"]
            served[router_only].append((method, path, who, status, headers_, body))
    for fast, routed in zip(served[False], served[True], strict=True):
        assert fast == routed
    # The refunds went through both ways.
    refunds = sum(1 for answer_ in served[False] if answer_[0] == "POST" and answer_[3] == 200)
    assert refunds >= 6
    assert len(await seed.operations("ORD-1")) - refunded_before == 2 * refunds


async def test_a_fast_routed_refund_is_counted_and_logged_under_its_route(
    client: httpx.AsyncClient, seed: Seed, caplog: pytest.LogCaptureFixture
) -> None:
    await seed.transaction("100.000", "KWD", order_no="ORD-1")
    auth = await seed.api_key()
    with caplog.at_level(logging.INFO, logger="payops.http"):
        refund = await client.post(
            V1, json={"operation": "refund", "amount": "1.000"}, headers=auth
        )
        refused = await client.post(V2[:-1], json=REFUND, headers={})
    assert refund.status_code == 200, refund.text
    assert refused.status_code == 401
    logged = [(r.path, r.status) for r in caplog.records if r.getMessage() == "request"]  # type: ignore[attr-defined]
    assert logged == [("/b/pbl/v1/operation/{order_no}", 200), ("/b/pbl/v2/operation", 401)]

    metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert (
        'payops_http_requests_total{method="POST",route="/b/pbl/v1/operation/{order_no}",'
        'status="200"} 1.0' in metrics.text
    )
    assert (
        'payops_http_requests_total{method="POST",route="/b/pbl/v2/operation",status="401"} 1.0'
        in metrics.text
    )


async def test_an_unexpected_error_is_a_500_with_the_request_id_under_its_route(
    client: httpx.AsyncClient, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed.transaction("100.000", "KWD", order_no="ORD-1")
    auth = await seed.api_key()

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(operation_endpoints, "run_operation", broken)
    response = await client.post(V1, json=REFUND, headers={**auth, "X-Request-Id": "abc123"})
    assert response.status_code == 500
    assert response.json() == {"detail": "A server error occurred."}
    assert response.headers["x-request-id"] == "abc123"
    metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert (
        'payops_http_server_errors_total{route="/b/pbl/v1/operation/{order_no}",status="500"} 1.0'
        in metrics.text
    )


def test_an_operation_route_declaring_what_the_fast_route_does_not_pass_is_refused() -> None:
    async def with_a_query_parameter(
        order_no: str, request: Any, page: int = Query(default=1)
    ) -> None:
        raise AssertionError("never called")

    route = APIRoute("/b/pbl/v1/operation/{order_no}", with_a_query_parameter, methods=["POST"])
    with pytest.raises(TypeError, match="declares parameters"):
        OperationFastRoute(app=None, routes=[route], exception_handlers={})  # type: ignore[arg-type]
    # The real operation routes are accepted as they are.
    OperationFastRoute(app=None, routes=operation_endpoints.router.routes, exception_handlers={})  # type: ignore[arg-type]


async def test_a_client_gone_before_its_body_arrives_is_answered_as_through_the_router(
    app: Any, seed: Seed, through_the_router: Callable[[bool], None]
) -> None:
    auth = await seed.api_key()
    scope = asgi_post_scope(
        V1, {**auth, "Content-Type": "application/json", "Content-Length": "40"}
    )

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def served() -> list[tuple[Any, ...]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(dict(scope), gone, send)
        return [(m["type"], m.get("status"), m.get("body")) for m in sent]

    answers: dict[bool, list[Any]] = {}
    for router_only in (False, True):
        through_the_router(router_only)
        answers[router_only] = await served()
    assert answers[False] == answers[True]
    assert answers[False] == []  # nobody to answer (logged as 499: test_hostile_operations)
