"""Summarise py-spy ``--format raw`` (collapsed stacks) files: where the samples' own time goes,
and inclusive time of PayOps's own functions. Used for docs/performance.md.

    .venv/bin/python benchmarks/profile_summary.py /tmp/profile/*.txt
    .venv/bin/python benchmarks/profile_summary.py --stages 4.3 /tmp/profile/*.txt

``--stages MS`` sorts every sample into a stage of a refund (the first rule whose frame is on the
sample's stack) and prints each stage's share, and that share of MS (the CPU milliseconds per
refund measured beside the profile, e.g. by benchmarks/cpu_per_refund.py).
"""

from __future__ import annotations

import collections
import re
import sys

LINE = re.compile(r"^(.*) (\d+)$")


def main(paths: list[str]) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        with open(path) as handle:
            for raw in handle:
                match = LINE.match(raw.rstrip("\n"))
                if not match:
                    continue
                stack, count = match.group(1), int(match.group(2))
                frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
                total += count
                own[frames[-1]] += count
                for frame in set(frames):
                    inclusive[frame] += count
    if not total:
        print("no samples")
        return
    print(f"{total} samples")
    print("own time (top 15):")
    for frame, count in own.most_common(15):
        print(f"  {count / total:6.1%}  {frame[:140]}")
    print("inclusive time, PayOps code (top 25):")
    ours = [(f, c) for f, c in inclusive.items() if "payops/" in f]
    for frame, count in sorted(ours, key=lambda item: -item[1])[:25]:
        print(f"  {count / total:6.1%}  {frame[:140]}")
    print("inclusive time, selected libraries:")
    for needle in ("argon2", "sqlite3", "aiosqlite", "asyncpg", "json", "selectin", "httptools",
                   "logging/", "jsonable_encoder", "pydantic"):
        count = sum(c for f, c in inclusive.items() if needle in f and "payops/" not in f)
        # frames nest, so this over-counts recursion; read it as an upper bound.
        print(f"  ≤{min(count, total) / total:6.1%}  {needle}")


# (stage, frames that put a sample in it): the first stage with a frame on the stack wins.
STAGES = (
    ("authentication (API-key lookup)", ("Authenticator.authenticate",)),
    ("gateway call (sandbox ledger)", ("Connector.run", "SandboxLedger.", "ask_gateway")),
    ("settlement transaction", ("_call_and_settle",)),
    ("intent transaction", ("_run_external",)),
    ("SQLite statements (aiosqlite's thread)", ("_connection_worker_thread",)),
    ("response: body, JSON, HTTP write", ("Response.__call__", "RequestResponseCycle.send",
                                          "ExactJSONResponse", "send_with_id")),
    ("HTTP parsing, routing, middleware, dependencies", ("serve (payops",)),
)
SPLIT = "SQLAlchemy below a greenlet switch (intent or settlement)"


def stages(paths: list[str], cpu_ms: float) -> None:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        with open(path) as handle:
            for raw in handle:
                match = LINE.match(raw.rstrip("\n"))
                if not match:
                    continue
                stack, count = match.group(1), int(match.group(2))
                total += count
                if stack.rsplit(";", 1)[-1].startswith("Runner.run "):
                    # The event loop's own frame: uvloop's C code (socket reads and writes,
                    # callbacks), and samples taken while the process waited.
                    counts["event loop (uvloop: socket I/O, callbacks; some waiting)"] += count
                    continue
                for stage, frames in STAGES:
                    if any(frame in stack for frame in frames):
                        counts[stage] += count
                        break
                else:
                    counts[SPLIT if "sqlalchemy/" in stack else "other threads (mostly idle pool workers)"] += count
    print(f"{total} samples; stage, share of samples, ≈ ms of the {cpu_ms} ms CPU per refund")
    for stage, count in counts.most_common():
        print(f"  {count / total:6.1%}  {count / total * cpu_ms:5.2f}  {stage}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--stages"]:
        stages(sys.argv[3:], float(sys.argv[2]))
    else:
        main(sys.argv[1:])
