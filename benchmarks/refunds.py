"""Every refund target of issue 11 in one bounded run (about 3-4 minutes), printed as one table.

Side by side on this machine, in this order:

1. PostgreSQL's own simple-update rate: ``pgbench -N`` (scale 10) with 16 and with 64 clients, in
   a database of its own. Half its best TPS is the refund ceiling (a refund is two short write
   transactions: intent and settle); its mean latency at 16 clients bounds the p99 target.
2. ``payops serve --workers N`` on a fresh PostgreSQL database with partial refunds spread over
   paid orders (64 clients, then 16 clients), one order hammered by 64 clients (the hot row), and
   1,000 refunds sent at once against a sandbox gateway that takes 200 ms (each must be answered).
3. The same server on embedded SQLite with 16 clients.

The load generator is ``wrk`` with ``benchmarks/refunds.lua`` (C, so it does not measure a Python
client's own CPU); the 1,000-at-once wave uses a small Python client. After each backend the totals are checked: every parent's ``refunded`` equals
the sum of its succeeded refunds. A benchmark, not a test: it prints ratios against targets and
exits 0 even when a target is missed.

    .venv/bin/python benchmarks/refunds.py                      # everything, default settings
    .venv/bin/python benchmarks/refunds.py --duration 8 --only pg64 --profile /tmp/pg64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
LUA = HERE / "refunds.lua"
PG_HOST = os.environ.get("PAYOPS_BENCH_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("PAYOPS_BENCH_PG_USER", "postgres")
PGBENCH_DB = "payops_bench_pgbench"
PAYOPS_DB = "payops_bench_payops"
# Each order is paid 1,000,000.000 KWD, so 0.010 refunds never run out during a run.
ORDER_AMOUNT = "1000000.000"
REFUND_MINOR = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(args: list[str], env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, env=env, check=True, text=True, capture_output=True).stdout


# -- pgbench -------------------------------------------------------------------------------------

@dataclass
class PgbenchResult:
    clients: int
    tps: float
    latency_ms: float


def pgbench(clients: int, seconds: int) -> PgbenchResult:
    out = run(["pgbench", "-h", PG_HOST, "-U", PG_USER, "-N", "-c", str(clients), "-j", "2",
               "-T", str(seconds), PGBENCH_DB])
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    return PgbenchResult(clients, tps, latency)


def pgbench_init() -> None:
    run(["dropdb", "-h", PG_HOST, "-U", PG_USER, "--if-exists", PGBENCH_DB])
    run(["createdb", "-h", PG_HOST, "-U", PG_USER, PGBENCH_DB])
    run(["pgbench", "-h", PG_HOST, "-U", PG_USER, "-i", "-s", "10", "-q", PGBENCH_DB])


# -- PayOps server -------------------------------------------------------------------------------

@dataclass
class Load:
    name: str
    clients: int
    seconds: float
    requests: int = 0
    rate: float = 0.0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    non2xx: int = 0
    client_errors: int = 0
    server_cpu_ms: float = 0.0  # server CPU time (every process) per answered request


@dataclass
class Memory:
    label: str
    peaks_mib: list[float] = field(default_factory=list)
    pid: int = 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far."""
    total = 0.0
    for each in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def wrk(name: str, url: str, orders_file: Path, key: str, clients: int, seconds: float,
        timeout: float = 10.0, server_pid: int = 0) -> Load:
    env = {**os.environ, "PAYOPS_BENCH_ORDERS": str(orders_file), "PAYOPS_BENCH_KEY": key}
    threads = 2 if clients >= 2 else 1
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    out = run(["wrk", f"-t{threads}", f"-c{clients}", f"-d{max(1, round(seconds))}s",
               f"--timeout={int(timeout)}s", "-s", str(LUA), url], env=env)
    cpu_used = cpu_seconds(server_pid) - cpu_before if server_pid else 0.0
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    data = json.loads(line[len("WRKJSON "):])
    seconds_taken = data["duration_us"] / 1e6
    client_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    return Load(
        name=name, clients=clients, seconds=seconds_taken, requests=data["requests"],
        rate=data["requests"] / seconds_taken, mean_ms=data["mean_us"] / 1000,
        p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000, max_ms=data["max_us"] / 1000,
        non2xx=data["status"], client_errors=client_errors,
        server_cpu_ms=cpu_used * 1000 / max(1, data["requests"]),
    )


