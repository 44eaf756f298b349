"""CPU seconds per conversation and per model, measured in the thread that does the work.

Each conversation has one ``CpuAccount``. Work is charged with ``account.measure("llm")`` around it, in
the thread doing it, with ``time.thread_time()``: it counts this thread's CPU only, so waiting for a
shared model's lock (one llama.cpp context, one Piper session for all the conversations of an agent)
or for a free core costs nothing, and a shared model's work lands in the account of the conversation
whose thread asked for it.

Measurements nest: ``section("smart_turn")`` inside a job measured as "turn" charges Smart Turn's
CPU to smart_turn and only the rest to turn. A model wrapper calls ``section(name)`` without knowing
any conversation: it charges whichever account is measuring on this thread, or nothing.

A model that also computes on native threads of its own (Moonshine's ONNX pool: as much CPU again as
the calling thread) declares them with ``HelperThreads``; their CPU is charged to the caller too.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import ContextManager, Iterator

_local = threading.local()   # this thread's open measurements: [account, model, CPU of nested ones]


def _open() -> list[list]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


class CpuAccount:
    """CPU seconds one conversation spent, by model ("stt", "llm", "tts", "turn", "smart_turn", "vad",
    "step" (the frame loop's own work), "opus"). Threads of the conversation add to it; anyone reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_model: dict[str, float] = {}

    @contextmanager
    def measure(self, model: str) -> Iterator[None]:
        """Charge this thread's CPU inside the block to ``model``, less what nested blocks charged."""
        stack = _open()
        entry = [self, model, 0.0]
        stack.append(entry)
        t0 = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - t0
            stack.pop()
            if stack:
                stack[-1][2] += spent      # the enclosing block does not pay for this one again
            self.charge(model, spent - entry[2])

    def charge(self, model: str, seconds: float) -> None:
        with self._lock:
            self._by_model[model] = self._by_model.get(model, 0.0) + max(seconds, 0.0)

    def by_model(self) -> dict[str, float]:
        with self._lock:
            return dict(self._by_model)

    @property
    def total_s(self) -> float:
        with self._lock:
            return sum(self._by_model.values())

    def summary(self, conversation_s: float) -> dict:
        """For stats and run.json: the total, CPU-s per s of conversation, and seconds by model (largest first)."""
        by = self.by_model()
        total = sum(by.values())
        return {"cpu_accounted_s": round(total, 4),
                "cpu_accounted_per_s": round(total / conversation_s, 4) if conversation_s > 0 else None,
                "cpu_by_model": {m: round(s, 4) for m, s in sorted(by.items(), key=lambda kv: -kv[1])}}


def section(model: str) -> ContextManager[None]:
    """Charge the block to ``model`` in the account measuring on this thread (a no-op when none is)."""
    stack = _open()
    return stack[-1][0].measure(model) if stack else nullcontext()


def native_threads() -> set[int]:
    """The kernel thread ids of this process (empty where /proc is not there)."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def _thread_clock(tid: int) -> int:
    """Linux's CPU-time clock of thread ``tid`` of this process (what glibc's pthread_getcpuclockid makes)."""
    return ((~tid) << 3) | 6


class HelperThreads:
    """Native threads a shared model computes on besides the caller's (e.g. an ONNX runtime's pool,
    made when the model loads), which ``thread_time()`` in the caller does not see. ``charged(model)``
    around each call, under the model's lock, charges their CPU during the call to the account measuring
    on the calling thread, and what they spent since the last call (spinning down, work left running)
    to the conversation that made that one: all of it lands on someone who asked."""

    def __init__(self, tids: set[int]) -> None:
        self.tids = sorted(tids)
        self._lock = threading.Lock()
        self._last: tuple[CpuAccount, str] | None = None
        self._mark = self._read()

    @classmethod
    def spawned_by(cls, build):
        """``(build(), HelperThreads of the threads it started)``: call it while nothing else starts threads."""
        before = native_threads()
        built = build()
        return built, cls(native_threads() - before)

    def _read(self) -> float:
        total = 0.0
        for tid in self.tids:
            try:
                total += time.clock_gettime(_thread_clock(tid))
            except OSError:     # the thread has ended
                pass
        return total

    def _settle(self) -> float:
        """Read the threads' CPU; return what they spent since the last reading."""
        now = self._read()
        spent, self._mark = now - self._mark, now
        return spent

    @contextmanager
    def charged(self, model: str) -> Iterator[None]:
        if not self.tids:
            yield
            return
        stack = _open()
        account = stack[-1][0] if stack else None
        with self._lock:
            between = self._settle()
            if self._last is not None:
                self._last[0].charge(self._last[1], between)
        try:
            yield
        finally:
            with self._lock:
                during = self._settle()
                if account is not None:
                    account.charge(model, during)
                self._last = (account, model) if account is not None else None
