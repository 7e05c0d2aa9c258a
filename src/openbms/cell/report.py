"""Plots of a model against measurements: users look before they read."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io.columns import AMBIENT_TEMPERATURE, CURRENT, TIME, VOLTAGE  # noqa: E402
from .identify import Score  # noqa: E402

MODEL_VOLTAGE = "Model Voltage / V"
TEST_NUMBER = "Test Number / 1"


def fit_frame(scores: list[Score]) -> pd.DataFrame:
    """Every scored test's measured and model voltage as one BDF series, for other tools to plot:
    the tests one after another on one time axis (a second apart), numbered as in the fit report."""
    frames: list[pd.DataFrame] = []
    end = 0.0
    for number, s in enumerate(scores, start=1):
        t = s.time_s - s.time_s[0] + (end + 1.0 if frames else 0.0)
        end = float(t[-1])
        frames.append(
            pd.DataFrame(
                {
                    TIME: t,
                    CURRENT: s.current_a,
                    VOLTAGE: s.measured_v,
                    AMBIENT_TEMPERATURE: s.temperature_c,
                    MODEL_VOLTAGE: s.model_v,
                    TEST_NUMBER: np.full(len(t), number),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def plot_fit(scores: list[Score], path: str | Path, title: str) -> Path:
    """Measured vs model voltage, and the error, for every scored test (one row each)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(
        len(scores), 2, figsize=(13, 2.4 * len(scores) + 0.8), squeeze=False, gridspec_kw={"width_ratios": [3, 2]}
    )
    for (left, right), s in zip(axes, scores):
        hours = (s.time_s - s.time_s[0]) / 3600.0
        left.plot(hours, s.measured_v, lw=0.6, color="0.3", label="measured")
        left.plot(hours, s.model_v, lw=0.6, color="tab:red", alpha=0.8, label="model")
        left.set_ylabel("V")
        left.set_title(f"{s.name}: {s.temperature_c:g} degC, RMSE {s.rmse_mv:.1f} mV", fontsize=9, loc="left")
        right.plot(hours, 1e3 * (s.model_v - s.measured_v), lw=0.5, color="tab:blue")
        right.set_ylabel("model − measured / mV")
        right.set_ylim(-60, 60)
    axes[0, 0].legend(loc="lower left", fontsize=8)
    axes[-1, 0].set_xlabel("time / h")
    axes[-1, 1].set_xlabel("time / h")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
