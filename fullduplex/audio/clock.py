"""The conversation clock: the one time axis every event and both audio streams share.

Time 0 is the first sample of the user's stream. In real time the clock is the wall clock since the
start, and the runner feeds frame ``i`` when the clock reaches ``i * frame``; a worker that finishes
at wall time ``w`` stamps its event ``w``, so latencies include real compute. The virtual clock moves
only when the runner advances it: for deterministic tests of timing logic.
"""

from __future__ import annotations

import threading
import time


class RealClock:
    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def restart(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        """Wait until ``t``; False if ``stop`` was set first."""
        delay = t - self.now()
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            time.sleep(delay)
        return True


class VirtualClock:
    def __init__(self) -> None:
        self._t = 0.0
        self._lock = threading.Lock()

    def restart(self) -> None:
        with self._lock:
            self._t = 0.0

    def now(self) -> float:
        with self._lock:
            return self._t

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        with self._lock:
            self._t = max(self._t, t)
        return True


Clock = RealClock | VirtualClock
