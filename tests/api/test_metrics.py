"""/metrics shows business volumes: only with PAYOPS_METRICS_TOKEN as a Bearer token, and not at
all while no token is configured."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import Seed

TOKEN = "metrics-token-5f2a9c"


async def test_metrics_are_not_served_without_a_configured_token(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.api_key()
    await client.post("/b/pbl/v1/inquiry/ORD-X", headers=auth)  # some traffic to count
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        response = await client.get("/metrics", headers=headers)
        assert response.status_code == 404
        assert "payops_http_requests_total" not in response.text


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": TOKEN}])
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer wrong-token",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
    ],
)
async def test_metrics_refuse_a_missing_or_wrong_token(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "payops_http" not in response.text


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": TOKEN}])
async def test_metrics_with_the_token(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "payops_http_requests_total" in response.text
