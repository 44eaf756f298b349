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
from contextlib import contextmanager
from typing import Callable, Iterator

_always: Callable[[], bool] = lambda: True   # noqa: E731
_URGENT: contextvars.ContextVar[Callable[[], bool]] = contextvars.ContextVar("fullduplex_urgent", default=_always)


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
        self._holder: tuple[int, str, float] | None = None   # (thread id, name, since): who has the model; None: free
        self._chosen: tuple[int, Callable[[], bool]] | None = None   # the waiter the free model goes to
        self._waiting: list[tuple[int, Callable[[], bool]]] = []
        self._arrivals = itertools.count()
        self.overtaken = 0     # hand-overs where an urgent request went before an earlier speculative one

    def __enter__(self) -> "SharedModelLock":
        me = (next(self._arrivals), _URGENT.get())
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
            self._holder = (thread.ident, thread.name, time.monotonic())
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._holder = None
            self._cond.notify_all()

    def state(self) -> dict:
        """Who holds the model, for how long, and what that thread is doing now (``/api/status``): a
        model held for long by a thread that is doing something else was never given back."""
        with self._cond:
            holder, waiting = self._holder, len(self._waiting)
        if holder is None:
            return {"held": False, "waiting": waiting}
        ident, name, since = holder
        frame = sys._current_frames().get(ident)
        now = traceback.format_stack(frame, limit=1)[0].strip().splitlines()[0] if frame is not None else "ended"
        return {"held": True, "waiting": waiting, "holder": name, "held_s": round(time.monotonic() - since, 2),
                "holder_now": now}

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
