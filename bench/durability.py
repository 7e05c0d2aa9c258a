"""Acknowledged commands under kill -9: a storm of sets against `openbms serve`, killed at random instants.

Each round starts `openbms serve` (the simulated pack, 20 cells, 20x real time) on the same database,
sends sets of the charge limit, conditioning mode and start/stop one at a time (about 25 a second),
kills the server with SIGKILL after a random 0.5-5 s, and reopens the database: an acknowledged set
that is not in the audit, or not what the restarted BMS has in effect, is lost. The round trip of a set
is what the durable acknowledgement costs (one SQLite transaction with `synchronous=FULL`, holding
the audit row and the BMS's state).

Run: `.venv/bin/python bench/durability.py [--rounds 5]` (a minute or two). Prints a markdown table,
the worst round first.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_reliability import LIMIT, MODE, START_STOP, SetStorm, durable_state, start_serve  # noqa: E402


def lost(acknowledged, nv, audit) -> int:
    """Acknowledged sets missing from the audit, plus settings whose last committed value is not in effect."""
    missing = sum(1 for request_id, _, _ in acknowledged if not (request_id in audit and audit[request_id].accepted))
    newest = {}
    for record in audit.values():  # newest first
        if record.accepted and record.path not in newest:
            newest[record.path] = record.applied
    in_effect = {
        LIMIT: round(100 * nv["charge_limit"]),
        MODE: nv["conditioning"],
        START_STOP: "START" if nv["charge_wanted"] else "STOP",
    }
    return missing + sum(1 for path, value in newest.items() if in_effect.get(path) != value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=22)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    db = f"sqlite:///{Path(tempfile.mkdtemp()) / 'openbms.db'}"
    rows = []
    for n in range(1, args.rounds + 1):
        proc, owner, base = start_serve(db)
        storm = SetStorm(base, owner, rng)
        storm.start()
        after_s = rng.uniform(0.5, 5.0)
        time.sleep(after_s)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        storm.join()
        nv, audit = durable_state(db)
        trips = sorted(storm.round_trip_s)
        p99 = trips[min(len(trips) - 1, int(0.99 * len(trips)))] if trips else float("nan")
        rows.append(
            (
                lost(storm.acknowledged, nv, audit),
                n,
                after_s,
                len(storm.acknowledged),
                statistics.median(trips) * 1e3 if trips else float("nan"),
                p99 * 1e3,
            )
        )
        print(f"round {n}: killed after {after_s:.1f} s, {len(storm.acknowledged)} sets acknowledged", file=sys.stderr)
    print("| round | killed after (s) | sets acknowledged | lost | set round trip p50 / p99 (ms) |")
    print("|---:|---:|---:|---:|---:|")
    for lost_n, n, after_s, acked, p50, p99 in sorted(rows, reverse=True):
        print(f"| {n} | {after_s:.1f} | {acked} | {lost_n} | {p50:.1f} / {p99:.1f} |")
    print(f"\nload average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
