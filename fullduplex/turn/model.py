"""The predictive turn model at run time: ``TurnPredictor.load().predict(audio_tail, transcript, silence_s)``.

Call it as often as you like while the user is silent (every frame is fine): within one pause the
audio signals are computed once and cached (keyed by the speech before the pause), so a repeated
call costs a dictionary look-up and a walk of the trees (~0.1-0.3 ms). The first call of a pause
costs ~3 ms (pitch tracking over 2 s). With the default model, the first call with at least
0.2 s of silence also runs Smart Turn v3.2 once (~30 ms on one idle core here, ~60 ms when the
cores are busy; ``last_smart_turn_ms`` says what it cost); the fast model
(``TurnPredictor.load(fast=True)``) never does. Pass ``smart_turn=`` to supply it from a worker.

One predictor per conversation (``for_conversation()``: shared trees and Smart Turn, its own per-pause
cache): the cache is not shared between threads.

``audio_tail``: 16 kHz mono float32 ending now, holding the pause so far and the speech before it:
at least 2 s + ``silence_s``, and 8 s + ``silence_s`` for Smart Turn's full window.
``transcript``: the user's current turn as the streaming recogniser has it now (punctuation kept).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..audio.frames import SAMPLE_RATE
from ..errors import UserError
from .features import pause_signals, vector
from .gbm import Trees
from .signals import NAN, audio_key, text_markers

MODEL_FORMAT = "fullduplex-turn-model"
DATA_DIR = Path(__file__).parent / "data"
DEFAULT_MODEL = DATA_DIR / "turn.json"         # the committed model
FAST_MODEL = DATA_DIR / "turn-fast.json"       # the committed model without Smart Turn
_CACHE = 16


class TurnPredictor:
    def __init__(self, spec: dict, path: Path | None = None, smart_turn=None, llm=None) -> None:
        if spec.get("format") != MODEL_FORMAT:
            raise UserError(f"{path or 'the model'} is not a fullduplex turn model (format {spec.get('format')!r})")
        self.spec = spec
        self.path = path
        self.version = str(spec["version"])
        self.trees = Trees.from_dict(spec["trees"])
        self.features = self.trees.features
        self.threshold = float(spec["threshold"])
        self.max_silence_s = float(spec["max_silence_s"])
        self.decision_start_s = float(spec["decision_start_s"])
        self.smart_turn_at_s = float(spec["smart_turn_at_s"])
        self.uses_smart_turn = "smart_turn" in self.features
        self.uses_llm = "llm_eou" in self.features
        self._smart_turn = smart_turn
        self._llm = llm
        self._pauses: OrderedDict[str, dict] = OrderedDict()
        self.last_smart_turn_ms: float | None = None   # cost of the last Smart Turn call, for the caller's metrics

    # -- loading -------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, fast: bool = False, smart_turn=None) -> "TurnPredictor":
        """The committed model (``fullduplex/turn/data/turn.json``; ``fast=True``: ``turn-fast.json``,
        no Smart Turn), or a model file written by ``fullduplex turn train``."""
        p = Path(path) if path else (FAST_MODEL if fast else DEFAULT_MODEL)
        if not p.exists():
            raise UserError(f"no turn model at {p}; run `fullduplex turn train --out {p}`")
        try:
            spec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{p} is not a readable turn model ({e}); retrain it with `fullduplex turn train`") from None
        return cls(spec, p, smart_turn=smart_turn)

    def for_conversation(self) -> "TurnPredictor":
        """A view for one conversation: the same trees and Smart Turn session, its own per-pause cache
        (the cache is not shared between threads)."""
        twin = copy.copy(self)
        twin._pauses = OrderedDict()
        twin.last_smart_turn_ms = None
        return twin

    def warm(self) -> None:
        """Load what the first pause would otherwise load (Smart Turn's session) and run one prediction."""
        if self.uses_smart_turn:
            self._smart()
        tail = np.zeros(int(3 * SAMPLE_RATE), np.float32)
        self.for_conversation().predict(tail, "hello.", max(0.3, self.smart_turn_at_s))

    def describe(self) -> str:
        t = self.spec.get("training", {})
        return (f"turn model v{self.version} ({self.path.name if self.path else 'in memory'}): "
                f"{len(self.trees.trees)} trees over {len(self.features)} features "
                f"[{', '.join(self.spec['groups'])}]; done when P >= {self.threshold:.2f} after "
                f">= {self.decision_start_s:.2f} s of silence, or after {self.max_silence_s:.1f} s; "
                f"trained on {t.get('pauses', '?')} pauses"
                + (f" (real ones from {', '.join(t['conversations'])})" if t.get("conversations") else " (synthetic)"))

    # -- signals -------------------------------------------------------------------------------------
    def _smart(self):
        if self._smart_turn is None:
            from ..models.smart_turn import shared_smart_turn
            self._smart_turn = shared_smart_turn()
        return self._smart_turn

    def _pause_state(self, audio: np.ndarray, silence_s: float) -> dict:
        key = audio_key(audio, silence_s)
        state = self._pauses.get(key)
        if state is None:
            end = len(audio) - int(round(max(silence_s, 0.0) * SAMPLE_RATE))
            state = pause_signals(audio[:max(end, 0)], "")
            state["smart_turn"] = NAN
            self._pauses[key] = state
            while len(self._pauses) > _CACHE:
                self._pauses.popitem(last=False)
        return state

    def signals(self, audio_tail: np.ndarray, transcript: str, silence_s: float,
                smart_turn: float | None = None) -> dict:
        """All signals for this moment (cached per pause), Smart Turn included when due."""
        audio = np.asarray(audio_tail, np.float32).reshape(-1)
        state = self._pause_state(audio, silence_s)
        if smart_turn is not None:
            state["smart_turn"] = float(smart_turn)
        elif self.uses_smart_turn and math.isnan(state["smart_turn"]) and silence_s >= self.smart_turn_at_s:
            cut = len(audio) - int(round((silence_s - self.smart_turn_at_s) * SAMPLE_RATE))
            t0 = time.perf_counter()
            state["smart_turn"] = self._smart().probability(audio[:cut])
            self.last_smart_turn_ms = (time.perf_counter() - t0) * 1000
        out = dict(state)
        out.update(text_markers(transcript))
        if self.uses_llm:
            if self._llm is None:
                from ..models.llm_eou import LlmEndOfUtterance
                self._llm = LlmEndOfUtterance()
            out["llm_eou"] = self._llm.probability(transcript)
        return out

    # -- the two calls the engine makes --------------------------------------------------------------
    def predict(self, audio_tail: np.ndarray, transcript: str, silence_s: float,
                smart_turn: float | None = None) -> float:
        """P(the user is done), given the audio up to now, the transcript so far and the silence so far.

        ``smart_turn``: pass Smart Turn's probability if you computed it elsewhere (e.g. a worker);
        otherwise the default model computes it itself once per pause.
        """
        t0 = time.perf_counter()
        s = self.signals(audio_tail, transcript, silence_s, smart_turn)
        # The decision is taken when this call returns: count the time spent in it as silence.
        effective = silence_s + (time.perf_counter() - t0)
        x = vector(s, effective, self.features, latency_s=0.0)
        if self.uses_smart_turn and math.isnan(s["smart_turn"]):
            x[self.features.index("smart_turn")] = NAN
        return self.trees.predict_one(x)

    def decision(self, prob: float, silence_s: float) -> bool:
        """True when the turn should be taken now."""
        if silence_s < self.decision_start_s - 1e-9:
            return False
        return prob >= self.threshold or silence_s >= self.max_silence_s - 1e-9

    def reset(self) -> None:
        self._pauses.clear()
