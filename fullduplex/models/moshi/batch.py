"""Many Moshi conversations on one loaded model: B slots stepped together, one 80 ms frame at a time.

A ``MoshiBatch`` owns the model's streaming state for ``size`` conversations (Mimi and ``LMGen``
streaming with batch size B) and the one thread that steps it. A conversation takes a ``Slot``
(``join``; beyond B: ``Busy``), hands it whole 80 ms frames of user audio (``submit``, never
blocking) and polls its results (``poll``). The stepping thread runs, for every slot that has a frame,
*one* Mimi encode of a [B, 1, 1920] batch, *one* ``LMGen.step`` and *one* Mimi decode:

- **Join / leave.** A joining slot and a leaving one are reset with a per-element mask
  (``reset_streaming(mask)`` on Mimi and ``LMGen``) on the stepping thread before its next step: a
  joining conversation starts from a fresh state, exactly as a new single conversation. As in Moshi's
  own server, a conversation's first frame is not heard by the model (its server encodes it and
  restarts the encoder; here it is skipped, which leaves the same state).
- **Masks.** Slots without a frame (idle, stalled, still filling ``LMGen``'s delays) are masked out
  with Moshi's execution mask (``set_exec_mask``): their state does not move and the others' results
  do not depend on them. ``LMGen`` runs with ``support_out_of_sync`` so each slot fills its delays on
  its own (a slot's tokens are Moshi's "ungenerated" id until then: no audio, no text).
- **Timing.** A step runs as soon as every joined slot has a frame, or when the oldest waiting frame
  has waited ``max_wait_s`` (one frame): a stalled conversation never holds the others back by more
  than a frame. A batch slower than real time fills every slot's bounded inbox at the same rate, so
  every slot drops frames evenly (the conversation reports ``moshi.lag``), never one slot alone.
- **Warm-up** (CUDA graphs, the allocator, cuBLAS handles) runs on the stepping thread itself, a few
  full-batch steps of silence, before the batch accepts a conversation.

Sampling (``temp``/``top_k``) is the agent's, for every slot. Moshi's sampler draws every slot's
tokens from one torch generator (no per-element generator), so a seed makes a conversation
reproducible only when it runs alone in its batch (the batch reseeds when a conversation joins an
empty batch); ``temp=0`` (greedy) makes every slot deterministic whatever the others do.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import Busy, UserError
from .load import MoshiModel, require_torch, start_streaming

MAX_AUTO_SLOTS = 64          # measured on an H200 (7B, bf16): B=64 steps in 44 ms p50 of an 80 ms frame
SLOT_MARGIN = 1.25           # per-slot memory = streaming state x this + SLOT_EXTRA_BYTES (activations)
SLOT_EXTRA_BYTES = 64 << 20
RESERVE_FRACTION = 0.10      # of the card's memory kept free (CUDA graphs, fragmentation, other processes)


@dataclass
class FrameOut:
    """What the batch made of one Moshi frame of one slot's user audio."""

    index: int
    audio: np.ndarray | None          # 24 kHz agent audio (None: the model produced none yet)
    text_ids: list[int] = field(default_factory=list)
    encode_ms: float = 0.0            # the batch's step (all slots together)
    lm_ms: float = 0.0
    decode_ms: float = 0.0
    wait_ms: float = 0.0              # time in the slot's inbox before the step took it
    batch: int = 0                    # slots stepped together with this one (itself included)

    @property
    def compute_ms(self) -> float:
        return self.encode_ms + self.lm_ms + self.decode_ms


@dataclass(frozen=True)
class StepFailed:
    """What ``poll()`` returns for a frame whose batched step raised: the conversation reports it."""

    error: BaseException
    traceback: str


