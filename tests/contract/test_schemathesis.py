"""Schemathesis against a live server's /openapi.json: no 5xx, and every response matches the
documented status codes and schemas. Bounded example counts keep it inside CI's time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings

from payops.auth.secrets import new_api_key
from payops.config import Settings
from payops.context import AppContext
from payops.db.migrate import upgrade
from payops.db.models import ApiKey
from tests.helpers import Seed
from tests.live import live_server, run_with_context

API_KEY: dict[str, str] = {}
# What the contract promises: never a 5xx, only documented status codes and content types, and
# bodies that match their documented schemas. Business validation (an existing pg_code, the
# currency's decimals) is beyond what a JSON schema can state, so "schema-valid data is accepted"
# is not among the checks.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("schemathesis")
    url = f"sqlite+aiosqlite:///{data / 'payops.sqlite3'}"
    upgrade(url)
    config = Settings(
        data_dir=data,
        database_url=url,
        secret_key=Fernet.generate_key().decode(),
        reconcile_interval_seconds=0,
        expiry_interval_seconds=0,
        webhook_interval_seconds=0,
        inquiry_throttle=False,
        auth_failure_limit=10_000,
    )
    key, prefix, secret_hash = new_api_key()

    async def prepare(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            session.add(ApiKey(prefix=prefix, secret_hash=secret_hash, name="schemathesis"))
        seed = Seed(ctx)
        await seed.transaction("100.000", order_no="ORD-1")
        await seed.transaction("100.000", order_no="AUTH-1", mode="authorize")

    run_with_context(config, prepare)
    API_KEY["Authorization"] = f"Api-Key {key}"
    with live_server(config) as url_base:
        yield url_base


@pytest.fixture(scope="module")
def api_schema(server_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{server_url}/openapi.json")


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_conforms_to_its_schema(api_schema: Any) -> None:
    checked = []
    for operation in operations(api_schema):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers=API_KEY, checks=CHECKS)

        check()
        checked.append(operation.label)
    assert len(checked) >= 20, checked


def test_seeded_server_answers(server_url: str) -> None:
    response = httpx.post(f"{server_url}/b/pbl/v1/inquiry/ORD-1", headers=API_KEY)
    assert response.status_code == 200 and response.json()["state"] == "paid"
