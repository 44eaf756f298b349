"""How late the server's event loop runs: a task that asks to wake every ``PERIOD_S`` and records how much
later it woke (issue 17).

Every call's WebSocket reads and writes, and the Opus decoding of what its client sends, run on this one
loop. A session drops agent audio that has waited more than ``ServerConfig.max_output_s`` to be sent, so a
loop that does not run for that long drops frames of every call at once. Measured at 12 calls on 2 cores:
every run not held had the loop stopped for 0.87-2.12 s, with both cores busy (and, in the worst, the
hypervisor taking 8-15 % of them); held runs, at most 0.26 s. ``state()`` is in ``/api/status``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np

PERIOD_S = 0.05
KEPT = 12_000          # the latest ten minutes of wake-ups
STALL_S = (0.25, 0.5, 1.0)


class LoopLag:
    def __init__(self) -> None:
        self._lags: deque[float] = deque(maxlen=KEPT)
        self.worst_s = 0.0
        self.stalls = {s: 0 for s in STALL_S}   # wake-ups later than each bound, over the server's life
        self.latest: deque[tuple[float, float]] = deque(maxlen=20)   # (Unix time, lag) of the latest past the first bound

    async def run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(PERIOD_S)
            lag = max(0.0, time.monotonic() - asked - PERIOD_S)
            self._lags.append(lag)
            self.worst_s = max(self.worst_s, lag)
            for bound in STALL_S:
                self.stalls[bound] += lag > bound
            if lag > STALL_S[0]:   # when: to set beside what else the machine did then
                self.latest.append((round(time.time(), 2), round(lag, 3)))

    def state(self) -> dict:
        if not self._lags:       # not watched (a Ray replica's loop is Ray's) or not yet
            return {"watched": False}
        p50, p99 = np.percentile(list(self._lags), [50, 99])
        return {"watched": True, "p50_ms": round(1000 * p50, 1), "p99_ms": round(1000 * p99, 1),
                "worst_ms": round(1000 * self.worst_s, 1),
                "stalls": {f"over_{b:g}_s": n for b, n in self.stalls.items()}, "latest_stalls": list(self.latest)}
