"""Plot of an estimate over time: SoC with its bound, capacity with its bound, power limits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .api import Estimate  # noqa: E402


def plot_estimate(est: Estimate, path: str | Path, title: str, cell: int = 0, true_soc=None) -> Path:
    """One panel each for SoC (and the truth, when known), capacity and power limits, as available."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = est.frame(cell)
    hours = (df["Test Time / s"] - df["Test Time / s"].iloc[0]) / 3600.0
    has_capacity, has_limits = "Capacity / Ah" in df, "Max Charge Power / W" in df
    panels = 1 + has_capacity + has_limits
    fig, axes = plt.subplots(panels, 1, figsize=(10, 2.6 * panels + 0.6), sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.fill_between(
        hours,
        100 * df["SOC Lower / 1"],
        100 * df["SOC Upper / 1"],
        color="tab:blue",
        alpha=0.25,
        label="3-sigma bound (within 0-100 %)",
    )
    ax.plot(hours, 100 * df["SOC / 1"], color="tab:blue", lw=1, label="SoC")
    if true_soc is not None:
        ax.plot(hours, 100 * true_soc, color="black", lw=0.8, ls="--", label="true SoC")
    ax.set_ylabel("SoC / %")
    ax.legend(loc="upper right", fontsize=8)
    row = 1
    if has_capacity:
        ax = axes[row, 0]
        cap, cap_bound = df["Capacity / Ah"], df["Capacity Bound / Ah"]
        ax.fill_between(hours, cap - cap_bound, cap + cap_bound, color="tab:green", alpha=0.25)
        ax.plot(hours, cap, color="tab:green", lw=1)
        ax.set_ylabel("capacity / Ah")
        row += 1
    if has_limits:
        ax = axes[row, 0]
        ax.plot(hours, df["Max Discharge Power / W"], lw=0.8, label="max discharge power (10 s)")
        ax.plot(hours, df["Max Charge Power / W"], lw=0.8, label="max charge power (10 s)")
        ax.set_ylabel("W")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time / h")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
