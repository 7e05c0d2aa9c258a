"""The contactor and precharge state machine, and a tiny electrical model of the precharge circuit.

Closing the main contactors onto an empty DC-link capacitor would draw a current
limited only by milliohms and weld them; so the link is first charged through a
precharge resistor, and the main positive closes only when the link is near the
pack voltage. Every contactor's auxiliary contact is compared with its command:
closed while commanded open is a weld, open while commanded closed a failure to
close. Both, and any safety request, end in `error`, which only an explicit reset
leaves once the cause is gone. The controller is a pure function of its inputs and
its time stamps: the same sequence of ticks gives the same commands.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields

from .events import Event

STATES = ("standby", "precharge", "normal", "charge", "opening", "error")
REQUESTS = ("off", "drive", "charge")
_RUNNING = {"drive": "normal", "charge": "charge"}


@dataclass(frozen=True)
class Contactors:
    """One flag per contactor: as commands (True = close) or as auxiliary-contact feedback (True = closed)."""

    main_positive: bool = False
    main_negative: bool = False
    precharge: bool = False


OPEN = Contactors()
_NAMES = tuple(f.name for f in fields(Contactors))


@dataclass(frozen=True)
class ContactorConfig:
    precharge_fraction: float = 0.95  # link/pack voltage at which the main positive may close
    precharge_timeout_s: float = 2.0
    precharge_retries: int = 2  # after the first attempt fails
    retry_cooldown_s: float = 5.0  # lets the precharge resistor cool between attempts
    feedback_timeout_s: float = 0.1  # longest a contactor may take to follow its command (~20-50 ms mechanically)
    # After opening, the link must fall below this fraction of the pack voltage within weld_check_s; it can
    # stay above only if both main contactors still connect it. Needs a bleed or active discharge on the link.
    weld_check_s: float = 1.0
    weld_fraction: float = 0.9

    def validate(self) -> "ContactorConfig":
        for f in fields(self):
            value = getattr(self, f.name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"ContactorConfig.{f.name} must be a finite number >= 0, got {value!r}")
        for name in ("precharge_fraction", "weld_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"ContactorConfig.{name} must be within (0, 1), got {getattr(self, name)!r}")
        if not isinstance(self.precharge_retries, int):
            raise ValueError(f"ContactorConfig.precharge_retries must be an integer, got {self.precharge_retries!r}")
        return self


@dataclass(frozen=True)
class ContactorOutput:
    state: str
    command: Contactors
    events: tuple[Event, ...] = ()


class ContactorController:
    """standby → precharge → normal | charge; opening on the way back; error on any fault.

    Call `tick` periodically (e.g. every 10 ms) with the request, both voltages,
    the auxiliary-contact feedback and `open_request` (a critical SOA level or fault).
    """

    def __init__(self, config: ContactorConfig = ContactorConfig()):
        self.config = config.validate()
        self.state = "standby"
        self.command = OPEN
        self.attempts = 0  # failed precharge attempts since the last success or reset
        self._phase_since = 0.0  # when the present state or precharge step began
        self._after_opening = "standby"
        self._retry_at = -math.inf
        self._mismatch_since: dict[str, float] = {}
        self._reported: set[str] = set()

    def tick(
        self,
        now_s: float,
        request: str,
        pack_voltage_v: float,
        link_voltage_v: float,
        feedback: Contactors,
        open_request: bool = False,
        reset: bool = False,
    ) -> ContactorOutput:
        if request not in REQUESTS:
            raise ValueError(f"contactor request must be one of {REQUESTS}, got {request!r}")
        events = self._check_feedback(now_s, feedback)
        if events:
            self._enter("error", now_s)
        elif (
            open_request and self.state != "error" and not (self.state == "opening" and self._after_opening == "error")
        ):
            events.append(
                Event(
                    now_s,
                    "contactors_opened",
                    "critical",
                    f"safety request: contactors opened from state {self.state}, held open until reset",
                )
            )
            self._open(now_s, then="error")
        else:
            events += self._step(now_s, request, pack_voltage_v, link_voltage_v, feedback, open_request, reset)
        return ContactorOutput(self.state, self.command, tuple(events))

    # -- one step of the machine -----------------------------------------------------------
    def _step(self, now, request, pack_v, link_v, feedback, open_request, reset) -> list[Event]:
        cfg, state = self.config, self.state
        if state == "standby":
            if request != "off" and now >= self._retry_at:
                self._enter("precharge", now)
                self.command = Contactors(main_negative=True)
        elif state == "precharge":
            return self._precharge(now, request, pack_v, link_v, feedback)
        elif state in ("normal", "charge"):
            if request == "off":
                self._open(now, then="standby")
            else:
                self.state = _RUNNING[request]
        elif state == "opening":
            if not any(astuple(feedback)) and now - self._phase_since >= cfg.weld_check_s:
                if link_v > cfg.weld_fraction * pack_v:  # a missing reading (NaN) leaves this to the feedback
                    self._enter("error", now)
                    return [
                        Event(
                            now,
                            "contactor_welded",
                            "critical",
                            f"link voltage {link_v:.1f} V still "
                            f"{link_v / pack_v:.0%} of the pack {cfg.weld_check_s:g} s after opening: both "
                            "main contactors appear welded",
                            value=link_v,
                        )
                    ]
                self._enter(self._after_opening, now)
        elif state == "error" and reset and not open_request and not any(astuple(feedback)):
            self.attempts, self._retry_at = 0, -math.inf
            self._enter("standby", now)
        return []

    def _precharge(self, now, request, pack_v, link_v, feedback) -> list[Event]:
        cfg, cmd = self.config, self.command
        if request == "off":
            self._open(now, then="standby")
            return []
        if not (math.isfinite(pack_v) and math.isfinite(link_v) and pack_v > 0):
            self._open(now, then="error")
            return [
                Event(
                    now,
                    "sensor_fault",
                    "critical",
                    f"precharge aborted: pack voltage {pack_v} V, link "
                    f"voltage {link_v} V (a missing reading cannot show the link is charged)",
                )
            ]
        if not cmd.precharge and not cmd.main_positive:  # step 1: main negative closing
            if feedback.main_negative:
                self.command, self._phase_since = Contactors(main_negative=True, precharge=True), now
        elif cmd.precharge and not cmd.main_positive:  # step 2: charging the link through the resistor
            if feedback.precharge and link_v >= cfg.precharge_fraction * pack_v:
                self.command = Contactors(main_positive=True, main_negative=True, precharge=True)
            elif now - self._phase_since > cfg.precharge_timeout_s:
                return self._precharge_failed(now, link_v, pack_v)
        elif cmd.precharge:  # step 3: main positive closing; then the precharge opens
            if feedback.main_positive:
                self.command = Contactors(main_positive=True, main_negative=True)
        elif not feedback.precharge:  # step 4: precharge open, done
            self.attempts = 0
            self._enter(_RUNNING[request], now)
        return []

    def _precharge_failed(self, now, link_v, pack_v) -> list[Event]:
        self.attempts += 1
        last = self.attempts > self.config.precharge_retries
        self._retry_at = now + self.config.retry_cooldown_s
        self._open(now, then="error" if last else "standby")
        then = "giving up" if last else f"retry after {self.config.retry_cooldown_s:g} s"
        return [
            Event(
                now,
                "precharge_failed",
                "critical" if last else "warning",
                f"link reached {link_v:.1f} V of {pack_v:.1f} V ({link_v / pack_v:.0%}, needed "
                f"{self.config.precharge_fraction:.0%}) within {self.config.precharge_timeout_s:g} s; "
                f"attempt {self.attempts}, {then}",
                value=link_v,
            )
        ]

    def _check_feedback(self, now, feedback: Contactors) -> list[Event]:
        """A contactor disagreeing with its command for longer than feedback_timeout_s: welded or not closing."""
        events = []
        for name, commanded, closed in zip(_NAMES, astuple(self.command), astuple(feedback)):
            if commanded == closed:
                self._mismatch_since.pop(name, None)
                self._reported.discard(name)
                continue
            since = self._mismatch_since.setdefault(name, now)
            if now - since > self.config.feedback_timeout_s and name not in self._reported:
                self._reported.add(name)
                kind, what = (
                    ("contactor_welded", "closed while commanded open")
                    if closed
                    else ("contactor_failed_to_close", "open while commanded closed")
                )
                events.append(
                    Event(
                        now,
                        kind,
                        "critical",
                        f"{name.replace('_', ' ')} contactor {what} for {now - since:.2f} s (auxiliary contact)",
                    )
                )
        return events

    def _enter(self, state: str, now: float) -> None:
        self.state, self._phase_since = state, now
        if state in ("standby", "error", "opening"):
            self.command = OPEN

    def _open(self, now: float, then: str) -> None:
        self._enter("opening", now)
        self._after_opening = then


@dataclass
class PrechargeCircuit:
    """The pack, the three contactors and the DC-link capacitor with its bleed, stepped exactly.

    With conductance G from the pack to the link (main positive and/or precharge resistor, in series with
    the main negative) and the bleed Gb across the link, the link voltage relaxes towards
    V_pack·G/(G + Gb) with time constant C/(G + Gb). A shorted link is a tiny bleed resistance; a broken
    precharge resistor is an infinite one.
    """

    pack_voltage_v: float = 400.0
    precharge_resistance_ohm: float = 40.0
    main_resistance_ohm: float = 0.01
    link_capacitance_f: float = 1.5e-3  # tau = 60 ms through the precharge resistor
    bleed_resistance_ohm: float = 2000.0  # passive discharge: tau = 3 s
    link_voltage_v: float = 0.0

    def step(self, closed: Contactors, dt_s: float) -> float:
        """Advance dt_s with the contactors as they physically are; return the link voltage."""
        g = 0.0
        if closed.main_negative:
            g = closed.main_positive / self.main_resistance_ohm + closed.precharge / self.precharge_resistance_ohm
        g_total = g + 1.0 / self.bleed_resistance_ohm
        if g_total > 0:  # else the link floats and keeps its charge
            target = self.pack_voltage_v * g / g_total
            decay = math.exp(-dt_s * g_total / self.link_capacitance_f)
            self.link_voltage_v = target + (self.link_voltage_v - target) * decay
        return self.link_voltage_v


__all__ = [
    "ContactorConfig",
    "ContactorController",
    "ContactorOutput",
    "Contactors",
    "OPEN",
    "PrechargeCircuit",
    "REQUESTS",
    "STATES",
]
