"""Summarise py-spy ``--format raw`` (collapsed stacks) files: where the samples' own time goes,
and inclusive time of PayOps's own functions. Used for docs/performance.md.

    .venv/bin/python benchmarks/profile_summary.py /tmp/profile/*.txt
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


if __name__ == "__main__":
    main(sys.argv[1:])