class Slot:
    """One conversation's place in the batch (shaped like a ``Worker`` for the queue reports)."""

    name = "moshi"

    def __init__(self, batch: "MoshiBatch", index: int, depth: int) -> None:
        self.batch, self.index, self.depth = batch, index, max(1, depth)
        self.inbox: deque[tuple[int, np.ndarray, float]] = deque()   # (frame index, 1920 samples, queued at)
        self.results: deque[Any] = deque()
        self.taken = 0                 # frames handed to the stepping thread so far (the first is skipped)
        self.running = 0               # frames in the step now running
        self.max_depth_seen = 0
        self.refused = 0
        self.open = True

    def submit(self, index: int, frame: np.ndarray, queued: float) -> bool:
        """Queue one whole frame; False (refused, counted) when the inbox is full: the batch is behind."""
        return self.batch._submit(self, index, frame, queued)

    def poll(self) -> Any | None:
        with self.batch._cond:
            return self.results.popleft() if self.results else None

    @property
    def idle(self) -> bool:
        """No frame waiting or being stepped (results may still wait in ``poll``)."""
        with self.batch._cond:
            return not self.inbox and not self.running

    def stats(self) -> dict:
        return {"depth": self.depth, "max_depth": self.max_depth_seen, "refused": self.refused}

    def close(self) -> None:
        self.batch.leave(self)


def percentile_ms(values, q: float) -> float:
    """A percentile of times in ms, rounded for reports (0.0 for none)."""
    return round(float(np.percentile(values, q)), 2) if len(values) else 0.0


@dataclass
class BatchStats:
    steps: int = 0
    frames: int = 0                # slot-frames stepped
    joined: int = 0
    refused: int = 0               # joins refused (every slot taken)
    failed: int = 0
    step_ms: deque = field(default_factory=lambda: deque(maxlen=20000), repr=False)
    active: deque = field(default_factory=lambda: deque(maxlen=20000), repr=False)

    def summary(self) -> dict:
        ms = list(self.step_ms)
        return {"steps": self.steps, "frames": self.frames, "joined": self.joined, "refused": self.refused,
                "failed": self.failed, "step_p50_ms": percentile_ms(ms, 50), "step_p90_ms": percentile_ms(ms, 90),
                "step_p99_ms": percentile_ms(ms, 99),
                "step_max_ms": round(max(ms), 2) if ms else 0.0,
                "active_mean": round(float(np.mean(self.active)), 2) if self.active else 0.0}


