"""State estimation: SoC with honest bounds, health (capacity, resistance) and power limits.

`openbms.estimate(model, time_s, current_a, voltage_v, ...)` runs the estimator: this package
is callable, so the short call and `openbms.estimate.Estimator` and the rest both work.
"""

import sys
import types

from .api import Estimate, EstimateOptions, Estimator, Limits, estimate

__all__ = ["Estimate", "EstimateOptions", "Estimator", "Limits", "estimate"]


class _CallablePackage(types.ModuleType):
    __call__ = staticmethod(estimate)  # keeps estimate's signature and docstring for help()


sys.modules[__name__].__class__ = _CallablePackage
