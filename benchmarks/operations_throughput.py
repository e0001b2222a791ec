"""Throughput and latency of partial refunds against a live local PayOps.

Starts `payops serve` on embedded SQLite (or PAYOPS_DATABASE_URL) in a temporary folder, creates a
paid transaction, fires N refunds with C concurrent clients over loopback, and prints requests per
second, latency percentiles and the server's peak memory. A benchmark, not a test: it asserts only
that the money adds up.

    .venv/bin/python benchmarks/operations_throughput.py --requests 400 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from payops.money import format_minor

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def payops(env: dict[str, str], *args: str) -> str:
    return subprocess.run([str(BIN / "payops"), *args], env=env, check=True, text=True,
                          capture_output=True).stdout.strip()


async def fire(url: str, key: str, total: int, concurrency: int) -> list[tuple[int, float]]:
    results: list[tuple[int, float]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Api-Key {key}"}) as client:
        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(url, json={"operation": "refund", "amount": "0.010"})
                results.append((response.status_code, time.perf_counter() - started))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "PAYOPS_DATA_DIR": data, "PAYOPS_RECONCILE_INTERVAL_SECONDS": "0",
               "PAYOPS_WEBHOOK_INTERVAL_SECONDS": "0", "PAYOPS_EXPIRY_INTERVAL_SECONDS": "0"}
        payops(env, "demo")
        key = Path(data, "demo.env").read_text().split("PAYOPS_DEMO_API_KEY=")[1].split()[0]
        order = payops(env, "txn", "create", "--amount", "1000000.000", "--currency", "KWD",
                       "--pg-code", "sandbox-kwd", "--print", "order_no")
        port = free_port()
        server = subprocess.Popen([str(BIN / "payops"), "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            started = time.perf_counter()
            results = asyncio.run(fire(f"http://127.0.0.1:{port}/b/pbl/v1/operation/{order}",
                                       key, args.requests, args.concurrency))
            elapsed = time.perf_counter() - started
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
        latencies = sorted(latency for _, latency in results)
        statuses = {code: sum(1 for c, _ in results if c == code) for code, _ in results}
        cut = statistics.quantiles(latencies, n=100)
        print(f"requests            {len(results)} with {args.concurrency} concurrent clients")
        print(f"statuses            {statuses}")
        print(f"throughput          {len(results) / elapsed:.1f} refunds/s")
        print(f"latency p50/p95/p99 {cut[49] * 1000:.1f} / {cut[94] * 1000:.1f} / "
              f"{cut[98] * 1000:.1f} ms")
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"server peak RSS     {children:.0f} MiB")
        shown = payops(env, "txn", "show", order)
        refunded = format_minor(statuses.get(200, 0) * 10, "KWD")
        assert f"refunded   │ {refunded}" in shown, "refunded total does not add up"


if __name__ == "__main__":
    main()