class MoshiBatch:
    """One model, ``size`` slots, one stepping thread (started here, warmed before this returns)."""

    def __init__(self, model: MoshiModel, size: int, sampling: dict | None = None, seed: int | None = None,
                 max_wait_s: float | None = None, warmup_steps: int = 3) -> None:
        if size < 1:
            raise UserError(f"a Moshi batch needs at least one slot, not {size}")
        self._torch = require_torch()
        self.model, self.size, self.seed = model, size, seed
        self.frame_s = model.frame_s
        self.max_wait_s = self.frame_s if max_wait_s is None else max_wait_s
        self.gen = start_streaming(model, dict(sampling or {}), batch_size=size, out_of_sync=True)
        self.stats = BatchStats()
        self._slots: list[Slot | None] = [None] * size
        self._cond = threading.Condition()
        self._resets: set[int] = set()
        self._reseed = False
        self._stop = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(warmup_steps,), name="fullduplex-moshi-batch",
                                        daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise UserError(f"the Moshi batch failed to warm up: {type(self._error).__name__}: {self._error}")

    # -- conversations come and go (any thread) ------------------------------------------------------
    @property
    def active(self) -> int:
        with self._cond:
            return sum(s is not None for s in self._slots)

    def join(self, depth: int = 2) -> Slot:
        """A free slot, reset before its first step; ``Busy`` when all ``size`` are taken."""
        with self._cond:
            if self._stop:
                raise UserError("the Moshi batch is closed")
            free = next((i for i, s in enumerate(self._slots) if s is None), None)
            if free is None:
                self.stats.refused += 1
                raise Busy(f"all {self.size} Moshi slot(s) of this model are in use (--moshi-slots): "
                           "try again when a conversation ends")
            if self.seed is not None and not any(self._slots):
                self._reseed = True       # alone in the batch: its sampling is reproducible
            slot = Slot(self, free, depth)
            self._slots[free] = slot
            self._resets.add(free)
            self.stats.joined += 1
            self._cond.notify_all()
            return slot

    def leave(self, slot: Slot) -> None:
        """Free the slot (reset, masked out from the next step on); its frames not yet stepped are dropped."""
        with self._cond:
            if not slot.open:
                return
            slot.open = False
            slot.inbox.clear()
            if self._slots[slot.index] is slot:
                self._slots[slot.index] = None
                self._resets.add(slot.index)
            self._cond.notify_all()

    def _submit(self, slot: Slot, index: int, frame: np.ndarray, queued: float) -> bool:
        with self._cond:
            if not slot.open or len(slot.inbox) >= slot.depth:
                slot.refused += 1
                return False
            slot.inbox.append((index, frame, queued))
            slot.max_depth_seen = max(slot.max_depth_seen, len(slot.inbox))
            self._cond.notify_all()
            return True

    def close(self) -> None:
        """Stop the stepping thread (the model stays loaded; a new batch may stream on it)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(10)

    def summary(self) -> dict:
        return {"slots": self.size, "active": self.active, **self.stats.summary()}

    # -- the stepping thread -------------------------------------------------------------------------
    def _run(self, warmup_steps: int) -> None:
        try:
            self._warmup(warmup_steps)
        except BaseException as e:  # reported by the constructor
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    work, wait = self._take()
                    if work is not None:
                        break
                    self._cond.wait(wait)
            self._step(*work)

    def _take(self) -> tuple[tuple | None, float | None]:
        """Under the lock: (resets, reseed, frames) to step now, or (None, seconds to wait)."""
        joined = [s for s in self._slots if s is not None]
        ready = [s for s in joined if s.inbox]
        if ready and len(ready) < len(joined):
            waited = time.perf_counter() - min(s.inbox[0][2] for s in ready)
            if waited < self.max_wait_s:       # wait (at most a frame) for the others' frames
                return None, self.max_wait_s - waited
        if not ready and not self._resets:
            return None, None
        frames = []
        for s in ready:
            index, frame, queued = s.inbox.popleft()
            frames.append((s, index, frame, queued, s.taken == 0))
            s.taken += 1
            s.running += 1
        resets, self._resets = self._resets, set()
        reseed, self._reseed = self._reseed, False
        return (resets, reseed, frames), None

    def _step(self, resets: set[int], reseed: bool, frames: list) -> None:
        torch, t0 = self._torch, time.perf_counter()
        outs: dict[int, Any] = {}
        try:
            with torch.no_grad():
                if resets:
                    mask = torch.zeros(self.size, dtype=torch.bool)
                    mask[sorted(resets)] = True
                    self.model.mimi.reset_streaming(mask)
                    self.gen.reset_streaming(mask)
                if reseed and self.seed is not None:
                    torch.manual_seed(self.seed)
                run = [f for f in frames if not f[4]]
                for slot, index, _, queued, first in frames:
                    if first:   # as Moshi's server: the first frame is, for the model, in the past
                        outs[slot.index] = FrameOut(index, None, wait_ms=(t0 - queued) * 1000)
                if run:
                    outs.update(self._compute(run, t0))
        except Exception as e:  # every slot of this step is told; the batch goes on
            failed = StepFailed(e, traceback.format_exc(limit=6))
            outs = {f[0].index: failed for f in frames}
            self.stats.failed += 1
        with self._cond:
            for slot, *_ in frames:
                slot.running -= 1
                if slot.open:
                    slot.results.append(outs[slot.index])

    def _compute(self, run: list, t0: float) -> dict[int, FrameOut]:
        torch, m, B = self._torch, self.model, self.size
        cuda = m.device.type == "cuda"
        sync = (lambda: torch.cuda.synchronize(m.device)) if cuda else (lambda: None)
        x = np.zeros((B, 1, m.frame_size), np.float32)
        enc = torch.zeros(B, dtype=torch.bool)
        for slot, _, frame, _, _ in run:
            x[slot.index, 0] = frame
            enc[slot.index] = True
        m.mimi.set_exec_mask(enc)
        codes = m.mimi.encode(torch.from_numpy(x).to(m.device))
        sync()
        t1 = time.perf_counter()
        self.gen.set_exec_mask(enc)
        tokens = self.gen.step(codes[:, :, :1])
        text = tokens[:, 0, 0].cpu()
        t2 = time.perf_counter()
        ok = enc & (text >= 0)          # a slot still filling the model's delays gets "ungenerated" ids
        pcm = None
        if bool(ok.any()):
            audio_tokens = tokens[:, 1:].clone()
            audio_tokens[~ok.to(m.device)] = 0     # masked out of the decode; any valid id will do
            m.mimi.set_exec_mask(ok)
            pcm = m.mimi.decode(audio_tokens)[:, 0].float().cpu().numpy()
        t3 = time.perf_counter()
        self.stats.steps += 1
        self.stats.frames += len(run)
        self.stats.step_ms.append((t3 - t0) * 1000)
        self.stats.active.append(len(run))
        times = {"encode_ms": (t1 - t0) * 1000, "lm_ms": (t2 - t1) * 1000, "decode_ms": (t3 - t2) * 1000}
        outs = {}
        for slot, index, _, queued, _ in run:
            b = slot.index
            out = FrameOut(index, None, wait_ms=(t0 - queued) * 1000, batch=len(run), **times)
            if ok[b]:
                out.text_ids.append(int(text[b]))
                out.audio = pcm[b].astype(np.float32, copy=True)
            outs[b] = out
        return outs

    def _warmup(self, steps: int) -> None:
        """Full-batch steps of silence on this thread, the masks set as in a real step (so CUDA graphs of
        every call are captured here), then every slot reset: the first real frame is as fast as the rest."""
        torch, m, B = self._torch, self.model, self.size
        everyone = torch.ones(B, dtype=torch.bool)
        with torch.no_grad():
            for _ in range(steps):
                m.mimi.set_exec_mask(everyone)
                codes = m.mimi.encode(torch.zeros(B, 1, m.frame_size, device=m.device))
                self.gen.set_exec_mask(everyone)
                tokens = self.gen.step(codes[:, :, :1])
                m.mimi.set_exec_mask(everyone)
                m.mimi.decode(tokens[:, 1:].clamp(min=0)).cpu()   # "ungenerated" ids while the delays fill
            if m.device.type == "cuda":
                torch.cuda.synchronize(m.device)
            m.mimi.reset_streaming()
            self.gen.reset_streaming()


# -- how many slots fit ----------------------------------------------------------------------------------
def streaming_state_bytes(model: MoshiModel, gen: Any = None) -> int:
    """Bytes of tensors held in the streaming states of Mimi, the LM (and ``gen``): per slot at batch 1."""
    torch = require_torch()
    seen: set[int] = set()

    def tensors(value, depth=0):
        if isinstance(value, torch.Tensor):
            if id(value) not in seen:
                seen.add(id(value))
                yield value.numel() * value.element_size()
        elif depth < 2 and hasattr(value, "__dict__"):
            for v in vars(value).values():
                yield from tensors(v, depth + 1)

    total = 0
    for module in (model.mimi, model.lm, gen):
        if module is None:
            continue
        for _, state in module.get_streaming_state().items():
            if state is not None:
                total += sum(tensors(state))
    return total


def slots_for_memory(free_bytes: int, total_bytes: int, per_slot_bytes: int, cap: int = MAX_AUTO_SLOTS) -> int:
    """Slots that fit in ``free_bytes`` (after the weights are loaded), keeping ``RESERVE_FRACTION`` of the
    card free; at least 1, at most ``cap`` (beyond ~64 the step itself, not memory, is the limit on an H200)."""
    usable = free_bytes - RESERVE_FRACTION * total_bytes
    return int(max(1, min(cap, usable // max(1, per_slot_bytes))))


def per_slot_bytes(model: MoshiModel) -> int:
    """A conservative estimate of one slot's memory: its streaming state (KV caches: ~1.6 GB for the 7B
    model) x ``SLOT_MARGIN`` + ``SLOT_EXTRA_BYTES`` for activations (~2.0 GB per slot for the 7B model;
    measured on an H200 at B=64: ~1.6-1.8 GB per slot beyond the weights)."""
    return int(streaming_state_bytes(model, model.gen) * SLOT_MARGIN + SLOT_EXTRA_BYTES)


def auto_slots(model: MoshiModel) -> int:
    """1 on a CPU; on CUDA, from the free memory once the weights are in (``slots_for_memory``)."""
    if model.device.type != "cuda":
        return 1
    torch = require_torch()
    free, total = torch.cuda.mem_get_info(model.device)
    return slots_for_memory(free, total, per_slot_bytes(model))
