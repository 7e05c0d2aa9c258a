"""The running BMS: a loop of source → BMS → vehicle interface, at the source's rate or faster.

The loop runs in its own thread and publishes each sample's VSS values to the hub that the
VISS server reads; the server's set requests reach `Bms.actuate` through the hub. The BMS's
non-volatile state is saved to the store every minute of vehicle time and on stop.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from ..vehicle.hub import SignalHub
from ..vehicle.store import Store
from .bms import Bms

log = logging.getLogger(__name__)
NV_KEY = "bms"
NV_PERIOD_S = 60.0
MAX_FAILURES = 10


class BmsLoop:
    def __init__(self, source, bms: Bms, hub: SignalHub, store: Store | None = None, speed: float = 1.0, sink=None):
        if not speed > 0:
            raise ValueError(f"--speed must be positive, got {speed}")
        self.source, self.bms, self.hub, self.store, self.speed, self.sink = source, bms, hub, store, speed, sink
        self.stop_event = threading.Event()
        self.samples = 0
        self.failures = 0  # samples in a row that could not be processed
        self.thread = threading.Thread(target=self._run, name="openbms-bms", daemon=True)
        hub.set_actuator_handler(bms.actuate)

    def start(self) -> "BmsLoop":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
        self.save()
        bus = getattr(self.source, "bus", None)
        if bus is not None:
            bus.shutdown()

    def save(self) -> None:
        if self.store is not None and self.bms.last is not None:
            self.store.save_nv(NV_KEY, self.bms.nv_state())

    def _run(self) -> None:
        start, first_t, last_saved = time.monotonic(), None, None
        while not self.stop_event.is_set():
            sample = self.source.next_sample()
            if sample is None:
                if getattr(self.source, "finite", False):
                    log.info("the source has ended after %d samples", self.samples)
                    break
                continue  # a bus that is quiet for now
            if not np.isfinite(sample.cell_voltage_v).any():
                log.warning("sample at %.1f s has no cell voltage yet: waiting for the cell monitors", sample.time_s)
                continue
            first_t = sample.time_s if first_t is None else first_t
            due = start + (sample.time_s - first_t) / self.speed
            delay = due - time.monotonic()
            if delay > 0 and self.stop_event.wait(delay):
                break
            try:
                output, values = self.bms.step(sample)
                self.source.apply(output, self.bms.bleed_a, self.bms.conditioning)
                if self.sink is not None:
                    self.sink.send(output)
                self.hub.publish(values)
            except Exception:  # one bad sample (a NaN current, a time going back) must not stop the BMS
                self.failures += 1
                log.exception("sample at %.1f s skipped (%d in a row)", sample.time_s, self.failures)
                if self.failures >= MAX_FAILURES:
                    log.error("the BMS stops: %d samples in a row failed", self.failures)
                    break
                continue
            self.failures = 0
            self.samples += 1
            if last_saved is None or sample.time_s - last_saved >= NV_PERIOD_S:
                self.save()
                last_saved = sample.time_s
        self.save()
