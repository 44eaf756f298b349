"""Architecture 5 on a GPU: Kyutai's Moshi inside the two-stream runtime, many calls batched on one model.

One network hears the user's stream and speaks its own, 80 ms at a time, with a text "inner
monologue". Every conversation of an agent takes a *slot* of the process's one ``MoshiBatch`` for its
settings (``models/moshi/batch.py``): one loaded model, ``slots`` conversations, one stepping thread
that runs Mimi encode -> ``LMGen.step`` -> Mimi decode for all of them together. Beyond the slots a new
conversation is refused (``Busy``; the server answers "busy"). The runtime ticks faster (20 ms at
16 kHz), so:

- ``step()`` resamples the user's audio to 24 kHz and cuts it into Moshi frames (1920 samples); each
  frame goes to the slot's inbox (at most ``queue_frames``). If the batch falls behind, a frame that
  finds the inbox full is dropped and a ``moshi.lag`` event says so: latency never grows without bound,
  and every slot of a late batch drops at the same rate.
- Decoded audio comes back resampled to 16 kHz into a playout buffer of at most ``playout_frames``
  frames (older audio is dropped past that, also reported); ``step()`` plays it out a tick at a time
  and plays silence while nothing is ready.
- Each text token that is not padding becomes an ``agent.text`` event at the moment its frame's audio
  starts playing; ``moshi.step`` events carry the per-frame compute time (the batch's step) every 2 s
  and ``moshi.summary`` closes the session (frames run and dropped, compute percentiles, whether it
  kept real time).

Torch and ``moshi`` are imported only when an agent is prepared: importing this module is free.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from ..audio.frames import SAMPLE_RATE, silence
from ..audio.resample import StreamResampler
from ..config import Config
from ..models.moshi.batch import percentile_ms
from .base import Conversation
from .stack import ModelStack

REPORT_EVERY_S = 2.0      # how often a moshi.step event summarises the compute time of the frames since the last
CLOSE_WAIT_S = 0.5        # at the end of a call: how long its frames already handed to the batch may take
LAG_EVERY_S = 1.0         # at most one moshi.lag event per second of conversation (with counts)




class MoshiConversation(Conversation):
    name = "moshi"
    description = ("architecture 5: Kyutai's Moshi, one network for both streams with a text inner monologue "
                   "(needs a CUDA GPU for real time; --moshi-dir or a Hugging Face repo)")

    # -- life cycle ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, models: ModelStack, cfg: Config) -> None:
        """Load Moshi and start its batch (warmed on its stepping thread) before any call."""
        from ..models.moshi import batch_for
        batch_for(cfg.moshi)

    @classmethod
    def capacity(cls, cfg: Config) -> int | None:
        from ..models.moshi import batch_for
        return batch_for(cfg.moshi).size

    def __init__(self, *args) -> None:
        super().__init__(*args)
        from ..models.moshi import batch_for

        mc = self.cfg.moshi
        self.batch = batch_for(mc)
        self.model = m = self.batch.model
        self.slot = self.batch.join(depth=mc.queue_frames)   # Busy when every slot is taken
        self.slot_index = self.slot.index
        self._frame_s = m.frame_s
        self._out_frame = int(round(m.frame_s * SAMPLE_RATE))    # 16 kHz samples per Moshi frame
        self._to_moshi = StreamResampler(SAMPLE_RATE, m.sample_rate)
        self._from_moshi = StreamResampler(m.sample_rate, SAMPLE_RATE)
        self._inbox = np.zeros(0, np.float32)                    # 24 kHz user audio not yet a whole frame
        self._frames_in = 0                                      # Moshi frames cut from the user's stream
        self._playout = np.zeros(0, np.float32)                  # 16 kHz agent audio waiting to be played
        self._read_pos = 0                                       # absolute playout positions (samples)
        self._out_base: int | None = None                        # where the resampled agent stream begins
        self._out_chunks = 0                                     # Moshi frames of agent audio resampled so far
        self._marks: deque[tuple[int, str, int, int]] = deque()  # (position, text, frame, token) to announce
        self._max_playout = max(1, mc.playout_frames) * self._out_frame
        self.stats = {"run": 0, "dropped": 0, "trimmed_samples": 0, "underrun_samples": 0, "slow": 0,
                      "failed": 0, "text_tokens": 0}
        self._compute_ms: list[float] = []
        self._latency_ms: list[float] = []
        self._batched: list[int] = []
        self._window: list[float] = []
        self._next_report = REPORT_EVERY_S
        self._next_lag = 0.0
        self._lag_since = 0
        self._audible = False
        self.transcript: list[str] = []
        self.emit("moshi.model", t=0.0, source=m.source, device=str(m.device),
                  dtype=str(m.dtype).removeprefix("torch."), random_weights=m.random_weights,
                  load_s=round(m.load_s, 3), frame_ms=round(m.frame_s * 1000, 3), description=m.describe(),
                  slot=self.slot.index, slots=self.batch.size)

    def workers(self) -> list:
        return [self.slot]

    def _close(self) -> None:
        deadline = time.monotonic() + CLOSE_WAIT_S
        while not self.slot.idle and time.monotonic() < deadline:   # the frames already handed over
            time.sleep(0.002)
        while self._collect_one(None):
            pass
        self.batch.leave(self.slot)     # reset and masked out from the batch's next step
        self._summary()

    # -- the audio path -----------------------------------------------------------------------------
    def step(self, user_frame: np.ndarray, t: float) -> np.ndarray:
        fs = self.model.frame_size
        self._inbox = np.concatenate([self._inbox, self._to_moshi.push(user_frame)])
        while len(self._inbox) >= fs:
            frame, self._inbox = self._inbox[:fs].copy(), self._inbox[fs:]
            self._submit(frame, t)
        self._collect(t)
        return self._play(len(user_frame), t)

    def _submit(self, frame: np.ndarray, t: float) -> None:
        index = self._frames_in
        self._frames_in += 1
        if self.slot.submit(index, frame, time.perf_counter()):
            return
        self.stats["dropped"] += 1
        self._lag_since += 1
        if t >= self._next_lag:
            self.emit("moshi.lag", t=t, frame=index, dropped=self._lag_since, dropped_total=self.stats["dropped"],
                      reason="model behind real time: user frames dropped (queue full)", slot=self.slot.index)
            self._lag_since = 0
            self._next_lag = t + LAG_EVERY_S

    def _collect(self, t: float) -> None:
        while self._collect_one(t):
            pass

    def _collect_one(self, t: float | None) -> bool:
        """Take one result of the batch into the playout; False when none is waiting. ``t`` None: closing."""
        from ..models.moshi import StepFailed

        out = self.slot.poll()
        if out is None:
            return False
        if isinstance(out, StepFailed):
            self.stats["failed"] += 1
            self.emit("error", t=t, where="moshi", message=str(out.error))
            return True
        self._account(out, t)
        if out.audio is None or t is None:
            return True
        if self._out_base is None:
            self._out_base = self._read_pos + len(self._playout)
        # soxr streams without delay, so this chunk's first sample lands exactly here in the playout
        # (the resampler may hand it back a little later, in its own block sizes).
        position = self._out_base + self._out_chunks * self._out_frame
        self._out_chunks += len(out.audio) // self.model.frame_size
        audio = self._from_moshi.push(out.audio)
        for token in out.text_ids:
            piece = self.model.text_piece(token)
            if piece:
                self._marks.append((position, piece, out.index, token))
        self._playout = np.concatenate([self._playout, np.clip(audio, -1.0, 1.0)])
        excess = len(self._playout) - self._max_playout
        if excess > 0:   # never let latency pile up: the oldest audio goes
            self._playout = self._playout[excess:]
            self._read_pos += excess
            self.stats["trimmed_samples"] += excess
            self._announce(t, heard=False)
            self.emit("moshi.lag", t=t, trimmed_ms=round(1000 * excess / SAMPLE_RATE, 1),
                      reason="decoded audio arrived in a burst: the oldest was dropped to bound the latency")
        return True

    def _play(self, n: int, t: float) -> np.ndarray:
        out = silence(n)
        take = min(n, len(self._playout))
        if take:
            out[:take] = self._playout[:take]
            self._playout = self._playout[take:]
            self._audible = True
        if take < n and self._audible:
            self.stats["underrun_samples"] += n - take
        start, self._read_pos = self._read_pos, self._read_pos + take
        self._announce(t + n / SAMPLE_RATE, start)   # the frame returned now plays from the end of this one
        return out

    def _announce(self, t: float, start: int | None = None, heard: bool = True) -> None:
        """Text events for the tokens whose audio starts before the read position (at the sample it plays)."""
        while self._marks and self._marks[0][0] < self._read_pos:
            position, piece, index, token = self._marks.popleft()
            self.transcript.append(piece)
            self.stats["text_tokens"] += 1
            at = t if start is None else t + max(0, position - start) / SAMPLE_RATE
            extra = {} if heard else {"heard": False}   # its audio was dropped to bound the latency
            self.emit("agent.text", t=at, text=piece, frame=index, token=token,
                      input_t=round(index * self._frame_s, 6), **extra)

    def _account(self, out, t: float | None) -> None:
        self.stats["run"] += 1
        ms = out.compute_ms
        self._compute_ms.append(ms)
        self._latency_ms.append(out.wait_ms + ms)
        if out.batch:
            self._batched.append(out.batch)
        self._window.append(ms)
        if ms > self._frame_s * 1000:
            self.stats["slow"] += 1
        if t is not None and t >= self._next_report and self._window:
            self.emit("moshi.step", t=t, frames=len(self._window), p50_ms=percentile_ms(self._window, 50),
                      max_ms=round(max(self._window), 2), budget_ms=round(self._frame_s * 1000, 1),
                      slow_total=self.stats["slow"], dropped_total=self.stats["dropped"])
            self._window = []
            self._next_report = t + REPORT_EVERY_S

    def _summary(self) -> None:
        budget = self._frame_s * 1000
        c = self._compute_ms
        p90 = percentile_ms(c, 90)
        self.summary = {
            "frames_in": self._frames_in, "frames_run": self.stats["run"], "dropped": self.stats["dropped"],
            "failed": self.stats["failed"], "slow_frames": self.stats["slow"], "budget_ms": round(budget, 1),
            "compute_p50_ms": percentile_ms(c, 50), "compute_p90_ms": p90, "compute_max_ms": round(max(c), 2) if c else 0.0,
            "latency_p50_ms": percentile_ms(self._latency_ms, 50),
            "trimmed_ms": round(1000 * self.stats["trimmed_samples"] / SAMPLE_RATE, 1),
            "underrun_ms": round(1000 * self.stats["underrun_samples"] / SAMPLE_RATE, 1),
            "real_time": bool(c) and p90 <= budget and self.stats["dropped"] == 0,
            "text_tokens": self.stats["text_tokens"], "text": "".join(self.transcript).strip(),
            "device": str(self.model.device), "random_weights": self.model.random_weights,
            "slot": self.slot.index, "slots": self.batch.size,
            "batch_mean": round(float(np.mean(self._batched)), 2) if self._batched else 0.0,
        }
        self.emit("moshi.summary", **self.summary)
