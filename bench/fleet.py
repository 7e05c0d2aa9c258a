"""Fleet analytics at scale: throughput on 1 and 2 Dask workers, memory per worker, detection against the truth.

Simulates a fleet (`openbms simulate-fleet`, 16 A123 cells in series, 1 s samples while driving
and 10 s otherwise), then analyses it with a LocalCluster of 1 and of 2 worker processes (one
thread each). Workers are warmed up first (cell model loaded, numba kernels loaded from their
cache) so the timing is of the analysis. Cell-steps: one cell's voltage through the monitor's
estimators and checks for one sample. Memory: the peak RSS of each worker process. Detection:
a vehicle counts as found when the analysis names the labelled cell (shorts) or flags the
labelled sensor's cell (sensor faults); capacity error is the mean cell's estimate at the end
against the simulated mean cell's capacity at the vehicle's ambient temperature.

Run: `.venv/bin/python bench/fleet.py --vehicles 30 --days 7` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from openbms.cli import main as openbms
from openbms.fleet.analyze import analyze_fleet
from openbms.fleet.cluster import dask_client
from openbms.fleet.dataset import LABELS


def warm_up() -> None:
    """Load what every task needs once, outside the timing."""
    from openbms.cell import load_cell
    from openbms.safety.monitor import PackMonitor

    cell = load_cell("a123_lfp")
    PackMonitor(cell, 4, 1).update(np.arange(3.0), np.zeros(3), np.full((3, 4), 3.3), np.full((3, 1), 25.0))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def analyse(root: Path, workers: int):
    with dask_client(workers=workers) as client:
        client.run(warm_up)
        analysis = analyze_fleet(root, client)
        memory = client.run(peak_rss_mb)
    return analysis, max(memory.values())


def detection(vehicles, labels: dict) -> dict:
    rows = {r["Vehicle"]: r for r in vehicles.to_dict("records")}
    truth = {v["vehicle"]: v for v in labels["vehicles"]}
    shorted = {k for k, v in truth.items() if v["short"]}
    flagged = {k for k, r in rows.items() if r["Short Cell"] is not None and not np.isnan(r["Short Cell"])}
    hit = {k for k in flagged & shorted if int(rows[k]["Short Cell"]) == truth[k]["short"]["cell"]}
    faulty = {k for k, v in truth.items() if v["sensor_fault"]}
    sensor_flagged = {k for k, r in rows.items() if r["Sensor Fault Cells"]}
    sensor_hit = {
        k
        for k in sensor_flagged & faulty
        if str(truth[k]["sensor_fault"]["cell"]) in rows[k]["Sensor Fault Cells"].split(",")
    }
    cap_err = np.array([abs(rows[k]["Capacity / Ah"] / truth[k]["true_capacity_ah"] - 1) for k in rows])
    res_err = np.array([abs(rows[k]["SOH Resistance / 1"] / truth[k]["resistance_scale"] - 1) for k in rows])
    ohm_ratio = [
        rows[k]["Short Resistance / ohm"] / truth[k]["short"]["resistance_ohm"]
        for k in hit
        if rows[k]["Short Resistance / ohm"] is not None and not np.isnan(rows[k]["Short Resistance / ohm"])
    ]
    missed = sorted(shorted - hit)
    return {
        "shorts": len(shorted),
        "short_recall": len(hit) / max(len(shorted), 1),
        "short_precision": len(hit) / max(len(flagged), 1),
        "false_shorts": sorted(flagged - hit),
        "missed_shorts": [(k, truth[k]["short"]["resistance_ohm"], truth[k]["short"]["onset_s"]) for k in missed],
        "faults": len(faulty),
        "fault_recall": len(sensor_hit) / max(len(faulty), 1),
        "fault_precision": len(sensor_hit) / max(len(sensor_flagged), 1),
        "capacity_err_median": float(np.median(cap_err)),
        "capacity_err_p95": float(np.percentile(cap_err, 95)),
        "capacity_within_2pct": float(np.mean(cap_err <= 0.02)),
        "resistance_err_median": float(np.median(res_err)),
        "short_ohm_ratio_median": float(np.median(ohm_ratio)) if ohm_ratio else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=30)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--short-fraction", type=float, default=0.3)
    parser.add_argument("--fault-fraction", type=float, default=0.1)
    parser.add_argument("--dir", help="dataset directory (default: a temporary one); reused if it has labels")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="worker counts to time, comma-separated (default %(default)s; the last one's results are scored)",
    )
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="fleet-bench-"))
    started = time.perf_counter()
    if not (root / LABELS).is_file():
        code = openbms(
            [
                "simulate-fleet",
                "--vehicles",
                str(args.vehicles),
                "--days",
                str(args.days),
                "--workers",
                "2",
                "--short-fraction",
                str(args.short_fraction),
                "--fault-fraction",
                str(args.fault_fraction),
                "-o",
                str(root),
            ]
        )
        if code:
            return code
    simulate_s = time.perf_counter() - started
    counts = [int(n) for n in args.workers.split(",")]
    runs = {n: analyse(root, n) for n in counts}
    last = counts[-1]
    labels = json.loads((root / LABELS).read_text())
    found = detection(runs[last][0].vehicles, labels)
    meta = runs[last][0].meta
    rate = {n: a.meta["cell_steps_per_s"] for n, (a, _) in runs.items()}
    per_vehicle_day = meta["cell_steps"] / (meta["vehicles"] * args.days)
    print(
        f"## Fleet analytics: {meta['vehicles']} vehicles x {args.days} days ({meta['samples']:,} samples, "
        f"{meta['cell_steps']:,} cell-steps); simulated in {simulate_s:.0f} s on 2 workers\n"
    )
    print("| workers | wall / s | cell-steps / s | scaling efficiency | peak RSS per worker / MB |")
    print("|---:|---:|---:|---:|---:|")
    for n, (a, memory) in runs.items():
        scaling = f"{rate[n] / (n * rate[1]):.0%}" if 1 in rate else "–"
        print(f"| {n} | {a.meta['wall_s']:.1f} | {rate[n]:,.0f} | {scaling} | {memory:.0f} |")
    if meta["vehicles"] * args.days < 7000:
        print(
            f"\n1 000 vehicles x 7 days at the {last}-worker rate (extrapolated, not run): "
            f"{1000 * 7 * per_vehicle_day / rate[last] / 60:.0f} min\n"
        )
    print(f"| detection ({last}-worker run) | value | bar |")
    print("|---|---:|---:|")
    print(f"| internal shorts: recall ({found['shorts']} shorted) | {found['short_recall']:.0%} | ≥ 90 % |")
    print(f"| internal shorts: precision | {found['short_precision']:.0%} | ≥ 90 % |")
    print(f"| short resistance: estimate / truth, median of hits | {found['short_ohm_ratio_median']:.2f} | |")
    print(f"| sensor faults: recall ({found['faults']} faulty) | {found['fault_recall']:.0%} | |")
    print(f"| sensor faults: precision | {found['fault_precision']:.0%} | |")
    print(
        f"| capacity error: median / 95th percentile | {found['capacity_err_median']:.1%} / "
        f"{found['capacity_err_p95']:.1%} | ≤ 2 % |"
    )
    print(f"| capacity within 2 % | {found['capacity_within_2pct']:.0%} of vehicles | |")
    print(f"| resistance SoH error, median | {found['resistance_err_median']:.1%} | |")
    print(
        f"\nfalse shorts: {found['false_shorts']}; missed shorts (vehicle, ohm, onset s): "
        f"{[(k, round(r), round(t)) for k, r, t in found['missed_shorts']]}\ndataset: {root}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
