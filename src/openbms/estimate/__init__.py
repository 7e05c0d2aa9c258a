"""State estimation: SoC with honest bounds, health (capacity, resistance) and power limits."""

from .api import Estimate, EstimateOptions, Estimator, Limits, estimate

__all__ = ["Estimate", "EstimateOptions", "Estimator", "Limits", "estimate"]
