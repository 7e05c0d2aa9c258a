"""PyBaMM physics cells as the validation plant: their true SoC and capacity are known.

`prada2013_lfp` is PyBaMM's A123-like LFP cell made hysteretic with PyBaMM's
one-state hysteresis option: the LFP electrode gets lithiation/delithiation OCPs
±`HYSTERESIS_HALF_GAP_V` around its OCP, so charge and discharge OCVs differ by
tens of mV mid-plateau as in the real cell. Its variants differ in the gap, in how
fast the hysteresis state follows the current, and in the physics (SPMe or DFN):
`prada2013_lfp_wide` (±25 mV, a slow decay), `prada2013_lfp_dfn` (±10 mV, a fast
decay, the full DFN model). `chen2020_nmc` is PyBaMM's NMC811 cell.
Both run isothermally at the ambient temperature. Ageing lowers the active material
(capacity) and slows the kinetics (exchange current and solid diffusion).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

HYSTERESIS_HALF_GAP_V = 0.015
HYSTERESIS_DECAY_RATE = 100.0  # PyBaMM's dimensionless rate: e-folds over 2 % of stoichiometry


@dataclass(frozen=True)
class PlantSpec:
    parameter_set: str
    chemistry: str
    voltage_min_v: float
    voltage_max_v: float
    nominal_voltage_v: float  # to scale vehicle power to the cell by energy
    hysteresis_half_gap_v: float = 0.0  # 0: no hysteresis
    hysteresis_decay_rate: float = HYSTERESIS_DECAY_RATE
    physics: str = "SPMe"  # PyBaMM model: "SPMe" or "DFN"

    @property
    def hysteresis(self) -> bool:
        return self.hysteresis_half_gap_v > 0


PLANTS = {
    "prada2013_lfp": PlantSpec("Prada2013", "LFP", 2.5, 3.6, 3.3, HYSTERESIS_HALF_GAP_V),
    "prada2013_lfp_wide": PlantSpec("Prada2013", "LFP", 2.5, 3.6, 3.3, 0.025, 30.0),
    "prada2013_lfp_dfn": PlantSpec("Prada2013", "LFP", 2.5, 3.6, 3.3, 0.010, 300.0, "DFN"),
    "chen2020_nmc": PlantSpec("Chen2020", "NMC", 2.5, 4.2, 3.65),
}


@dataclass(frozen=True)
class Plant:
    """One physics cell: which, how aged, at what temperature."""

    name: str = "prada2013_lfp"
    capacity_fade: float = 0.0  # 0.1 = 10 % less active material
    kinetics_slowdown: float = 0.0  # 0.3 = exchange current and diffusivity 30 % lower
    temperature_c: float = 25.0

    def __post_init__(self) -> None:
        if self.name not in PLANTS:
            raise ValueError(f"unknown plant {self.name!r}: choose from {sorted(PLANTS)}")
        if not (0 <= self.capacity_fade < 0.5 and 0 <= self.kinetics_slowdown < 0.9):
            raise ValueError("capacity_fade must be in [0, 0.5) and kinetics_slowdown in [0, 0.9)")

    @property
    def spec(self) -> PlantSpec:
        return PLANTS[self.name]

    def model(self, power_driven: bool = False):
        import pybamm

        options = {"open-circuit potential": ("single", "one-state hysteresis")} if self.spec.hysteresis else {}
        if power_driven:
            options["operating mode"] = "power"
        with warnings.catch_warnings():  # PyBaMM notes its decay-rate definition changed in 25.10
            warnings.simplefilter("ignore", UserWarning)
            return getattr(pybamm.lithium_ion, self.spec.physics)(options)

    def parameter_values(self, cutoff_margin_v: float = 0.05):
        """Parameters; the model's own voltage cut-offs sit `cutoff_margin_v` outside the
        cell's limits so that an experiment's own conditions end its steps."""
        import pybamm

        pv = pybamm.ParameterValues(self.spec.parameter_set)
        kelvin = self.temperature_c + 273.15
        pv.update(
            {
                "Ambient temperature [K]": kelvin,
                "Initial temperature [K]": kelvin,
                # SoC 0 and 1 at the cell's own voltage limits (Prada2013 ships 2.0 V for 0 %)
                "Open-circuit voltage at 0% SOC [V]": self.spec.voltage_min_v,
                "Open-circuit voltage at 100% SOC [V]": self.spec.voltage_max_v,
                "Lower voltage cut-off [V]": self.spec.voltage_min_v - cutoff_margin_v,
                "Upper voltage cut-off [V]": self.spec.voltage_max_v + cutoff_margin_v,
            }
        )
        if self.spec.hysteresis:
            ocp, gap, rate = (
                pv["Positive electrode OCP [V]"],
                self.spec.hysteresis_half_gap_v,
                self.spec.hysteresis_decay_rate,
            )
            pv.update(
                {
                    "Positive electrode lithiation OCP [V]": lambda sto: ocp(sto) - gap,
                    "Positive electrode delithiation OCP [V]": lambda sto: ocp(sto) + gap,
                    "Positive particle lithiation hysteresis decay rate": rate,
                    "Positive particle delithiation hysteresis decay rate": rate,
                    "Initial hysteresis state in positive electrode": 1.0,  # rested after a charge
                },
                check_already_exists=False,
            )
        return _aged(pv, self.capacity_fade, self.kinetics_slowdown)

    def capacity_ah(self) -> float:
        """True capacity between the OCV limits (PyBaMM's electrode SoH)."""
        import pybamm

        pv = self.parameter_values(cutoff_margin_v=0.0)
        options = pybamm.BatteryModelOptions(self.model().options)
        param = pybamm.LithiumIonParameters(options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solver = pybamm.lithium_ion.ElectrodeSOHSolver(pv, param=param, options=options)
            x0, x100, _, _ = solver.get_min_max_stoichiometries()
        return float(pv.evaluate(param.n.Q_init) * (x100 - x0))


def _aged(pv, capacity_fade: float, kinetics_slowdown: float):
    keep, slow = 1.0 - capacity_fade, 1.0 - kinetics_slowdown
    if capacity_fade == 0 and kinetics_slowdown == 0:
        return pv
    for electrode in ("Negative", "Positive"):
        pv[f"{electrode} electrode active material volume fraction"] *= keep
        j0 = pv[f"{electrode} electrode exchange-current density [A.m-2]"]
        pv[f"{electrode} electrode exchange-current density [A.m-2]"] = lambda c_e, c_s, c_max, T, j0=j0: (
            slow * j0(c_e, c_s, c_max, T)
        )
        diffusivity = pv[f"{electrode} particle diffusivity [m2.s-1]"]
        pv[f"{electrode} particle diffusivity [m2.s-1]"] = (
            (lambda sto, T, d=diffusivity: slow * d(sto, T)) if callable(diffusivity) else slow * diffusivity
        )
    return pv
