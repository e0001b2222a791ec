"""How long ``payops --help`` (and a few group helps) take, wall time, in a fresh interpreter.

A benchmark, not a test: it prints the median and the best of several runs for each command and
exits 0. The help path loads Typer, rich and ``payops.cli`` only (``tests/test_cli_errors.py``
checks that no web, database or connector module is imported); this shows what that is worth.

    .venv/bin/python benchmarks/cli_help.py            # 7 runs each
    .venv/bin/python benchmarks/cli_help.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("payops")
COMMANDS = (["--help"], ["gateway", "--help"], ["txn", "create", "--help"])


def wall_time(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([str(SCRIPT), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, env={**os.environ, "COLUMNS": "120"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    options = parser.parse_args()
    if not SCRIPT.exists():
        sys.exit(f"no payops script beside {sys.executable}: install the package first")
    wall_time(["--help"])  # warm the file cache and the bytecode
    print(f"{'command':<28} {'median ms':>10} {'best ms':>8}   ({options.runs} runs)")
    for args in COMMANDS:
        times = [wall_time(args) for _ in range(options.runs)]
        print(f"{'payops ' + ' '.join(args):<28} {statistics.median(times) * 1000:>10.0f} "
              f"{min(times) * 1000:>8.0f}")


if __name__ == "__main__":
    main()
