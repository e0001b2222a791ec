"""CPU time the server spends per refund, and where it goes (py-spy), on a shared machine.

Throughput on a machine shared with other work says little; the server's own CPU seconds per
answered refund (from /proc, before and after a wrk load) and the share of profile samples per
function do not depend much on the neighbours. One `payops serve --workers 1` on a scratch
SQLite or PostgreSQL database, a few clients (so the server is rarely idle and rarely queueing),
refunds spread over paid orders.

    .venv/bin/python benchmarks/cpu_per_refund.py --backend sqlite --seconds 20 --profile /tmp/p
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from refunds import (  # noqa: E402
    PAYOPS_DB,
    PG_HOST,
    PG_USER,
    backend_env,
    prepare,
    run,
    server,
    totals_agree,
    wrk,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="loads measured one after another")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record a py-spy profile (raw format) into this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend == "pg":
            run(["dropdb", "-h", PG_HOST, "-U", PG_USER, "--if-exists", "--force", PAYOPS_DB])
            run(["createdb", "-h", PG_HOST, "-U", PG_USER, PAYOPS_DB])
            url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:5432/{PAYOPS_DB}"
        else:
            url = f"sqlite+aiosqlite:///{Path(tmp, 'data', 'payops.sqlite3')}"
        env = backend_env(Path(tmp, "data"), url)
        key, orders = prepare(env, args.orders)
        orders_file = Path(tmp, "orders.txt")
        orders_file.write_text("\n".join(orders) + "\n")
        with server(env, 1, args.profile) as (base, memory):
            wrk("warm-up", base, orders_file, key, args.clients, 3)
            for _ in range(args.rounds):
                load = wrk("measured", base, orders_file, key, args.clients, args.seconds,
                           server_pid=memory.pid)
                print(f"{args.backend}: {load.requests} refunds, {load.rate:.0f}/s, "
                      f"p50 {load.p50_ms:.1f} ms, non-2xx {load.non2xx}, "
                      f"errors {load.client_errors}, server CPU {load.server_cpu_ms:.2f} ms/refund",
                      flush=True)
        ok, refunds = totals_agree(url)
        print(f"{refunds} succeeded refunds; totals agree: {ok}")
        if args.backend == "pg":
            run(["dropdb", "-h", PG_HOST, "-U", PG_USER, "--if-exists", "--force", PAYOPS_DB])


if __name__ == "__main__":
    main()
