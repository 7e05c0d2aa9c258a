"""The fleet report: one self-contained HTML page (plots embedded as PNG) and the results as Parquet and JSON."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..io.columns import TIME  # noqa: E402
from .analyze import FleetAnalysis  # noqa: E402

TABLE_COLUMNS = [
    "Rank",
    "Vehicle",
    "Service Reason",
    "Capacity / Ah",
    "Capacity Bound / Ah",
    "SOH Capacity / 1",
    "SOH Capacity Trend / 1 per day",
    "SOH Resistance / 1",
    "Cell SOC Spread / 1",
    "Short Cell",
    "Short Resistance / ohm",
    "Sensor Fault Cells",
]
EVENT_COLUMNS = ["Vehicle", "Day", "time_s", "kind", "severity", "explanation"]
# A 3-sigma bound past this share of the capacity says the record has too few rests to tell it, not a number.
UNSETTLED_BOUND = 0.5
STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 8px}img{max-width:100%;height:auto}"
    ".table{overflow-x:auto}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
    "padding:2px 6px}"
)


def write_report(out_dir, analysis: FleetAnalysis, drill_down: int = 8, table_rows: int = 100) -> list[Path]:
    """report.html, vehicles/days/hourly/events.parquet and results.json in out_dir; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    events = analysis.events if len(analysis.events) else pd.DataFrame(columns=EVENT_COLUMNS)
    paths = []
    for name, frame in (
        ("vehicles", analysis.vehicles),
        ("days", analysis.days),
        ("hourly", analysis.hourly),
        ("events", events),
    ):
        paths.append(out / f"{name}.parquet")
        frame.to_parquet(paths[-1], index=False)
    results = {"meta": analysis.meta, "ranking": json.loads(analysis.vehicles.to_json(orient="records"))}
    paths.append(out / "results.json")
    paths[-1].write_text(json.dumps(results, indent=1))
    paths.append(out / "report.html")
    paths[-1].write_text(_html(analysis, drill_down, table_rows))
    return paths


def _html(a: FleetAnalysis, drill_down: int, table_rows: int) -> str:
    v = a.vehicles
    m = a.meta
    found = (v["Short Cell"].notna().sum(), (v["Sensor Fault Cells"] != "").sum())
    parts = [
        f"<h1>Fleet health: {m['vehicles']} vehicles</h1>",
        f"<p>{html.escape(m['dataset'])}: cell {html.escape(m['cell'])}, {m['samples']:,} samples, "
        f"{m['cell_steps']:,} cell-steps in {m['wall_s']:.0f} s on {m['workers']} worker(s). "
        f"Suspected internal shorts: {found[0]}; faulty cell-voltage sensors: {found[1]}.</p>",
        "<h2>State of health</h2>",
        _img(_soh_figure(v)),
        f"<h2>Who needs service first</h2><p>The first {min(table_rows, len(v))} of {len(v)} vehicles "
        "(all in vehicles.parquet and results.json). Capacity: the median of the cells', each from the cell "
        "model replayed over the vehicle's whole record (Capacity Method), with a 3 sigma bound.</p>",
        f"<div class='table'>{_table(v.head(table_rows))}</div>",
        f"<h2>Drill-down: the first {min(drill_down, len(v))} vehicles</h2>",
    ]
    for row in v.head(drill_down).to_dict("records"):
        vehicle = row["Vehicle"]
        parts += [
            f"<h3>{html.escape(vehicle)}: {html.escape(row['Service Reason'])}</h3>",
            _img(_vehicle_figure(row, a.hourly[a.hourly["Vehicle"] == vehicle], a.days[a.days["Vehicle"] == vehicle])),
        ]
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, "
        f"initial-scale=1'><title>openbms fleet report</title><style>{STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>"
    )


def _table(v: pd.DataFrame) -> str:
    """The ranking as people read it: cell numbers as integers, an unsettled bound said in words, blanks for none."""
    shown = v[TABLE_COLUMNS].astype(object)
    shown["Short Cell"] = [f"{int(c)}" if pd.notna(c) else "" for c in v["Short Cell"]]
    unsettled = ~(v["Capacity Bound / Ah"] <= UNSETTLED_BOUND * v["Capacity / Ah"])
    shown["Capacity Bound / Ah"] = [
        f"not settled ({b / c:.0%})" if u else b
        for b, c, u in zip(v["Capacity Bound / Ah"], v["Capacity / Ah"], unsettled)
    ]
    shown = shown.where(shown.notna(), "")  # None and NaN alike: nothing found, not the word None
    return shown.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="")


def _soh_figure(v: pd.DataFrame):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), layout="constrained")
    axes[0].hist(100 * v["SOH Capacity / 1"], bins=30, color="tab:blue")
    axes[0].set(xlabel="capacity, % of new", ylabel="vehicles")
    axes[1].hist(100 * v["SOH Resistance / 1"], bins=30, color="tab:red")
    axes[1].set(xlabel="resistance, % of new", ylabel="vehicles")
    for ax in axes:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # vehicles are counted whole
    return fig


def _vehicle_figure(vehicle: dict, hourly: pd.DataFrame, days: pd.DataFrame):
    cells = hourly.filter(regex=r"^Cell SOC \d+ / 1$")
    hours = hourly[TIME] / 86400.0
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), layout="constrained")
    axes[0].fill_between(hours, 100 * cells.min(axis=1), 100 * cells.max(axis=1), alpha=0.3, label="cells")
    axes[0].plot(hours, 100 * hourly["SOC / 1"], label="pack")
    axes[0].set(xlabel="day", ylabel="SoC / %", title="SoC (hour means)")
    axes[0].legend(fontsize=8)
    axes[1].errorbar(
        range(1, len(days) + 1), days["Capacity / Ah"], yerr=days["Capacity Bound / Ah"], fmt="o-", capsize=3
    )
    axes[1].axhline(vehicle["Capacity / Ah"], color="k", lw=1, label="the record replayed")
    axes[1].legend(fontsize=8)
    axes[1].set(xlabel="day", ylabel="Ah", title="capacity: the car's filter each day (3 sigma)")
    divergence = 100 * cells.sub(cells.mean(axis=1), axis=0)
    for n, column in enumerate(divergence.columns):
        axes[2].plot(hours, divergence[column], lw=1.8 if n == divergence.iloc[-1].abs().argmax() else 0.7)
    axes[2].set(xlabel="day", ylabel="SoC − mean / %", title="cell divergence")
    fig.suptitle(vehicle["Vehicle"])
    return fig


def _img(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")  # no axis label cut off
    plt.close(fig)
    return f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
