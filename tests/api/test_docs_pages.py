"""/docs and /redoc work offline: every script, style sheet and icon they load is served by
PayOps itself, never by a CDN."""

from __future__ import annotations

import re

import httpx


async def test_docs_and_redoc_load_only_local_assets(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        html = response.text
        assert "cdn." not in html and "googleapis" not in html and "https://" not in html
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)
        assert assets, page
        for asset in assets:
            assert asset.startswith("/docs/assets/"), asset
            loaded = await client.get(asset)
            assert loaded.status_code == 200, asset
            assert len(loaded.content) > 1000, asset
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "PayOps"
