"""The model stack: what an agent loads once and every conversation on it uses.

Shared between conversations (each serialises itself with a lock where the backend needs it):
- STT (Moonshine / Whisper): one native model; each conversation opens its own *stream* on it;
- LLM (llama.cpp, or an endpoint): one context, one generation at a time (an endpoint: concurrent);
- TTS (Piper / espeak-ng): one ONNX session, one synthesis at a time;
- the turn model's trees and Smart Turn's ONNX session (each conversation gets its own per-pause cache);
- the backchannel clips (audio only: each conversation picks its own next clip).
Per conversation: the VAD (Silero's recurrent state lives in its small native object).

Loading is lazy, so an agent that needs no LLM never pays for one; ``Agent.prepare`` loads what its
architecture uses before any call starts. ``builds`` lists what was loaded or synthesised, in order:
the test harness checks that nothing is added to it once conversations run.
"""

from __future__ import annotations

import copy
import sys
import threading

from ..config import Config
from ..errors import UserError
from ..models.llm import LanguageModel, load_llm
from ..models.stt import SpeechToText, load_stt
from ..models.tts import TextToSpeech, load_tts
from ..models.vad import SileroVad


class ModelStack:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._lock = threading.RLock()
        self._loaded: dict[str, object] = {}
        self.builds: list[str] = []

    def _get(self, name: str, build):
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = build()
                self.builds.append(name)
            return self._loaded[name]

    def sharing(self) -> dict:
        """How the calls have shared the loaded models so far (``/api/status``): answers served before
        drafts, contexts kept and brought back, pieces said again without synthesis."""
        return {name: model.sharing() for name, model in self._loaded.items() if hasattr(model, "sharing")}

    def vad(self) -> SileroVad:
        """A fresh VAD for one conversation (its recurrent state is per call)."""
        return SileroVad()

    @property
    def stt(self) -> SpeechToText:
        return self._get("stt", lambda: load_stt(self.cfg.stt))

    @property
    def llm(self) -> LanguageModel:
        return self._get("llm", lambda: load_llm(self.cfg.llm))

    @property
    def slow_llm(self) -> LanguageModel:
        """The parallel pair's slow model."""
        return self._get("slow_llm", lambda: load_llm(self.cfg.slow_llm))

    @property
    def tts(self) -> TextToSpeech:
        return self._get("tts", lambda: load_tts(self.cfg.tts))

    @property
    def backchannels(self):
        """Acknowledgement clips, synthesised once by the TTS (the duplex engine's backchannels)."""
        from .backchannels import BackchannelBank
        return self._get("backchannels", lambda: BackchannelBank(self.tts))

    @property
    def turn_model(self):
        """The trained predictive end-of-turn model, or None where it is not available."""
        return self._get("turn_model", lambda: _load_turn_model(self.cfg.turn.model))

    def with_turn_model(self, path: str) -> "ModelStack":
        """The same loaded models with another turn model file (the bench's leave-one-recording-out runs:
        each real scenario with a model that never heard its recording). Load the rest first."""
        twin = copy.copy(self)
        twin.cfg = self.cfg.with_(turn={"model": str(path)})
        twin._loaded = {k: v for k, v in self._loaded.items() if k != "turn_model"}
        twin.builds = []
        return twin

    def load_all(self) -> None:
        """Load the cascade's models now (start-up), so the first turn does not pay for loading; check endpoints."""
        self.vad()
        _ = self.stt, self.tts
        self.llm.check()


def _load_turn_model(path: str = ""):
    try:
        from ..turn.model import TurnPredictor
        predictor = TurnPredictor.load(path or None)
        predictor.warm()
        return predictor
    except (ImportError, UserError) as e:  # no trained model: the engine uses its text rule
        if path:   # a file the user named: a problem with it is an error, not a fallback
            raise
        print(f"fullduplex: note: the predictive turn model is unavailable ({e}); using the text rule",
              file=sys.stderr)
        return None
