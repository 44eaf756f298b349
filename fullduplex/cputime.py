"""CPU seconds per conversation and per model, measured in the thread that does the work.

Each conversation has one ``CpuAccount``. Work is charged with ``account.measure("llm")`` around it, in
the thread doing it, with ``time.thread_time()``: it counts this thread's CPU only, so waiting for a
shared model's lock (one llama.cpp context, one Piper session for all the conversations of an agent)
or for a free core costs nothing, and a shared model's work lands in the account of the conversation
whose thread asked for it.

Measurements nest: ``section("smart_turn")`` inside a job measured as "turn" charges Smart Turn's
CPU to smart_turn and only the rest to turn. A model wrapper calls ``section(name)`` without knowing
any conversation: it charges whichever account is measuring on this thread, or nothing.
"""

from __future__ import annotations

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
