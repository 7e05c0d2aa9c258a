"""A pack described in a file (YAML or JSON): topology, cell model, variation, sensors and limits.

name: blade-100s
cell: blade_lfp            # a bundled cell or a cell JSON (relative to this file)
series: 100
parallel: 1                # cells in parallel per series element (one bigger cell to the BMS)
temperature_sensors: 10
variation: {capacity: 0.02, resistance: 0.05, soc: 0.02}   # for the simulator
limits: {overvoltage_v: [3.55, 3.60, 3.65]}               # any SoaLimits field
balancing: {bleed_resistance_ohm: 33}
short: {warning_c: 0.0011}           # leak as a fraction of 1C
runaway: {max_temperature_c: 60}
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..cell import CellModel, load_cell
from ..safety.monitor import MonitorConfig
from ..safety.runaway import RunawayRule
from ..safety.short import ShortRule
from ..safety.soa import SoaLimits
from .balancing import Balancer
from .plant import Spread


class Variation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    capacity: float = Field(0.02, ge=0, lt=0.5)
    resistance: float = Field(0.05, ge=0, lt=0.5)
    soc: float = Field(0.02, ge=0, lt=0.5)


class PackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "pack"
    cell: str = "blade_lfp"
    series: int = Field(100, ge=2, le=1000)
    parallel: int = Field(1, ge=1, le=100)
    temperature_sensors: int = Field(10, ge=1)
    variation: Variation = Variation()
    limits: dict = {}
    balancing: dict = {}
    short: dict = {}
    runaway: dict = {}

    @field_validator("temperature_sensors")
    @classmethod
    def _sensors_fit(cls, n, info):
        series = info.data.get("series")
        if series is not None and n > series:
            raise ValueError(f"cannot have more temperature sensors ({n}) than cells in series ({series})")
        return n

    def cell_model(self, base_dir: Path | None = None) -> CellModel:
        """The series element's model: `parallel` cells as one cell of that many times the capacity."""
        name = self.cell
        if base_dir is not None and (base_dir / name).is_file():
            name = str(base_dir / name)
        model = load_cell(name)
        return model if self.parallel == 1 else model.scaled(self.parallel, 1.0 / self.parallel)

    def monitor_config(self, capacity_ah: float) -> MonitorConfig:
        soa = _build(SoaLimits, {"capacity_ah": capacity_ah, **self.limits}, "limits").validate()
        return MonitorConfig(
            soa=soa,
            short=_build(ShortRule, self.short, "short").validate(),
            runaway=_build(RunawayRule, self.runaway, "runaway"),
        )

    def balancer(self) -> Balancer:
        return _build(Balancer, self.balancing, "balancing")

    def spread(self) -> Spread:
        return Spread(**self.variation.model_dump())


def _build(kind, values: dict, section: str):
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"pack config {section}: unknown field {unknown[0]!r}; known: {sorted(known)}")
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_pack(path: str | Path) -> PackConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pack config {path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"pack config {path}: not valid YAML or JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"pack config {path}: expected a mapping of fields, got {type(doc).__name__}")
    try:
        return PackConfig(**doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ValueError(f"pack config {path}: {where}: {first['msg']}") from None