def wave(name: str, url: str, orders: list[str], key: str, count: int,
         server_pid: int = 0) -> Load:
    """``count`` refunds sent at once, each waited for (up to 120 s): do they all get answered?
    A Python client here, as wrk keeps every connection busy for a duration instead of sending
    one wave; its CPU (about a millisecond a request) is small beside the server's."""

    async def fire() -> list[tuple[int, float]]:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=120, limits=limits,
                                     headers={"Authorization": f"Api-Key {key}"}) as client:
            async def one(index: int) -> tuple[int, float]:
                started = time.perf_counter()
                try:
                    response = await client.post(
                        f"{url}/b/pbl/v1/operation/{orders[index % len(orders)]}",
                        json={"operation": "refund", "amount": "0.010"})
                    return response.status_code, time.perf_counter() - started
                except httpx.HTTPError:
                    return 0, time.perf_counter() - started
            return await asyncio.gather(*(one(i) for i in range(count)))

    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    started = time.perf_counter()
    results = asyncio.run(fire())
    elapsed = time.perf_counter() - started
    cpu_used = cpu_seconds(server_pid) - cpu_before if server_pid else 0.0
    latencies = sorted(seconds * 1000 for _, seconds in results)
    answered = [code for code, _ in results if code]
    return Load(
        name=name, clients=count, seconds=elapsed, requests=len(answered),
        rate=len(answered) / elapsed, mean_ms=sum(latencies) / len(latencies),
        p50_ms=latencies[len(latencies) // 2], p99_ms=latencies[int(len(latencies) * 0.99) - 1],
        max_ms=latencies[-1], non2xx=sum(1 for code in answered if not 200 <= code < 300),
        client_errors=len(results) - len(answered),
        server_cpu_ms=cpu_used * 1000 / max(1, len(answered)),
    )


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found.append(int(child))
                found.extend(_children(int(child)))
    except OSError:
        pass
    return found


def _rss_peak_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@contextmanager
def server(env: dict[str, str], workers: int, profile: Path | None = None) -> Iterator[tuple[str, Memory]]:
    port = free_port()
    # The server logs every request (INFO): into a file, as an unread pipe would fill and stall it.
    log_path = Path(env["PAYOPS_DATA_DIR"]) / f"serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("w")
    proc = subprocess.Popen(
        [str(BIN / "payops"), "serve", "--port", str(port),
         *(["--workers", str(workers)] if workers else [])],
        env=env, stdout=log_file, stderr=log_file, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    memory = Memory(f"{workers} worker(s)", pid=proc.pid)
    spies: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"payops serve exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("payops serve did not become ready")
            time.sleep(0.2)
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            for pid in [proc.pid, *_children(proc.pid)]:
                spies.append(subprocess.Popen(
                    ["py-spy" if shutil.which("py-spy") else str(BIN / "py-spy"), "record",
                     "--pid", str(pid), "--format", "raw", "--rate", "200", "--nonblocking",
                     "--output", str(profile / f"{pid}.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield url, memory
    finally:
        memory.peaks_mib = [_rss_peak_mib(pid) for pid in [proc.pid, *_children(proc.pid)]]
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=30)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()


# -- seeding and checking ------------------------------------------------------------------------

def prepare(env: dict[str, str], orders: int) -> tuple[str, list[str]]:
    """Migrate, create an API key and sandbox gateways (``payops demo``), and pay ``orders``
    orders at the sandbox; returns the key and the order numbers."""
    run([str(BIN / "payops"), "demo"], env)
    key = Path(env["PAYOPS_DATA_DIR"], "demo.env").read_text().split("PAYOPS_DEMO_API_KEY=")[1].split()[0]
    script = f"""
import asyncio, sys
from payops.config import Settings
from payops.context import AppContext
from payops.gateways import repository as gateways
from payops.money import parse_amount
from payops.transactions.service import new_parent, pay_with_sandbox

async def main():
    ctx = AppContext.build(Settings())
    try:
        async with ctx.db.read() as session:
            gateway = await gateways.get_by_code(session, "sandbox-kwd")
        for index in range({orders}):
            order_no = f"BENCH-{{index:05d}}"
            async with ctx.db.write() as session:
                parent = new_parent(amount=parse_amount("{ORDER_AMOUNT}", "KWD"),
                                    currency_code="KWD", pg_codes=["sandbox-kwd"], order_no=order_no)
                session.add(parent)
                await session.flush()
                parent_id = parent.id
            await pay_with_sandbox(ctx.db, ctx.settings, parent_id, gateway, "4111111111111111")
            print(order_no)
    finally:
        await ctx.aclose()

asyncio.run(main())
"""
    out = run([sys.executable, "-c", script], env)
    return key, [line for line in out.split() if line.startswith("BENCH-")]


async def _totals_agree(url: str) -> tuple[bool, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            mismatched = await conn.scalar(text(
                "SELECT count(*) FROM payment_transactions p WHERE p.refunded <> COALESCE(("
                "SELECT SUM(o.amount) FROM operations o WHERE o.transaction_id = p.id "
                "AND o.operation = 'refund' AND o.state = 'succeeded'), 0)"))
            refunds = await conn.scalar(text(
                "SELECT count(*) FROM operations WHERE operation = 'refund' AND state = 'succeeded'"))
        return mismatched == 0, int(refunds or 0)
    finally:
        await engine.dispose()


def totals_agree(database_url: str) -> tuple[bool, int]:
    return asyncio.run(_totals_agree(database_url))


def backend_env(data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PAYOPS_DATA_DIR": str(data_dir),
        "PAYOPS_DATABASE_URL": database_url,
        **extra,
    }


# -- the run -------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds per load")
    parser.add_argument("--orders", type=int, default=120, help="paid orders refunds spread over")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="payops serve workers on PostgreSQL (0: omit the option)")
    parser.add_argument("--sqlite-workers", type=int, default=1,
                        help="payops serve workers on SQLite (one writer at a time: 1)")
    parser.add_argument("--only", default="", help="comma list: pgbench,pg64,pg16,hot,inflight,sqlite16")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record a py-spy profile of every server process into this folder")
    args = parser.parse_args()
    chosen = set(filter(None, args.only.split(","))) or {
        "pgbench", "pg64", "pg16", "hot", "inflight", "sqlite16"}
    started = time.monotonic()
    for tool in ("wrk", "pgbench", "createdb"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing (apt-get install -y wrk postgresql-client)")

    bench: dict[int, PgbenchResult] = {}
    loads: dict[str, Load] = {}
    memories: list[tuple[str, Memory]] = []
    checks: list[tuple[str, bool, int]] = []

    if "pgbench" in chosen:
        pgbench_init()
        for clients in (16, 64):
            bench[clients] = pgbench(clients, 10)

    pg_admin = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:5432/postgres"
    with tempfile.TemporaryDirectory() as tmp:
        orders_file = Path(tmp, "orders.txt")
        hot_file = Path(tmp, "hot.txt")
        if chosen & {"pg64", "pg16", "hot", "inflight"}:
            run(["dropdb", "-h", PG_HOST, "-U", PG_USER, "--if-exists", "--force", PAYOPS_DB])
            run(["createdb", "-h", PG_HOST, "-U", PG_USER, PAYOPS_DB])
            pg_url = pg_admin.rsplit("/", 1)[0] + f"/{PAYOPS_DB}"
            env = backend_env(Path(tmp, "pg"), pg_url)
            key, orders = prepare(env, args.orders)
            orders_file.write_text("\n".join(orders) + "\n")
            hot_file.write_text(orders[0] + "\n")
            with server(env, args.workers, args.profile) as (url, memory):
                # A short warm-up: connections, caches, the sandbox ledger.
                wrk("warm-up", url, orders_file, key, 16, 2)
                if "pg64" in chosen:
                    loads["pg64"] = wrk("PostgreSQL, 64 clients, spread", url, orders_file, key,
                                        64, args.duration, server_pid=memory.pid)
                if "pg16" in chosen:
                    loads["pg16"] = wrk("PostgreSQL, 16 clients, spread", url, orders_file, key,
                                        16, args.duration, server_pid=memory.pid)
                if "hot" in chosen:
                    loads["hot"] = wrk("PostgreSQL, 64 clients, one order", url, hot_file, key,
                                       64, max(5, args.duration * 2 / 3), server_pid=memory.pid)
            memories.append(("PostgreSQL", memory))
            if "inflight" in chosen:
                slow = {**env, "PAYOPS_SANDBOX_LATENCY_MS": "200"}
                with server(slow, args.workers) as (url, memory):
                    wrk("warm-up", url, orders_file, key, 16, 1)
                    loads["inflight"] = wave("PostgreSQL, 1,000 at once, gateway 200 ms", url,
                                             orders, key, 1000, server_pid=memory.pid)
                memories.append(("PostgreSQL, 200 ms gateway", memory))
            checks.append(("PostgreSQL", *totals_agree(pg_url)))
            run(["dropdb", "-h", PG_HOST, "-U", PG_USER, "--if-exists", "--force", PAYOPS_DB])
        if "sqlite16" in chosen:
            data = Path(tmp, "sqlite")
            sqlite_url = f"sqlite+aiosqlite:///{data / 'payops.sqlite3'}"
            env = backend_env(data, sqlite_url)
            key, orders = prepare(env, args.orders)
            orders_file.write_text("\n".join(orders) + "\n")
            with server(env, args.sqlite_workers,
                        args.profile / "sqlite" if args.profile else None) as (url, memory):
                wrk("warm-up", url, orders_file, key, 16, 2)
                loads["sqlite16"] = wrk("SQLite, 16 clients, spread", url, orders_file, key, 16,
                                        args.duration, server_pid=memory.pid)
            memories.append(("SQLite", memory))
            checks.append(("SQLite", *totals_agree(sqlite_url)))
    if "pgbench" in chosen:
        run(["dropdb", "-h", PG_HOST, "-U", PG_USER, "--if-exists", PGBENCH_DB])

    report(bench, loads, memories, checks, args.workers, args.sqlite_workers,
           time.monotonic() - started)


def report(bench: dict[int, PgbenchResult], loads: dict[str, Load],
           memories: list[tuple[str, Memory]], checks: list[tuple[str, bool, int]],
           workers: int, sqlite_workers: int, elapsed: float) -> None:
    ceiling = max((b.tps for b in bench.values()), default=0.0) / 2
    pg_latency = bench[16].latency_ms if 16 in bench else 0.0
    print()
    print(f"machine: {os.cpu_count()} cores, {platform_line()}; payops serve --workers {workers} "
          f"(PostgreSQL), {sqlite_workers} (SQLite); "
          f"load average at the end {Path('/proc/loadavg').read_text().split()[0]} "
          f"(other work on the machine shares its CPU)")
    for clients, result in sorted(bench.items()):
        print(f"pgbench -N scale 10, {clients} clients: {result.tps:,.0f} TPS, "
              f"mean latency {result.latency_ms:.2f} ms")
    if ceiling:
        print(f"refund ceiling (best pgbench TPS / 2): {ceiling:,.0f} refunds/s")
    print()
    header = (f"{'load':<44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
              f"{'errors':>7} {'CPU ms/req':>10}  target → measured")
    print(header)
    print("-" * len(header))

    def row(key: str, target: str) -> None:
        load = loads.get(key)
        if load is None:
            return
        print(f"{load.name:<44} {load.rate:>8,.0f} {load.p50_ms:>8.1f} {load.p99_ms:>8.1f} "
              f"{load.non2xx:>8} {load.client_errors:>7} {load.server_cpu_ms:>10.1f}  {target}")

    def verdict(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    if "pg64" in loads and ceiling:
        ratio = loads["pg64"].rate / ceiling
        row("pg64", f"≥ 50 % of ceiling → {ratio:.0%} {verdict(ratio >= 0.5)}")
    else:
        row("pg64", "")
    if "pg16" in loads and pg_latency:
        ratio = loads["pg16"].p99_ms / pg_latency
        row("pg16", f"p99 ≤ 15 × pgbench mean ({15 * pg_latency:.0f} ms) → {ratio:.1f}× "
                    f"{verdict(ratio <= 15)}")
    else:
        row("pg16", "")
    if "sqlite16" in loads and ceiling:
        ratio = loads["sqlite16"].rate / ceiling
        row("sqlite16", f"≥ 20 % of ceiling → {ratio:.0%} {verdict(ratio >= 0.2)}")
    else:
        row("sqlite16", "")
    if "inflight" in loads:
        load = loads["inflight"]
        row("inflight", f"all 200, none 503/timed out → "
                        f"{verdict(load.non2xx == 0 and load.client_errors == 0)}")
    if "hot" in loads:
        load = loads["hot"]
        row("hot", f"no errors → {verdict(load.non2xx == 0 and load.client_errors == 0)}")
    clean = all(load.non2xx == 0 and load.client_errors == 0 for load in loads.values())
    print(f"zero non-2xx and zero client errors in every load: {verdict(clean)}")
    for label, ok, refunds in checks:
        print(f"{label}: {refunds:,} succeeded refunds; every parent's refunded total equals its "
              f"refunds: {'yes' if ok else 'NO'}")
    for label, memory in memories:
        peaks = ", ".join(f"{peak:.0f}" for peak in memory.peaks_mib)
        print(f"server peak RSS per process ({label}; supervisor first), MiB: {peaks}")
    print(f"run took {elapsed:.0f} s")


def platform_line() -> str:
    try:
        model = next(line.split(":", 1)[1].strip()
                     for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{model}, Python {sys.version.split()[0]}"


if __name__ == "__main__":
    main()
