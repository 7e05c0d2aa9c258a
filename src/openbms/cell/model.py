"""The enhanced self-correcting (ESC) equivalent-circuit cell model and its JSON document.

    v = OCV(z, T) + M0(T)·s + M(T)·h + R0(z, T)·i + Σ_j R_j(z, T)·i_Rj

with positive current = charging throughout: z rises with charge (coulombic
efficiency η(T) applied to charge), the dynamic hysteresis state h tends to +1 while
charging at rate γ(T) per unit of SoC moved, s is the sign of the last non-zero
current (instantaneous hysteresis) and each RC branch current i_Rj follows i with
time constant τ_j(T). Every parameter is tabulated against temperature and
interpolated linearly (clamped at the table's ends). The resistances also vary
with SoC, on a few knots: LFP's diffusion resistance grows steeply near empty, and
a SoC-independent resistance leaves hundreds of mV of error there.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

SCHEMA = "openbms.cell/1"
UNITS = {
    "temperature_c": "degC",
    "soc": "1",
    "voltage_v": "V",
    "capacity_ah": "Ah",
    "coulombic_efficiency": "1",
    "hysteresis_rate": "1 (per unit of SoC moved)",
    "m0_v": "V",
    "m_v": "V",
    "r0_ohm": "ohm",
    "rc_tau_s": "s",
    "rc_r_ohm": "ohm",
    "resistance_soc": "1",
    "step_ratio": "1",
}
PARAMETERS = ("capacity_ah", "coulombic_efficiency", "hysteresis_rate", "m0_v", "m_v")


@dataclass(frozen=True)
class CellModel:
    """One cell type: OCV table plus temperature tables of the dynamic parameters."""

    name: str
    chemistry: str
    voltage_min_v: float
    voltage_max_v: float
    ocv_temperature_c: np.ndarray  # (n_ocv_t,)
    soc: np.ndarray  # (n_z,) uniform grid over [0, 1]
    ocv_v: np.ndarray  # (n_ocv_t, n_z)
    temperature_c: np.ndarray  # (n_t,)
    capacity_ah: np.ndarray  # (n_t,)
    coulombic_efficiency: np.ndarray  # (n_t,)
    hysteresis_rate: np.ndarray  # (n_t,)
    m0_v: np.ndarray  # (n_t,)
    m_v: np.ndarray  # (n_t,)
    rc_tau_s: np.ndarray  # (n_t, n_rc)
    resistance_soc: np.ndarray  # (n_k,) SoC knots of the resistance tables
    r0_ohm: np.ndarray  # (n_t, n_k)
    rc_r_ohm: np.ndarray  # (n_t, n_rc, n_k)
    hysteresis_envelope_v: np.ndarray | None = None  # (n_ocv_t, n_z): half the charge–discharge gap
    # (n_t,) measured over modelled voltage change at current steps on the identification data: the
    # fresh cell's reference for resistance state of health (1 where unknown)
    step_ratio: np.ndarray | None = None
    fit: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.step_ratio is None:
            object.__setattr__(self, "step_ratio", np.ones(len(self.temperature_c)))
        validate(self)

    @property
    def n_rc(self) -> int:
        return self.rc_tau_s.shape[1]

    def param(self, name: str, temperature_c) -> np.ndarray:
        """A parameter table at the given temperature(s): shape temperature.shape + the table's rest."""
        return interp_first_axis(temperature_c, self.temperature_c, getattr(self, name))

    def resistance_ohm(self, soc, temperature_c) -> np.ndarray:
        """Series resistance R0(z, T): the instantaneous voltage step per amp."""
        z, t = np.broadcast_arrays(np.asarray(soc, dtype=float), np.asarray(temperature_c, dtype=float))
        rows = self.param("r0_ohm", t)  # t.shape + (n_k,)
        if len(self.resistance_soc) == 1:
            return rows[..., 0]
        k, w = _position(z, self.resistance_soc)
        lo = np.take_along_axis(rows, k[..., None], -1)[..., 0]
        hi = np.take_along_axis(rows, k[..., None] + 1, -1)[..., 0]
        return lo + w * (hi - lo)

    def ocv(self, soc, temperature_c) -> np.ndarray:
        """OCV(z, T), bilinear in the table, extrapolated linearly beyond z in [0, 1]."""
        from .kernels import ocv_lookup  # numba kernel; imported late to keep loading JSON cheap

        z, t = np.broadcast_arrays(np.asarray(soc, dtype=float), np.asarray(temperature_c, dtype=float))
        out = np.empty(z.shape)
        ocv_lookup(
            z.ravel(),
            t.ravel(),
            self.ocv_temperature_c,
            self.soc[0],
            self.soc[1] - self.soc[0],
            self.ocv_v,
            out.ravel(),
        )
        return out

    def soc_from_ocv(self, voltage_v, temperature_c) -> np.ndarray:
        """Inverse of the OCV curve (where it is monotone; flat plateaus make this coarse)."""
        v, t = np.broadcast_arrays(np.asarray(voltage_v, dtype=float), np.asarray(temperature_c, dtype=float))
        temperatures, which = np.unique(t, return_inverse=True)  # one curve per distinct temperature
        curves = np.maximum.accumulate(self.ocv(self.soc[None, :], temperatures.reshape(-1, 1)), axis=1)
        which = which.reshape(v.shape)
        out = np.empty(v.shape)
        for k, curve in enumerate(curves):
            at = which == k
            out[at] = np.interp(v[at], curve, self.soc)
        return out

    def scaled(self, capacity: float = 1.0, resistance: float = 1.0, name: str | None = None) -> "CellModel":
        """A variant with capacity and all resistances scaled (cell variation, ageing, a bigger cell)."""
        return replace(
            self,
            name=name or self.name,
            capacity_ah=self.capacity_ah * capacity,
            r0_ohm=self.r0_ohm * resistance,
            rc_r_ohm=self.rc_r_ohm * resistance,
        )

    def with_capacity(self, capacity_ah: float, name: str, command: str) -> "CellModel":
        """A bigger or smaller cell of the same kind: capacity at 25 degC set, resistances scaled
        inversely (as that many of this cell in parallel), provenance saying so."""
        factor = capacity_ah / float(self.param("capacity_ah", 25.0))
        derived = self.scaled(capacity=factor, resistance=1.0 / factor, name=name)
        return replace(
            derived,
            provenance={
                **self.provenance,
                "derived_from": self.name,
                "command": command,
                "derivation": f"capacity x{factor:.4g} to {capacity_ah:g} Ah at 25 degC; resistances /{factor:.4g} "
                f"(as {factor:.4g} source cells in parallel); OCV, hysteresis and time constants unchanged",
            },
        )

    # -- the JSON document -------------------------------------------------------------
    def to_dict(self) -> dict:
        doc = {
            "schema": SCHEMA,
            "name": self.name,
            "chemistry": self.chemistry,
            "units": UNITS,
            "limits": {"voltage_min_v": self.voltage_min_v, "voltage_max_v": self.voltage_max_v},
            "ocv": {
                "temperature_c": self.ocv_temperature_c.tolist(),
                "soc": self.soc.tolist(),
                "voltage_v": np.round(self.ocv_v, 6).tolist(),
            },
            "parameters": {"temperature_c": self.temperature_c.tolist()}
            | {name: np.round(getattr(self, name), 9).tolist() for name in PARAMETERS + tuple(TABLES)},
            "fit": self.fit,
            "provenance": self.provenance,
        }
        doc["parameters"]["step_ratio"] = np.round(self.step_ratio, 6).tolist()
        if self.hysteresis_envelope_v is not None:
            doc["ocv"]["hysteresis_envelope_v"] = np.round(self.hysteresis_envelope_v, 6).tolist()
        return doc

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_dict(cls, doc: dict, source: str = "<dict>") -> "CellModel":
        if not isinstance(doc, dict):
            raise ValueError(f"{source}: a cell document is a JSON object, got {type(doc).__name__}")
        for part in ("ocv", "parameters", "limits"):
            if part in doc and not isinstance(doc[part], dict):
                raise ValueError(f"{source}: field {part!r} must be a JSON object")
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"{source}: schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
        try:
            ocv, par, limits = doc["ocv"], doc["parameters"], doc["limits"]
            envelope = ocv.get("hysteresis_envelope_v")
            return cls(
                name=doc["name"],
                chemistry=doc["chemistry"],
                voltage_min_v=float(limits["voltage_min_v"]),
                voltage_max_v=float(limits["voltage_max_v"]),
                ocv_temperature_c=_array(ocv, "temperature_c"),
                soc=_array(ocv, "soc"),
                ocv_v=_array(ocv, "voltage_v", 2),
                temperature_c=_array(par, "temperature_c"),
                **{name: _array(par, name) for name in PARAMETERS},
                **{name: _array(par, name, TABLES[name]) for name in TABLES},
                hysteresis_envelope_v=None if envelope is None else _array(ocv, "hysteresis_envelope_v", 2),
                step_ratio=_array(par, "step_ratio") if "step_ratio" in par else None,
                fit=doc.get("fit", {}),
                provenance=doc.get("provenance", {}),
            )
        except KeyError as exc:
            raise ValueError(f"{source}: missing field {exc.args[0]!r} in the cell document") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> "CellModel":
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except OSError as exc:
            raise ValueError(f"{path}: cannot read cell model: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from exc
        return cls.from_dict(doc, str(path))


TABLES = {"rc_tau_s": 2, "resistance_soc": 1, "r0_ohm": 2, "rc_r_ohm": 3}  # name: dimensions


def interp_first_axis(x, axis: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Linear interpolation of a table along its first axis, clamped at the ends."""
    x = np.asarray(x, dtype=float)
    if len(axis) == 1:
        return np.broadcast_to(table[0], x.shape + table.shape[1:]).copy()
    k, w = _position(x, axis)
    w = w.reshape(x.shape + (1,) * (table.ndim - 1))
    return table[k] + w * (table[k + 1] - table[k])


def _position(x: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower index and upper weight of each x on an increasing axis, clamped at its ends."""
    x = np.clip(x, axis[0], axis[-1])
    k = np.clip(np.searchsorted(axis, x) - 1, 0, len(axis) - 2)
    return k, (x - axis[k]) / (axis[k + 1] - axis[k])


def _array(part: dict, name: str, ndim: int = 1) -> np.ndarray:
    try:
        out = np.asarray(part[name], dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"field {name!r} must be a table of numbers") from None
    if out.ndim != ndim:
        raise ValueError(f"field {name!r}: expected a {ndim}-D table, got shape {out.shape}")
    return out


def validate(m: CellModel) -> None:
    """Shapes, monotone axes and physical signs; raises ValueError naming the field."""
    n_t, n_ot, n_z = len(m.temperature_c), len(m.ocv_temperature_c), len(m.soc)
    checks = [
        (
            n_z >= 2 and np.allclose(np.diff(m.soc), m.soc[1] - m.soc[0]) and m.soc[0] <= 0 and m.soc[-1] >= 1,
            "ocv.soc must be a uniform grid covering [0, 1]",
        ),
        (m.ocv_v.shape == (n_ot, n_z), f"ocv.voltage_v must be {n_ot}x{n_z}, got {m.ocv_v.shape}"),
        (bool(np.all(np.isfinite(m.ocv_v))), "ocv.voltage_v must be finite"),
        (
            m.hysteresis_envelope_v is None or m.hysteresis_envelope_v.shape == (n_ot, n_z),
            f"ocv.hysteresis_envelope_v must be {n_ot}x{n_z}",
        ),
        (np.all(np.diff(m.ocv_temperature_c) > 0), "ocv.temperature_c must increase"),
        (n_t >= 1 and np.all(np.diff(m.temperature_c) > 0), "parameters.temperature_c must increase"),
        (m.rc_tau_s.shape[0] == n_t, "parameters.rc_tau_s must be n_temperatures x n_rc"),
        (
            len(m.resistance_soc) >= 1 and np.all(np.diff(m.resistance_soc) > 0),
            "parameters.resistance_soc must be increasing SoC knots",
        ),
        (m.r0_ohm.shape == (n_t, len(m.resistance_soc)), "parameters.r0_ohm must be n_temperatures x n_knots"),
        (
            m.rc_r_ohm.shape == (n_t, m.rc_tau_s.shape[1], len(m.resistance_soc)),
            "parameters.rc_r_ohm must be n_temperatures x n_rc x n_knots",
        ),
        (np.all(m.r0_ohm >= 0) and np.all(m.rc_r_ohm >= 0), "resistances must not be negative"),
        (np.all(m.rc_tau_s > 0), "parameters.rc_tau_s must be positive"),
        (np.all(m.capacity_ah > 0), "parameters.capacity_ah must be positive"),
        (
            np.all((m.coulombic_efficiency > 0.5) & (m.coulombic_efficiency <= 1.05)),
            "parameters.coulombic_efficiency must lie in (0.5, 1.05]",
        ),
        (m.voltage_min_v < m.voltage_max_v, "limits: voltage_min_v must be below voltage_max_v"),
    ]
    checks.append(
        (
            m.step_ratio.shape == (n_t,) and bool(np.all(m.step_ratio > 0)),
            f"parameters.step_ratio must be {n_t} positive values",
        )
    )
    for name in PARAMETERS:
        checks.append((getattr(m, name).shape == (n_t,), f"parameters.{name} must have {n_t} values"))
        checks.append((bool(np.all(np.isfinite(getattr(m, name)))), f"parameters.{name} must be finite"))
    for ok, message in checks:
        if not ok:
            raise ValueError(f"cell {m.name!r}: {message}")


def provenance(command: str, data: list[str]) -> dict:
    from .. import __version__

    return {
        "command": command,
        "data": data,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "openbms": __version__,
    }
