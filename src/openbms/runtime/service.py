"""The running BMS: a loop of source → BMS → vehicle interface, at the source's rate or faster.

The loop runs in its own thread and publishes each sample's VSS values to the hub that the
VISS server reads; the server's set requests reach `Bms.actuate` through the hub, which
commits each decision with the state it leaves. The BMS's non-volatile state is also saved
every minute (of vehicle time or of wall time, whichever comes first) and on stop.

The loop is supervised: nothing a sample, the source or the storage throws ends it. A failed
save is retried every few seconds, reported once as a storage fault on the alarm timeline
and cleared when the storage takes writes again; a failing source or sample is retried with
a growing pause, and the vehicle interface shows the data as stale meanwhile (the hub
stops hearing from the BMS), never as live.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from ..safety.events import Event
from ..vehicle.hub import SignalHub
from ..vehicle.store import Store
from .bms import NV_KEY, Bms

__all__ = ["NV_KEY", "BmsLoop"]
log = logging.getLogger(__name__)
NV_PERIOD_S = 60.0
SAVE_RETRY_S = 5.0
MAX_BACKOFF_S = 5.0
STORAGE_FAULT = "storage_fault"


class BmsLoop:
    def __init__(self, source, bms: Bms, hub: SignalHub, store: Store | None = None, speed: float = 1.0, sink=None):
        if not speed > 0:
            raise ValueError(f"--speed must be positive, got {speed}")
        self.source, self.bms, self.hub, self.store, self.speed, self.sink = source, bms, hub, store, speed, sink
        self.stop_event = threading.Event()
        self.samples = 0
        self.failures = 0  # samples (or source reads) in a row that failed
        self.storage_fault: str | None = None  # why the last save failed, until one succeeds
        self.thread = threading.Thread(target=self._run, name="openbms-bms", daemon=True)
        self._clock: tuple[float, float | None] = (0.0, None)  # (start monotonic, first sample time): the pace
        self._saved: tuple[float | None, float] = (None, 0.0)  # (sample time, monotonic) of the last save attempt
        hub.set_actuator_handler(bms.actuate)

    def start(self) -> "BmsLoop":
        self._clock = (time.monotonic(), None)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
        self.save()
        bus = getattr(self.source, "bus", None)
        if bus is not None:
            bus.shutdown()

    def save(self) -> bool:
        """Save the non-volatile state now; False (reported, not raised) when the storage refuses it."""
        if self.store is None or self.bms.last is None:
            return True
        try:
            self.bms.persist(lambda state: self.store.save_nv(NV_KEY, state))
        except Exception as exc:  # any storage failure: report it, keep the BMS running, retry
            self._storage_failed(str(exc))
            return False
        if self.storage_fault is not None:
            log.warning("storage recovered: the BMS state is saved again")
            self.bms.report(
                Event(
                    self._time(),
                    STORAGE_FAULT,
                    "warning",
                    f"storage recovered: the BMS state is saved again (it failed with: {self.storage_fault})",
                    cleared=True,
                )
            )
            self.storage_fault = None
        return True

    def _storage_failed(self, why: str) -> None:
        if self.storage_fault is None:  # report once per fault, not at every retry
            log.error("%s; the BMS keeps running and retries every %g s", why, SAVE_RETRY_S)
            self.bms.report(
                Event(
                    self._time(),
                    STORAGE_FAULT,
                    "warning",
                    f"{why}: settings and learned state "
                    "since then are lost if the BMS restarts; commands are refused meanwhile",
                )
            )
        self.storage_fault = why

    def _time(self) -> float:
        return self.bms.last.time_s if self.bms.last is not None else 0.0

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if not self._step():
                    break
                self.failures = 0
            except Exception:  # a bad sample (a NaN current, a time going back), a source that fails
                self.failures += 1
                log.exception("the BMS step failed (%d in a row); retrying", self.failures)
                if self.stop_event.wait(min(MAX_BACKOFF_S, 0.05 * 2 ** min(self.failures, 10))):
                    break
        self.save()

    def _step(self) -> bool:
        """One sample through the BMS; False once a finite source has ended."""
        sample = self.source.next_sample()
        if sample is None:
            if getattr(self.source, "finite", False):
                log.info("the source has ended after %d samples", self.samples)
                return False
            return True  # a bus that is quiet for now
        if not np.isfinite(sample.cell_voltage_v).any():
            log.warning("sample at %.1f s has no cell voltage yet: waiting for the cell monitors", sample.time_s)
            return True
        start, first_t = self._clock
        if first_t is None:
            first_t = sample.time_s
            self._clock = (start, first_t)
        delay = start + (sample.time_s - first_t) / self.speed - time.monotonic()
        if delay > 0 and self.stop_event.wait(delay):
            return True
        output, values = self.bms.step(sample)
        with self.bms.lock:  # the conditioning a command has committed, never one being committed
            conditioning = self.bms.conditioning
        self.source.apply(output, self.bms.bleed_a, conditioning)
        if self.sink is not None:
            self.sink.send(output)
        self.hub.publish(values)
        self.samples += 1
        self._save_when_due(sample.time_s)
        return True

    def _save_when_due(self, time_s: float) -> None:
        last_t, last_wall = self._saved
        wall = time.monotonic()
        period = SAVE_RETRY_S if self.storage_fault else NV_PERIOD_S
        if last_t is None or time_s - last_t >= NV_PERIOD_S or wall - last_wall >= period:
            self._saved = (time_s, wall)
            self.save()
