"""One BMS, sample by sample: estimation and safety, then charging, balancing and contactors.

`Bms.step` turns a `Sample` into a `BmsOutput` (for CAN and the vehicle) and the VSS values
the vehicle interface publishes; `Bms.actuate` is what an app's set request reaches, and
its answer says what was applied. Everything an app can set, and everything the BMS learns,
is in its non-volatile state, saved at every command and every minute, so a restart resumes
where it stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections import deque
from dataclasses import replace

import numpy as np

from ..cell import CellModel
from ..pack.balancing import Balancer
from ..safety.charging import TARGET_RANGE, ChargeConfig, ChargeController
from ..safety.contactors import ContactorController, PrechargeCircuit
from ..safety.events import SEVERITIES, Event, rank
from ..safety.monitor import MonitorConfig, PackMonitor
from ..safety.soa import SoaLimits
from ..vehicle.hub import Commit, Requester, SetResult
from ..vehicle.vss import ROOT
from .sample import BmsOutput, Sample
from .usage import Usage

log = logging.getLogger(__name__)
NV_KEY = "bms"  # the store's key of the BMS's non-volatile state
OVERLAY = f"{ROOT}.OpenBMS"
CONTACTOR_TICK_S = 0.01
MAX_CONTACTOR_TICKS = 1000  # after a long gap, 10 s of the contactor machine is enough to settle
CERTIFIED_RATE_C = 1 / 3  # the discharge rate at which usable energy is rated (as EV range tests do)
MIN_CONSUMPTION_SHARE = 1 / 3  # of the rated consumption: regen can net out a kilometre
DEFAULT_CONSUMPTION_WH_PER_KM = 150.0  # a vehicle that does not state its own
# The rated consumption counts as this many km driven, and the mean follows about the last CONSUMPTION_MEMORY_KM:
# range moves as the way the car is driven shows itself, not by a third in the first kilometres.
CONSUMPTION_PRIOR_KM = 30.0
CONSUMPTION_MEMORY_KM = 100.0


class Bms:
    def __init__(
        self,
        model: CellModel,
        series: int,
        sensors: int,
        nv: dict | None = None,
        charger_max_current_c: float = 0.5,
        charger_max_power_w: float = 50_000.0,
        balancer: Balancer | None = Balancer(),
        config: MonitorConfig = MonitorConfig(),
        rated_consumption_wh_per_km: float = DEFAULT_CONSUMPTION_WH_PER_KM,
    ):
        """balancer: None where the pack's bleed resistors do not obey this BMS (a recording, a bus without them);
        config: limits and detector settings, e.g. from a pack file; rated_consumption_wh_per_km: the vehicle's
        own figure, where range starts before this BMS has seen it driven."""
        nv = nv or {}
        self.model, self.series = model, series
        self.q_ah = float(model.param("capacity_ah", 25.0))
        soc0 = nv.get("cell_soc")
        if soc0 is not None and len(soc0) != series:
            soc0 = None  # saved for another pack: start from the voltages
        self.monitor = PackMonitor(model, series, sensors, soc0, config)
        if nv.get("filters") is not None:
            try:  # what the filters learned (capacity, resistance, offsets) resumes as it was
                self.monitor.estimator.restore(nv["filters"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("saved filter state not used: %s", exc)
        limits = SoaLimits(capacity_ah=self.q_ah)
        self.charger = ChargeController(
            ChargeConfig(
                limits,
                cell_resistance_ohm=float(model.resistance_ohm(0.5, 25.0)) * 2,
                charger_max_current_a=charger_max_current_c * self.q_ah,
                charger_max_power_w=charger_max_power_w,
            ),
            soc_target=nv.get("charge_limit", 0.9),
        )
        self.charge_wanted = nv.get("charge_wanted", True)
        self.conditioning = nv.get("conditioning", "INACTIVE")
        self.rated_consumption_wh_per_km = rated_consumption_wh_per_km
        self.consumption_wh_per_km = nv.get("consumption_wh_per_km", rated_consumption_wh_per_km)
        self.consumption_km = nv.get("consumption_km", 0.0)  # km driven into the consumption's mean
        self.usage = Usage.restore(nv.get("usage"))
        self.mean_ocv_v = float(np.mean(model.ocv(np.linspace(0.0, 1.0, 101), 25.0)))
        self.r0_ohm = float(model.resistance_ohm(0.5, 25.0))
        self.certified_wh = self._usable_wh(1.0, 1.0)
        self.latched: list[dict] = list(
            nv.get("latched", [])
        )  # the record of critical faults, kept across restarts for service
        self.contactors = ContactorController()
        self.circuit = PrechargeCircuit(pack_voltage_v=3.3 * series)  # the HV side as the BMS sees it
        self.balancer = balancer
        self.bleed_a = np.zeros(series)
        self.active: dict[tuple[str, int | None, int | None], Event] = {}  # by kind, cell, sensor
        self.recent: deque[Event] = deque(maxlen=200)
        self.lock = threading.Lock()
        self._trip_wh, self._trip_km = 0.0, 0.0
        self._was_plugged = False
        self.last: BmsOutput | None = None
        self._last_time_s: float | None = None
        self.dt_s = 1.0
        self.last_estimate = None

    # -- each sample -----------------------------------------------------------------------------
    def step(self, s: Sample) -> tuple[BmsOutput, dict]:
        with self.lock:
            self.dt_s = 1.0 if self._last_time_s is None else s.time_s - self._last_time_s
            self._last_time_s = s.time_s
            events, est = self.monitor.update(
                s.time_s, s.current_a, s.cell_voltage_v[None, :], s.temperature_c[None, :], self.bleed_a[None, :]
            )
            self._track(events)
            row = est.row()
            worst = max((e.severity for e in self.active.values()), key=rank, default="info")
            cell_soc = np.asarray(row["cell_soc"])
            charge = self._charge(s, cell_soc, worst)
            contactor_state = self._contactors(s, worst)
            if self.balancer is not None:
                selected = self.balancer.select(cell_soc, self.q_ah, s.cell_voltage_v, s.current_a)
                self.bleed_a = self.balancer.bleed_a(selected, s.cell_voltage_v)
            self._learn_consumption(s)
            self.usage.update(
                self.dt_s,
                s.current_a,
                float(np.nansum(s.cell_voltage_v)),
                row["soc"],
                _finite(np.nanmax, s.temperature_c),
            )
            out = BmsOutput(
                s.time_s,
                row["soc"],
                row["soh_capacity"],
                row["soh_resistance"],
                row["max_charge_current_a"],
                row["max_discharge_current_a"],
                row["max_charge_power_w"],
                row["max_discharge_power_w"],
                charge.current_a,
                contactor_state,
                worst,
                tuple(sorted({e.kind for e in self.active.values()})),
            )
            self.last, self.last_estimate = out, row
            values = self._signals(s, row, charge)
            return out, {path: value for path, value in values.items() if value is not None}

    def _track(self, events: list[Event]) -> None:
        for e in events:
            self.recent.append(e)
            key = (e.kind, e.cell, e.sensor)
            remaining = self._soa_level(e) if e.cleared else 0
            if remaining:  # stepped down a level but not out: still active at the lower one
                self.active[key] = replace(e, severity=SEVERITIES[remaining], cleared=False)
            elif e.cleared:
                self.active.pop(key, None)
            else:
                self.active[key] = e
            if e.severity == "critical" and not e.cleared:
                self.latched.append(e.record())

    def _soa_level(self, e: Event) -> int:
        """The SOA level an event's channel is at now (0 for kinds the SOA does not track)."""
        levels = self.monitor.soa.cell_levels(e.kind)
        channel = (e.cell or e.sensor or 1) - 1
        return int(levels[channel]) if channel < len(levels) else 0

    def _charge(self, s: Sample, cell_soc, worst: str):
        if s.plugged_in and not self._was_plugged and self.charge_wanted:
            self.charger.start()
        self._was_plugged = s.plugged_in
        if not s.plugged_in and self.charger.state not in ("idle", "stopped"):
            self.charger.stop()
        # A sensor judged implausible stands in as the median of the others: it neither stops nor derates charging.
        temps = self.monitor.trusted_temperature_c
        temps = np.where(np.isfinite(temps), temps, np.nanmedian(temps) if np.isfinite(temps).any() else np.nan)
        return self.charger.tick(s.cell_voltage_v, temps[self.monitor.sensor_of_cell], cell_soc, worst)

    def _contactors(self, s: Sample, worst: str) -> str:
        request = "charge" if s.plugged_in else ("drive" if s.speed_kmh > 0 or abs(s.current_a) > 1.0 else "off")
        self.circuit.pack_voltage_v = float(np.nansum(s.cell_voltage_v))
        feedback = self.contactors.command
        for n in range(max(1, min(int(round(self.dt_s / CONTACTOR_TICK_S)), MAX_CONTACTOR_TICKS))):
            out = self.contactors.tick(
                s.time_s + n * CONTACTOR_TICK_S,
                request,
                self.circuit.pack_voltage_v,
                self.circuit.link_voltage_v,
                feedback,
                open_request=rank(worst) >= rank("critical"),
            )
            self._track(list(out.events))
            self.circuit.step(out.command, CONTACTOR_TICK_S)
            feedback = out.command
        return self.contactors.state

    def _learn_consumption(self, s: Sample) -> None:
        """Wh per km over the last kilometres driven: range follows how this car is driven now."""
        if s.speed_kmh <= 0:
            return
        self._trip_wh += -s.current_a * float(np.nansum(s.cell_voltage_v)) * self.dt_s / 3600.0
        self._trip_km += s.speed_kmh * self.dt_s / 3600.0
        if self._trip_km >= 1.0:
            latest = max(self._trip_wh / self._trip_km, MIN_CONSUMPTION_SHARE * self.rated_consumption_wh_per_km)
            self.consumption_km += self._trip_km
            weight = self._trip_km / min(CONSUMPTION_PRIOR_KM + self.consumption_km, CONSUMPTION_MEMORY_KM)
            self.consumption_wh_per_km += weight * (latest - self.consumption_wh_per_km)
            self._trip_wh = self._trip_km = 0.0

    def _signals(self, s: Sample, row: dict, charge) -> dict:
        v = s.cell_voltage_v
        pack_v = float(np.nansum(v))
        cell_soc = np.asarray(row["cell_soc"])
        nominal_v = 3.2 * self.series
        charging = s.plugged_in and s.current_a > 0.01 * self.q_ah
        return {
            f"{ROOT}.StateOfCharge.Current": _pct(np.mean(cell_soc)),
            f"{ROOT}.StateOfCharge.Displayed": _pct(row["soc"]),
            f"{ROOT}.StateOfCharge.CurrentEnergy": row["energy_wh"] / 1000.0,
            f"{ROOT}.CellVoltage.Min": float(np.nanmin(v)),
            f"{ROOT}.CellVoltage.Max": float(np.nanmax(v)),
            f"{ROOT}.CellVoltage.IdMin": int(np.nanargmin(v)),
            f"{ROOT}.CellVoltage.IdMax": int(np.nanargmax(v)),
            f"{ROOT}.CellVoltage.CellVoltages": [round(float(x), 4) for x in np.nan_to_num(v)],
            f"{ROOT}.Temperature.Average": _finite(np.nanmean, s.temperature_c),
            f"{ROOT}.Temperature.Min": _finite(np.nanmin, s.temperature_c),
            f"{ROOT}.Temperature.Max": _finite(np.nanmax, s.temperature_c),
            f"{ROOT}.CurrentVoltage": pack_v,
            f"{ROOT}.CurrentCurrent": s.current_a,
            f"{ROOT}.CurrentPower": pack_v * s.current_a,
            f"{ROOT}.NetCapacity": int(round((row["available_ah"] + row["headroom_ah"]) * nominal_v / 1000.0)),
            f"{ROOT}.Range": int(max(row["energy_wh"], 0.0) / self.consumption_wh_per_km * 1000.0),
            f"{ROOT}.ErrorCodes": sorted(
                f"{e.kind}:cell{e.cell}" if e.cell else e.kind
                for e in self.active.values()
                if rank(e.severity) >= rank("warning")
            ),
            f"{ROOT}.Charging.IsCharging": bool(charging),
            f"{ROOT}.Charging.ChargeLimit": int(round(100 * self.charger.soc_target)),
            f"{ROOT}.Charging.TimeToComplete": int(min(charge.time_to_complete_s, 2**32 - 1)) if charging else 0,
            f"{ROOT}.Charging.MaximumChargingCurrent.DC": float(row["max_charge_current_a"]),
            f"{ROOT}.BatteryConditioning.RequestedMode": self.conditioning,
            f"{OVERLAY}.StateOfChargeBound": _pct(float(np.mean(row["cell_soc_bound"]))),
            f"{OVERLAY}.ContactorState": self.contactors.state.upper(),
            f"{OVERLAY}.IsBalancing": bool(np.any(self.bleed_a > 0)),
            f"{OVERLAY}.ThermalWarning": self._thermal_warning(),
            f"{OVERLAY}.MaxChargePower": max(0.0, row["max_charge_power_w"]),
            f"{OVERLAY}.MaxDischargePower": max(0.0, row["max_discharge_power_w"]),
            f"{OVERLAY}.CellStateOfCharge": [round(_pct(z), 2) for z in cell_soc],
            f"{OVERLAY}.CellTemperatures": [round(float(x), 2) for x in np.nan_to_num(s.temperature_c, nan=-273.15)],
            f"{OVERLAY}.BalancingCells": np.flatnonzero(self.bleed_a > 0).tolist(),
            f"{OVERLAY}.WeakestCell": int(np.argmin(cell_soc)),
            f"{OVERLAY}.Events": [json.dumps(e.record()) for e in list(self.recent)[-20:]],
            f"{OVERLAY}.ChargingState": f"{charge.state}: {charge.reason}",
            **self._health(row),
        }

    def _usable_wh(self, soh_capacity: float, soh_resistance: float) -> float:
        """Energy a full pack delivers at the certified rate: capacity times the mean OCV less the resistive drop."""
        q_ah = self.q_ah * soh_capacity
        return self.series * q_ah * (self.mean_ocv_v - CERTIFIED_RATE_C * q_ah * self.r0_ohm * soh_resistance)

    def _health(self, row: dict) -> dict:
        """The health record (EU 2023/1542 Annex XIII), `vss.HEALTH_LEAVES`: state of health by capacity and
        resistance, of certified energy, throughput, cycles, histograms and events."""
        u, health = self.usage, f"{OVERLAY}.Health"
        return {
            f"{ROOT}.StateOfHealth": _pct(row["soh_capacity"]),
            f"{OVERLAY}.ResistanceHealth": max(0.0, 100.0 * row["soh_resistance"]),
            f"{health}.Capacity": self.q_ah * row["soh_capacity"],
            f"{health}.StateOfCertifiedEnergy": max(
                0.0, 100.0 * self._usable_wh(row["soh_capacity"], row["soh_resistance"]) / self.certified_wh
            ),
            f"{health}.CertifiedEnergy": self.certified_wh / 1000.0,
            f"{health}.ChargedEnergy": u.charged_wh / 1000.0,
            f"{health}.DischargedEnergy": u.discharged_wh / 1000.0,
            f"{health}.ChargedCharge": u.charged_ah,
            f"{health}.DischargedCharge": u.discharged_ah,
            f"{health}.EquivalentFullCycles": u.equivalent_full_cycles(self.q_ah),
            f"{health}.OperatingTime": u.operating_s,
            f"{health}.TimeAtTemperature": [round(t, 1) for t in u.time_at_temperature_s],
            f"{health}.TimeAtStateOfCharge": [round(t, 1) for t in u.time_at_soc_s],
            f"{health}.DeepDischargeEvents": u.deep_discharge_events,
            f"{health}.OverTemperatureEvents": u.over_temperature_events,
        }

    def _thermal_warning(self) -> str:
        kinds = {e.kind for e in self.active.values()}
        return next((name.upper() for name in ("thermal_runaway", "abnormal_heating") if name in kinds), "NONE")

    # -- what apps may ask ---------------------------------------------------------------------
    def actuate(self, path: str, value, requester: Requester, commit: Commit) -> SetResult:
        """Decide a set request; the decision and the state it leaves are committed (`commit`) before it takes
        effect, and undone if they cannot be, so what the owner was told is what a restart finds."""
        with self.lock:
            before = copy.copy(self.charger), self.charge_wanted, self.conditioning
            result = self._decide(path, value)
            try:
                commit(result, {NV_KEY: self._nv_state()})
            except BaseException:
                self.charger, self.charge_wanted, self.conditioning = before
                raise
            return result

    def _decide(self, path: str, value) -> SetResult:
        if path == f"{ROOT}.Charging.ChargeLimit":
            asked = float(value)
            clamped = self.charger.set_target(asked / 100.0)
            applied = int(round(100 * self.charger.soc_target))
            low, high = (round(100 * x) for x in TARGET_RANGE)
            why = f"a charge limit of {asked:g} % is outside {low}–{high} %: set to {applied} %" if clamped else ""
            if self.charger.state == "complete" and self._was_plugged and self.charge_wanted:
                self.charger.start()  # a higher limit resumes a finished charge
            return SetResult(True, applied, why or f"charge limit set to {applied} %")
        if path == f"{ROOT}.Charging.StartStopCharging":
            self.charge_wanted = value == "START"
            if value == "STOP":
                self.charger.stop()
                return SetResult(True, "STOP", "charging stopped")
            if not self._was_plugged:
                return SetResult(True, "START", "charging will start when a charger is connected")
            if any(e.severity == "critical" for e in self.active.values()):
                return SetResult(False, "STOP", "refused: a critical fault is active")
            self.charger.start()
            return SetResult(True, "START", "charging started")
        if path == f"{ROOT}.BatteryConditioning.RequestedMode":
            self.conditioning = str(value)
            return SetResult(True, self.conditioning, f"conditioning {self.conditioning.lower()}")
        return SetResult(False, None, f"{path} is not controlled by the BMS")

    def report(self, event: Event) -> None:
        """An event from outside the estimate and safety checks (a storage fault), onto the alarm timeline."""
        with self.lock:
            self._track([event])

    def persist(self, write) -> None:
        """`write(nv_state)` under the lock, so a periodic save never overwrites a command committed meanwhile."""
        with self.lock:
            write(self._nv_state())

    def nv_state(self) -> dict:
        """What a restart must not lose."""
        with self.lock:
            return self._nv_state()

    def _nv_state(self) -> dict:
        row = self.last_estimate or {}
        return {
            "filters": self.monitor.estimator.snapshot(),
            "cell_soc": row.get("cell_soc"),
            "capacity_ah": row.get("capacity_ah"),
            "resistance_ohm": row.get("resistance_ohm"),
            "charge_limit": self.charger.soc_target,
            "charge_wanted": self.charge_wanted,
            "conditioning": self.conditioning,
            "consumption_wh_per_km": self.consumption_wh_per_km,
            "consumption_km": self.consumption_km,
            "latched": self.latched[-50:],
            "usage": self.usage.as_dict(),
            "health": self._health(row) if row else None,
            "cell": self._cell_record(),
        }

    def _cell_record(self) -> dict:
        """Which cell model the estimates rest on and where it came from (for the battery passport)."""
        return {
            "name": self.model.name,
            "chemistry": self.model.chemistry,
            "series": self.series,
            "rated_capacity_ah": self.q_ah,
            "certified_energy_kwh": self.certified_wh / 1000.0,
            "provenance": self.model.provenance,
            "fit": self.model.fit,
        }


def _finite(reduce, values) -> float | None:
    with np.errstate(all="ignore"):
        value = float(reduce(values)) if np.isfinite(values).any() else None
    return value


def _pct(x: float) -> float:
    return float(np.clip(100.0 * x, 0.0, 100.0))
