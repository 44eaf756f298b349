"""Background work with bounded queues: inference never runs on the audio path.

A ``Worker`` owns one thread and a job queue of fixed depth. ``submit`` never blocks: when the queue
is full the job is refused and the caller decides. Results (or a ``JobFailed``) come back through ``results``,
polled without blocking by ``step()``.
``cancel()`` sets the event that running jobs check between tokens and sentences.
Given an ``account`` (the conversation's ``CpuAccount``), every job's thread CPU is charged to ``model``.
A server may run every worker below the frame loop's priority (``lower_model_threads``).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

from ..cputime import CpuAccount

Job = Callable[[threading.Event], Any]

_model_nice = 0     # how far below the process's priority workers started from now on run (Linux)


def lower_model_threads(nice: int) -> None:
    """Workers started from now on (the model threads: recogniser, LLM, TTS, turn model) run ``nice``
    below the process's priority, so that when the cores are short the frame loops and the event loop
    (the audio path) get them first. Per thread on Linux (a thread id names one thread there); elsewhere
    it would renice the whole process, so nothing is done. Set once by a server (``ServerConfig.model_nice``)."""
    global _model_nice
    _model_nice = max(0, min(19, int(nice)))


def _lower_this_thread(nice: int) -> None:
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:     # a sandbox that forbids it: the thread keeps the process's priority
        pass


@dataclass(frozen=True)
class JobFailed:
    """What ``poll()`` returns for a job that raised: the conversation goes on, the error is reported."""

    error: BaseException
    traceback: str


class Worker:
    def __init__(self, name: str, depth: int = 1, account: CpuAccount | None = None, model: str = "") -> None:
        self.name = name
        self.depth = depth
        self.account = account
        self.model = model or name     # what its jobs' CPU is charged to ("stt", "llm", "tts", "turn")
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=depth)
        self.results: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._cancel = threading.Event()
        self._pending = 0              # submitted and not yet finished (queued or running)
        self._pending_lock = threading.Lock()
        self.max_depth_seen = 0        # the deepest the job queue got: measured, reported by the runner
        self.refused = 0               # submits turned away because the queue was full
        self._nice = _model_nice
        self._thread = threading.Thread(target=self._run, name=f"fullduplex-{name}", daemon=True)
        self._thread.start()

    def submit(self, job: Job, wait_s: float | None = None) -> bool:
        """Queue ``job``; with ``wait_s`` (worker threads only, never the audio path) wait for room."""
        try:
            if wait_s is None:
                self._jobs.put_nowait(job)
            else:
                self._jobs.put(job, timeout=wait_s)
        except queue.Full:
            self.refused += 1
            return False
        with self._pending_lock:
            self._pending += 1
        self.max_depth_seen = max(self.max_depth_seen, self._jobs.qsize())
        return True

    @property
    def running(self) -> bool:
        """The thread is still alive (after ``close()``: a job is stuck and did not stop in time)."""
        return self._thread.is_alive()

    def stats(self) -> dict:
        return {"depth": self.depth, "max_depth": self.max_depth_seen, "refused": self.refused}

    @property
    def idle(self) -> bool:
        """No job queued or running (results may still wait in ``results``)."""
        with self._pending_lock:
            return self._pending == 0

    def poll(self) -> Any | None:
        try:
            return self.results.get_nowait()
        except queue.Empty:
            return None

    def cancel(self) -> None:
        """Stop the running job (at its next check) and drop the queued ones."""
        self._cancel.set()
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
            with self._pending_lock:
                self._pending -= 1

    def _run(self) -> None:
        _lower_this_thread(self._nice)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._cancel.clear()
            try:
                with self.account.measure(self.model) if self.account is not None else nullcontext():
                    result = job(self._cancel)
                if result is not None:
                    self._hand_back(result)
            except Exception as e:  # a failed turn is reported, the conversation goes on
                self._hand_back(JobFailed(e, traceback.format_exc(limit=4)))
            finally:
                with self._pending_lock:
                    self._pending -= 1

    def _hand_back(self, result: Any) -> None:
        """Wait for room in ``results`` (the conversation polls it every frame) unless cancelled: a
        conversation that ended with an unread result closes its workers, and a thread waiting on a full
        queue for good would outlive it (a leaked thread per such call on a long-running server)."""
        while not self._cancel.is_set():
            try:
                self.results.put(result, timeout=0.05)
                return
            except queue.Full:
                continue

    def close(self, timeout: float = 5.0) -> None:
        self.cancel()
        self._jobs.put(None)
        self._thread.join(timeout)
