"""Stateful property test: random sequences of capture, refund, void, inquiry and reconciliation on
one paid or authorized transaction, driven through the real HTTP app (decisions §3–§6, §8).

Each Hypothesis example builds a fresh database (SQLite: a copy of a migrated template;
PostgreSQL: the per-worker test database, truncated), a fresh sandbox ledger and a fresh app, run on
an event loop owned by the state machine. Every rule checks its HTTP answer against a small model
of the rules (the amounts allowed given the stored totals and reservations, and the sandbox's
trigger amounts); the invariants are read back from PayOps's database and the sandbox gateway's own
ledger after every step.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from payops.api.app import create_app
from payops.context import AppContext
from payops.db.migrate import upgrade
from payops.db.models import Base, Operation, PaymentTransaction
from payops.money import format_minor
from payops.operations.reconciler import reconcile_once
from payops.transactions import repository
from tests.conftest import make_settings
from tests.e2e import post_op
from tests.helpers import Seed

pytestmark = pytest.mark.timeout(300)

CURRENCY = "KWD"
ORDER_NO = "ORD-S"
NOT_ALLOWED = "Operation is not allowed"
SANDBOX_DECLINE = "Declined by the sandbox issuer"
TRACKING_IN_PROGRESS = {
    "detail": "An operation with this Tracking-Key is in progress",
    "operation": "operation_tracking",
    "result": "failed",
}
TRACKING_MISMATCH = {
    "detail": "This Tracking-Key was used for a different request",
    "operation": "operation_tracking",
    "result": "failed",
}
OPEN = ("processing", "queued", "needs_review")
UNSETTLED = ("processing", "needs_review")
TRIGGERS = (991, 992, 993, 994, 995)
QUEUE_SECONDS = 0.1

# Examples per backend: SQLite gets the full budget, PostgreSQL (slower per request) fewer.
EXAMPLES = {"sqlite": 25, "postgresql": 12}
STEPS = 20


def kwd(minor: int) -> str:
    return format_minor(minor, CURRENCY)


def fingerprint(operation: str, amount: int | None) -> str:
    """What a Tracking-Key is bound to (decisions §13); void ignores the amount."""
    return f"{operation}:{'absent' if amount is None or operation == 'void' else kwd(amount)}"


# Amounts in minor units: plain ones, and ones ending in a sandbox trigger (…991 … …995).
plain_minor = st.integers(min_value=1, max_value=2000)
trigger_minor = st.builds(lambda k, t: k * 1000 + t, st.integers(0, 2), st.sampled_from(TRIGGERS))
# omitted ("all that remains") and trigger amounts now and then, plain ones mostly
amounts = st.one_of(plain_minor, plain_minor, trigger_minor, st.none())
tracking_keys = st.one_of(st.none(), st.none(), st.sampled_from(["TK-A", "TK-B"]))


@dataclass
class Books:
    parent: PaymentTransaction
    operations: list[Operation]
    ledger: dict[str, dict[str, Any]]

    def live(self, operation: str) -> list[Operation]:
        return [o for o in self.operations if o.operation == operation and o.state in OPEN]

    def succeeded(self, operation: str) -> int:
        return sum(
            o.amount for o in self.operations if o.operation == operation and o.state == "succeeded"
        )

    def reserved(self, operation: str) -> int:
        return sum(o.amount for o in self.live(operation))

    def by_reference(self, reference: str) -> Operation:
        found = [o for o in self.operations if o.reference_number == reference]
        assert len(found) == 1, (reference, found)
        return found[0]

    def by_key(self, key: str) -> Operation | None:
        found = [
            o
            for o in self.operations
            if o.tracking_key == key and o.state not in ("failed", "rejected")
        ]
        assert len(found) <= 1, found
        return found[0] if found else None

    # The rules of decisions §3–§4, restated as the test's model.
    def capturable(self) -> int:
        p = self.parent
        if p.state != "authorized" or p.voided or self.live("void"):
            return 0
        return max(p.amount + p.fee - p.captured - self.reserved("capture"), 0)

    def refund_base(self) -> int:
        p = self.parent
        return p.amount if p.operation_mode == "purchase" else min(p.captured, p.amount)

    def refundable(self) -> int:
        p = self.parent
        if p.state == "authorized" and p.voided:
            return 0
        return max(self.refund_base() - p.refunded - self.reserved("refund"), 0)

    def allowed(self, operation: str) -> bool:
        p = self.parent
        if operation == "capture":
            return p.state == "authorized" and not p.voided and not self.live("void")
        if operation == "refund":
            return p.state == "paid" or (
                p.state == "authorized" and p.captured > 0 and not p.voided
            )
        return (
            p.state == "authorized"
            and p.captured == 0
            and not self.live("capture")
            and p.voided == 0
            and not self.live("void")
            and p.refunded == 0
            and not self.live("refund")
        )


def ledger_rows(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM operations").fetchall()
    finally:
        conn.close()
    result = {row["reference"]: dict(row) for row in rows}
    assert len(result) == len(rows)
    return result


async def truncate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


class OperationsMachine(RuleBasedStateMachine):
    """Configured by ``machine_for``: ``backend``, ``workdir`` and ``database`` (a template file for
    SQLite, the URL of the migrated test database for PostgreSQL)."""

    backend: str = "sqlite"
    workdir: Path
    database: str

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(dir=self.workdir))
        self.server: asyncio.Task[None] | None = None
        self.client: httpx.AsyncClient | None = None
        self.mode = ""
        self.current: Books | None = None
        try:
            self._start()
        except BaseException:
            self.teardown()  # Hypothesis only tears down machines that were built
            raise

    def _start(self) -> None:
        if self.backend == "sqlite":
            path = self.dir / "payops.sqlite3"
            shutil.copyfile(self.database, path)
            url = f"sqlite+aiosqlite:///{path}"
        else:
            url = self.database
            self.run(truncate(url))
        # The suite's test settings: background loops off (the machine reconciles explicitly),
        # reconcile_after_seconds=0, a private data dir and so a fresh sandbox ledger.
        self.settings = make_settings(self.dir, url, sandbox_queue_seconds=QUEUE_SECONDS)
        assert self.settings.reconcile_after_seconds == 0
        self.app = create_app(self.settings)
        # The app's lifespan runs in one long-lived task on the machine's loop, which every
        # ``run`` call lets progress; teardown tells it to stop.
        self.started, self.stop = asyncio.Event(), asyncio.Event()
        self.server = self.loop.create_task(self._serve())
        self.run(self._until_started())
        self.ctx: AppContext = self.app.state.ctx
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=("127.0.0.1", 40000)),
            base_url="http://testserver",
        )
        self.seed = Seed(self.ctx)
        self.auth = self.run(self.seed.api_key())

    async def _serve(self) -> None:
        async with LifespanManager(self.app):
            self.started.set()
            await self.stop.wait()

    async def _until_started(self) -> None:
        assert self.server is not None
        started = asyncio.ensure_future(self.started.wait())
        await asyncio.wait([started, self.server], return_when=asyncio.FIRST_COMPLETED)
        if self.server.done():
            started.cancel()
            self.server.result()  # raises what stopped the app's startup

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        try:
            if self.client is not None:
                self.run(self.client.aclose())
            if self.server is not None:
                self.stop.set()
                self.run(self.server)
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- reading the books ------------------------------------------------------------------------

    async def _books(self) -> Books:
        async with self.ctx.db.read() as session:
            parent = await repository.find_parent(session, order_no=ORDER_NO)
            assert parent is not None
            operations = await repository.operations(session, parent.id)
        return Books(parent, operations, ledger_rows(self.settings.effective_sandbox_ledger))

    def refresh(self) -> Books:
        """Read the books; every step ends with this, and the invariants check what it read."""
        self.current = self.run(self._books())
        return self.current

    # -- the transaction ------------------------------------------------------------------------

    @initialize(
        mode=st.sampled_from(["purchase", "authorize"]),
        amount=st.sampled_from(["5.000", "10.000", "20.000"]),
        # a fee chosen so that a void (amount + fee) sometimes hits a sandbox trigger
        fee=st.sampled_from([None, "0.500", "0.991", "0.993", "0.994"]),
    )
    def transaction(self, mode: str, amount: str, fee: str | None) -> None:
        parent = self.run(
            self.seed.transaction(amount, CURRENCY, order_no=ORDER_NO, mode=mode, fee=fee)
        )
        assert parent.state == ("paid" if mode == "purchase" else "authorized")
        self.mode = mode
        self.refresh()

    # -- requests -------------------------------------------------------------------------------

    async def _post(self, operation: str, amount: int | None, key: str | None) -> httpx.Response:
        sent = None if amount is None else kwd(amount)
        return await post_op(
            self.client, self.auth, operation, sent, order_no=ORDER_NO, tracking_key=key
        )

    def check_answer(
        self, response: httpx.Response, operation: str, after: Books, *, reconciling: bool = False
    ) -> None:
        """What holds for any answer, whatever else ran at the same time."""
        status = response.status_code
        body = response.json()
        event(f"{operation}: HTTP {status} {body.get('detail', '')[:30] if status == 400 else ''}")
        assert status in (200, 400, 409, 504), (status, body)
        if status == 504:
            assert body["result"] == "pending" and body["operation"] == operation, body
            op = after.by_reference(body["reference_number"])
            # unconfirmed stays processing, unless a reconciler running alongside settled it since
            assert op.state == "processing" or reconciling, op.state
        elif status == 200:
            op = after.by_reference(body["reference_number"])
            # (a Tracking-Key replay answers with the earlier operation, whatever was asked now)
            assert op.operation == body["operation"], (op.operation, body)
            assert op.state in ("succeeded", "queued"), op.state
            assert body["amount"] == kwd(op.amount)
        elif status == 409:
            assert body in (TRACKING_IN_PROGRESS, TRACKING_MISMATCH), body
        else:
            assert body["result"] == "failed" and body["operation"] == operation, body

    def operate(self, operation: str, amount: int | None, key: str | None) -> None:
        """One request, checked against the model computed from the books before it."""
        before = self.current
        assert before is not None
        response = self.run(self._post(operation, amount, key))
        after = self.refresh()
        self.check_answer(response, operation, after)
        body = response.json()
        new_ops = [o for o in after.operations if o.id not in {b.id for b in before.operations}]

        prior = before.by_key(key) if key else None
        if prior is not None:  # decisions §6, §13: replay, mismatch or "in progress", never a
            assert new_ops == []  # second operation
            assert after.ledger.keys() == before.ledger.keys()
            if prior.request_fingerprint != fingerprint(operation, amount):
                assert (response.status_code, body) == (409, TRACKING_MISMATCH), body
            elif prior.state in UNSETTLED:
                assert response.status_code == 409, (response.status_code, body)
            else:
                assert response.status_code == 200, (response.status_code, body)
                assert body["reference_number"] == prior.reference_number
            return

        if not before.allowed(operation):
            assert (response.status_code, body) == (
                400,
                {"detail": NOT_ALLOWED, "operation": operation, "result": "failed"},
            ), body
            assert new_ops == []
            return
        if operation == "void":
            expected = before.parent.amount + before.parent.fee
        else:
            limit = before.capturable() if operation == "capture" else before.refundable()
            expected = limit if amount is None else amount
            if expected <= 0 or expected > limit:
                kind = "capturable" if operation == "capture" else "refundable"
                assert (response.status_code, body) == (
                    400,
                    {
                        "detail": f"Amount exceeds the {kind} amount ({kwd(limit)} {CURRENCY})",
                        "operation": operation,
                        "result": "failed",
                    },
                ), body
                assert new_ops == []
                return

        assert len(new_ops) == 1, new_ops
        (op,) = new_ops
        assert (op.operation, op.amount, op.tracking_key) == (operation, expected, key)
        code = expected % 1000
        if code == 991:
            assert response.status_code == 400, body
            assert body["detail"] == SANDBOX_DECLINE, body
            assert op.state == "failed"
        elif code in (993, 994, 995):
            assert response.status_code == 504, body
            assert body["reference_number"] == op.reference_number
            assert op.state == "processing"
        else:
            assert response.status_code == 200, body
            assert body["reference_number"] == op.reference_number
            queued = operation == "refund" and code == 992
            assert op.state == ("queued" if queued else "succeeded")

    @rule(amount=amounts, key=tracking_keys)
    def refund(self, amount: int | None, key: str | None) -> None:
        self.operate("refund", amount, key)

    @rule(amount=plain_minor)
    def partial_refund(self, amount: int) -> None:  # (weights the draw towards refunds)
        self.operate("refund", amount, None)

    @rule(amount=amounts, key=tracking_keys)
    def capture(self, amount: int | None, key: str | None) -> None:
        self.operate("capture", amount, key)

    @precondition(lambda self: self.mode == "authorize")
    @rule(amount=plain_minor)
    def partial_capture(self, amount: int) -> None:
        self.operate("capture", amount, None)

    @rule(key=tracking_keys)
    def void(self, key: str | None) -> None:
        self.operate("void", None, key)

    @rule(
        requests=st.lists(
            st.tuples(st.sampled_from(["capture", "capture", "refund", "refund", "void"]), amounts),
            min_size=2,
            max_size=4,
        ),
        reconciling=st.booleans(),
    )
    def burst(self, requests: list[tuple[str, int | None]], reconciling: bool) -> None:
        """Several operations at once, sometimes with a reconciliation pass running alongside:
        no model of who wins, only the invariants."""

        async def fire() -> list[httpx.Response]:
            calls = [self._post(operation, amount, None) for operation, amount in requests]
            if reconciling:
                calls.append(reconcile_once(self.ctx))
            return list(await asyncio.gather(*calls))[: len(requests)]

        responses = self.run(fire())
        after = self.refresh()
        for (operation, _), response in zip(requests, responses, strict=True):
            assert response.status_code != 409, response.text  # no Tracking-Key in a burst
            self.check_answer(response, operation, after, reconciling=reconciling)

    @rule()
    def inquiry(self) -> None:
        before = self.current
        assert before is not None
        response = self.run(
            self.client.post(f"/b/pbl/v1/inquiry/{ORDER_NO}", json={}, headers=self.auth)
        )
        # paid / authorized: answered from storage, nothing changes
        assert response.status_code == 200, response.text
        after = self.refresh()
        assert [(o.id, o.state) for o in after.operations] == [
            (o.id, o.state) for o in before.operations
        ]

    @rule(wait=st.booleans())
    def reconcile(self, wait: bool) -> None:
        if wait:  # let queued refunds become final at the sandbox
            self.run(asyncio.sleep(QUEUE_SECONDS))
        self.run(reconcile_once(self.ctx))
        after = self.refresh()
        # The sandbox always knows what it did, so nothing stays processing after a pass.
        assert [o.reference_number for o in after.operations if o.state in UNSETTLED] == []
        if wait:
            assert [o.reference_number for o in after.operations if o.state == "queued"] == []

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        b = self.current
        if b is None:
            return
        p = b.parent
        # totals on the parent are exactly the sums of the succeeded operations
        assert (p.captured, p.refunded, p.voided) == (
            b.succeeded("capture"),
            b.succeeded("refund"),
            b.succeeded("void"),
        )
        # never more captured (done or in flight) than authorized
        assert p.captured + b.reserved("capture") <= p.amount + p.fee
        # never more refunded (done, queued or in flight) than refundable
        assert p.refunded + b.reserved("refund") <= b.refund_base()
        # a void and a capture never both succeed, nor are both alive
        void_alive = p.voided > 0 or bool(b.live("void"))
        capture_alive = p.captured > 0 or bool(b.live("capture"))
        assert not (void_alive and capture_alive)
        # the gateway's books agree with PayOps's
        ours = {o.reference_number: o for o in b.operations}
        assert set(b.ledger) <= set(ours), "the gateway performed an operation PayOps never sent"
        for reference, op in ours.items():
            row = b.ledger.get(reference)
            if op.state in ("succeeded", "queued"):
                assert row is not None, f"{op.operation} {reference} ({op.state}) not at gateway"
                assert (row["operation"], row["amount"]) == (op.operation, op.amount)
            elif op.state in ("failed", "rejected"):
                assert row is None, f"{op.operation} {reference} failed, yet the gateway did it"


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stateful-template") / "payops.sqlite3"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def machine_database(
    backend: str, request: pytest.FixtureRequest, migrated_sqlite: Path
) -> Iterator[str]:
    if backend == "sqlite":
        yield str(migrated_sqlite)
    else:
        yield request.getfixturevalue("postgres_url")


def test_operations_state_machine(backend: str, machine_database: str, tmp_path: Path) -> None:
    machine = type(
        f"OperationsMachine_{backend}",
        (OperationsMachine,),
        {
            "backend": backend,
            "workdir": tmp_path,
            "database": machine_database,
        },
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES[backend],
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            # Each example costs about a second, so a failure is reported as found, unshrunk: the
            # twenty steps are printed, and shrinking would take minutes.
            phases=(Phase.explicit, Phase.reuse, Phase.generate),
            suppress_health_check=list(HealthCheck),
        ),
    )
