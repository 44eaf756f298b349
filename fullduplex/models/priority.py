"""Who goes first at a model the conversations share (one llama.cpp context, one Piper session).

A conversation whose user is waiting for the answer goes before one drafting a reply the user may never
need; among equals, whoever asked first. The caller marks a draft's calls with ``speculative(until)``
around them; ``until`` is asked again at every hand-over, so a draft's request waiting for the model
becomes urgent the moment its conversation takes the floor. The model serialises itself with a
``SharedModelLock``, whose ``busy`` tells a conversation that a new request would wait (issue 17: under
load, a draft at an unlikely turn end is not worth the CPU).
"""

from __future__ import annotations

import contextvars
import itertools
import sys
import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

_always: Callable[[], bool] = lambda: True   # noqa: E731
_URGENT: contextvars.ContextVar[Callable[[], bool]] = contextvars.ContextVar("fullduplex_urgent", default=_always)
TURNS_KEPT = 2000     # turns at a model kept for its wait and hold statistics


@contextmanager
def speculative(until: Callable[[], bool] | None) -> Iterator[None]:
    """Calls into shared models inside this block (this thread) wait behind urgent ones until ``until()``.
    ``until`` None: not a draft, the block's calls keep the urgency they have."""
    if until is None:
        yield
        return
    token = _URGENT.set(until)
    try:
        yield
    finally:
        _URGENT.reset(token)


class SharedModelLock:
    """A lock that hands the model to the first urgent waiter, else to the first waiter (arrival order)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        # who has the model (None: free): thread id, name, since, urgent when it took it, seconds it waited
        self._holder: tuple[int, str, float, bool, float] | None = None
        self._chosen: tuple[int, Callable[[], bool]] | None = None   # the waiter the free model goes to
        self._waiting: list[tuple[int, Callable[[], bool]]] = []
        self._arrivals = itertools.count()
        self.overtaken = 0     # hand-overs where an urgent request went before an earlier speculative one
        # the latest turns at the model: (urgent when taken, seconds waited, seconds held), for state()
        self._turns: deque[tuple[bool, float, float]] = deque(maxlen=TURNS_KEPT)

    def __enter__(self) -> "SharedModelLock":
        me = (next(self._arrivals), _URGENT.get())
        asked = time.monotonic()
        with self._cond:
            self._waiting.append(me)
            while True:
                if self._holder is None:
                    # The next holder is chosen once, by whoever looks first at the free model, and kept
                    # until it takes it. Each waiter choosing for itself left a free model unused for good:
                    # urgency changes between two looks (a reply's audio runs low, then is topped up), so
                    # B saw A next, A saw B next, and both slept (every call of a loaded server, issue 17).
                    if self._chosen is None:
                        self._chosen = self._next()
                        self._cond.notify_all()
                    if self._chosen is me:
                        break
                self._cond.wait()
            if self._waiting[0] is not me:
                self.overtaken += 1
            self._waiting.remove(me)
            self._chosen = None
            thread = threading.current_thread()
            now = time.monotonic()
            self._holder = (thread.ident, thread.name, now, bool(me[1]()), now - asked)
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            if self._holder is not None:
                _, _, since, urgent, waited = self._holder
                self._turns.append((urgent, waited, time.monotonic() - since))
            self._holder = None
            self._cond.notify_all()

    def turns(self) -> dict:
        """Waits and holds of the latest turns at the model, urgent (a user waiting) and not (a draft, a
        reply with audio still to play): where a loaded server's answers wait (issue 17)."""
        with self._cond:
            turns = list(self._turns)
        out = {}
        for urgent, name in ((True, "urgent"), (False, "other")):
            mine = [t for t in turns if t[0] == urgent]
            if mine:
                waits, holds = sorted(t[1] for t in mine), sorted(t[2] for t in mine)
                pick = lambda xs, q: round(xs[min(len(xs) - 1, int(q * len(xs)))], 3)  # noqa: E731
                out[name] = {"n": len(mine), "wait_p50_s": pick(waits, 0.5), "wait_p90_s": pick(waits, 0.9),
                             "hold_p50_s": pick(holds, 0.5), "hold_p90_s": pick(holds, 0.9),
                             "held_s": round(sum(holds), 3)}
        return out

    def state(self) -> dict:
        """Who holds the model, for how long, and what that thread is doing now (``/api/status``): a
        model held for long by a thread that is doing something else was never given back."""
        with self._cond:
            holder, waiting = self._holder, len(self._waiting)
        if holder is None:
            return {"held": False, "waiting": waiting, "turns": self.turns()}
        ident, name, since, _, _ = holder
        frame = sys._current_frames().get(ident)
        now = traceback.format_stack(frame, limit=1)[0].strip().splitlines()[0] if frame is not None else "ended"
        return {"held": True, "waiting": waiting, "holder": name, "held_s": round(time.monotonic() - since, 2),
                "holder_now": now, "turns": self.turns()}

    def _next(self) -> tuple[int, Callable[[], bool]]:
        return next((w for w in self._waiting if w[1]()), self._waiting[0])

    @property
    def contended(self) -> bool:
        """An urgent request (a user waiting for the answer) waits: the holder, where it can stop, lets it in.
        Not for a waiting draft: its user may never need it, and each hand-over costs a context switch."""
        with self._cond:
            return any(until() for _, until in self._waiting)

    @property
    def busy(self) -> bool:
        """Someone holds or waits for the model: a request now would wait."""
        with self._cond:
            return self._holder is not None or bool(self._waiting)
