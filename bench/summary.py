"""Print the figures of one bench/run_all as a table (from .data/bench/results.jsonl)."""

from __future__ import annotations

import json
import sys

from bench.common import fmt


def main(path: str) -> None:
    with open(path) as lines:
        rows = [json.loads(line) for line in lines]
    print("\n=== Summary (median of runs; ratio = figure / baseline of the same run) ===")
    print(f"{'benchmark':<10} {'figure':<72} {'value':>10} {'baseline':>10} {'ratio':>8}  goal")
    for r in rows:
        met = {True: "MET", False: "NOT MET", None: ""}[r["met"]]
        goal = f"{r['goal']} {met}" if r["goal"] else ""
        print(
            f"{r['bench']:<10} {r['name'][:72]:<72} {fmt(r['value']):>10} "
            f"{fmt(r['baseline']):>10} {r['ratio']:>7.3f}x  {goal}"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".data/bench/results.jsonl")
