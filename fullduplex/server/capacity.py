"""How many sessions one server holds: derived from what a conversation is measured to cost.

Every conversation counts its own CPU by model (``cputime.CpuAccount``: recogniser, turn model, LLM,
TTS, VAD, Opus), in the threads that do the work. One conversation's cost ``c`` (CPU-seconds per
second of conversation) is the mean over all the conversation time measured so far, the sessions held
now and the ones that ended, with ``assumed_session_cpu`` counted as ``assumed_weight_s`` of it: before
anything is measured that is the estimate, and a quiet first minute cannot open the doors. The limit is

    floor(cores * cpu_target / c), at least 1, at most derived_max_sessions

and a client beyond it is refused with 'busy' (0x05, close 1013) before the held calls slow down.
Held calls are never cut when the estimate rises: only new ones are refused. ``--max-sessions``
(``ServerConfig.max_sessions``) overrides it; an agent with its own limit (Moshi's slots) wins.

The models' sections are not all a call costs its server: the event loop (WebSocket, Ogg pages), every
session's frame thread and the interpreter around them take 15-30 % more (2 cores, 8-10 two-turn calls:
0.137 accounted against 0.15-0.18 CPU-s/s of the whole process; issue 17). So ``c`` is scaled by the
process's CPU over the accounted CPU, both counted while sessions are held (``process_cpu``); a limit
from the accounted cost alone admitted the call that made the box fall behind its frame clock.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from .config import ServerConfig


def machine_cores() -> int:
    """The CPUs this process may run on (a container's or taskset's share, not the whole machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Estimate:
    cost: float            # CPU-s per s of one conversation, the process's overhead included
    measured_s: float      # conversation seconds behind it (the assumption's weight not included)
    limit: int             # sessions that fit
    overhead: float = 1.0  # the process's CPU over the sessions' accounted CPU (>= 1), while sessions are held


class SessionCost:
    """The running measurement: ended sessions' totals here, held ones read live by the caller."""

    MIN_ACCOUNTED_S = 10.0  # accounted CPU-seconds before the process's overhead is trusted

    def __init__(self, scfg: ServerConfig, process_cpu: Callable[[], float] = time.process_time) -> None:
        self.scfg = scfg
        self.cores = scfg.cpu_cores or machine_cores()
        self._lock = threading.Lock()
        self._cpu_s = 0.0          # accounted CPU of the sessions that ended
        self._conversation_s = 0.0
        self._process_cpu = process_cpu
        self._last: tuple[float, float, bool] | None = None   # (process CPU, all accounted CPU, sessions held)
        self._process_s = self._accounted_s = 0.0              # summed over the spans with sessions held

    def add_ended(self, cpu_s: float, conversation_s: float) -> None:
        with self._lock:
            self._cpu_s += cpu_s
            self._conversation_s += conversation_s

    def estimate(self, live: Iterable[tuple[float, float]] = ()) -> Estimate:
        """``live``: (accounted CPU s, conversation s) of each session held now."""
        c = self.scfg
        live = list(live)
        with self._lock:
            cpu, secs = self._cpu_s, self._conversation_s
            for cpu_s, conversation_s in live:
                cpu, secs = cpu + cpu_s, secs + conversation_s
            overhead = self._overhead(cpu, held=bool(live))
        weight = c.assumed_weight_s
        cost = (cpu + c.assumed_session_cpu * weight) / (secs + weight) if secs + weight > 0 else c.assumed_session_cpu
        cost *= overhead
        return Estimate(cost, secs, derived_limit(self.cores, c.cpu_target, cost, c.derived_max_sessions), overhead)

    def _overhead(self, accounted: float, held: bool) -> float:
        """The process's CPU over the accounted CPU, summed over the spans between two estimates with
        sessions held at both ends (``accounted``: every session's CPU so far, which only grows): model
        loading and idle time are no call's cost."""
        now = (self._process_cpu(), accounted, held)
        if self._last is not None and held and self._last[2]:
            self._process_s += max(now[0] - self._last[0], 0.0)
            self._accounted_s += max(now[1] - self._last[1], 0.0)
        self._last = now
        if self._accounted_s < self.MIN_ACCOUNTED_S:
            return 1.0
        return min(max(self._process_s / self._accounted_s, 1.0), 3.0)   # a stray spike cannot close the doors


def derived_limit(cores: float, cpu_target: float, cost: float, ceiling: int) -> int:
    if cost <= 0:
        return ceiling
    return max(1, min(ceiling, math.floor(cores * cpu_target / cost + 1e-9)))
