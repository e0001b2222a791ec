"""The SQL one refund costs, counted with SQLAlchemy's ``before_cursor_execute`` event and, for
the statements the operation path runs on the driver's own connection (db/direct.py), with
``direct.STATEMENT_LISTENERS``, so the path cannot silently grow statements again (issue 11).

The ceilings are what the lean path needs (5 on PostgreSQL, 9 on SQLite). The path before
issue 11 took 21 and 24 (relationship loads of the gateway configuration, a settings lookup per
use, a separate reservations query, re-reading the operation before locking it); the ORM path
after its first round took 10 and 13. A change that needs more must say why here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event

from payops.context import AppContext
from payops.db import direct
from tests.e2e import post_op
from tests.helpers import Seed

# Statements of one partial refund through the API, caches warm, gateway answering success:
# authentication (the API key); intent: lock the parent reading the cache versions, the attempt
# with the reservations (SQLite: in the same statement, as its write transaction holds the
# database's lock from BEGIN; PostgreSQL: after the lock, in a statement of its own), insert the
# operation (with its audit entry, one statement on PostgreSQL); settlement: on PostgreSQL one
# statement in autocommit that locks the parent, checks that the operation is untouched and the
# cache versions current, and writes the operation, the parent's total, the audit entry and the
# outbox events; on SQLite the same checks in the operation's UPDATE, then update the parent and
# insert the audit entry. SQLite adds the BEGINs of its two write transactions (the API-key
# lookup runs without one); PostgreSQL's BEGIN and every COMMIT do not pass through a cursor:
# its round trips are 7 (before issue 11: 36).
CEILING = {"postgresql": 5, "sqlite": 9}


@contextmanager
def counting(ctx: AppContext) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split())[:160])

    def count_direct(statement: str) -> None:
        count(None, None, statement)

    engines = [ctx.db.write_engine.sync_engine]
    if ctx.db.is_sqlite:  # PostgreSQL's read engine is the write engine's pool, autocommit
        engines.append(ctx.db.read_engine.sync_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    # The operation path's statements run on the driver's own connection (db/direct.py).
    direct.STATEMENT_LISTENERS.append(count_direct)
    try:
        yield seen
    finally:
        direct.STATEMENT_LISTENERS.remove(count_direct)
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


async def test_one_refund_stays_within_its_statements(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext, backend: str
) -> None:
    auth = await seed.api_key()
    await seed.transaction("100.000", "KWD", order_no="ORD-S")
    # The first refund fills the caches: configuration, settings.
    first = await post_op(client, auth, "refund", "1.000", order_no="ORD-S")
    assert first.status_code == 200, first.text

    with counting(ctx) as statements:
        second = await post_op(client, auth, "refund", "1.000", order_no="ORD-S")

    assert second.status_code == 200, second.text
    assert second.json()["txn"]["state"] == "refunded"
    assert (await seed.find("ORD-S")).refunded == 2000  # both refunds, in minor units
    listing = "\n".join(statements)
    assert len(statements) <= CEILING[backend], f"{len(statements)} statements:\n{listing}"
    # No relationship loading on the path: the configuration comes from the process's cache.
    assert not any(
        "FROM gateway_configs" in s and "WHERE gateway_configs.id IN" in s for s in statements
    ), listing


async def test_a_changed_merchant_setting_is_used_at_once(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext
) -> None:
    """The settings cache is checked against the version read with the parent: a key rotated
    by another process (here: straight through the database) signs the very next refund."""
    from payops.webhooks import outbox
    from payops.webhooks.signing import sign

    auth = await seed.api_key()
    await seed.transaction("100.000", "KWD", order_no="ORD-K")
    async with ctx.db.write() as session:
        await outbox.set_merchant_setting(session, outbox.HMAC_KEY_SETTING, "first-key")
    assert (await post_op(client, auth, "refund", "1.000", order_no="ORD-K")).status_code == 200
    async with ctx.db.write() as session:
        await outbox.set_merchant_setting(session, outbox.HMAC_KEY_SETTING, "second-key")

    body = (await post_op(client, auth, "refund", "1.000", order_no="ORD-K")).json()
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    assert body["signature"] == sign(unsigned, "second-key")


async def test_a_changed_gateway_configuration_is_used_at_once(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext
) -> None:
    """The cached configuration (and its connector) is rebuilt when the row's version moves:
    refunds disabled on the MID by another process refuse the very next refund."""
    from sqlalchemy import select

    from payops.db.models import GatewayConfig

    auth = await seed.api_key()
    await seed.transaction("100.000", "KWD", order_no="ORD-G")
    assert (await post_op(client, auth, "refund", "1.000", order_no="ORD-G")).status_code == 200
    async with ctx.db.write() as session:
        config = await session.scalar(select(GatewayConfig))
        config.enabled_operations = [op for op in config.enabled_operations if op != "refund"]

    response = await post_op(client, auth, "refund", "1.000", order_no="ORD-G")
    assert response.status_code == 400, response.text
    parent = await seed.find("ORD-G")
    assert parent is not None and parent.refunded == 1000
