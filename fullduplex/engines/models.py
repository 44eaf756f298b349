"""The model stack: loaded once, shared by every agent and every session of a process.

Stateless-per-call models (STT, LLM, TTS) are shared and serialise themselves with a lock; stateful
streaming models (VAD) are made fresh for each session. Loading is lazy, so an agent that needs no
LLM never pays for one.
"""

from __future__ import annotations

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
        self._lock = threading.Lock()
        self._stt: SpeechToText | None = None
        self._llm: LanguageModel | None = None
        self._slow_llm: LanguageModel | None = None
        self._tts: TextToSpeech | None = None
        self._backchannels = None
        self._turn_model = None
        self._turn_model_loaded = False

    def vad(self) -> SileroVad:
        return SileroVad()

    @property
    def stt(self) -> SpeechToText:
        with self._lock:
            if self._stt is None:
                self._stt = load_stt(self.cfg.stt)
            return self._stt

    @property
    def llm(self) -> LanguageModel:
        with self._lock:
            if self._llm is None:
                self._llm = load_llm(self.cfg.llm)
            return self._llm

    @property
    def slow_llm(self) -> LanguageModel:
        """The parallel pair's slow model; the same instance as ``llm`` when configured identically."""
        with self._lock:
            if self._slow_llm is None:
                self._slow_llm = load_llm(self.cfg.slow_llm)
            return self._slow_llm

    @property
    def tts(self) -> TextToSpeech:
        with self._lock:
            if self._tts is None:
                self._tts = load_tts(self.cfg.tts)
            return self._tts

    @property
    def backchannels(self):
        """Acknowledgement clips, synthesised once by the TTS (the duplex engine's backchannels)."""
        from .backchannels import BackchannelBank
        tts = self.tts
        with self._lock:
            if self._backchannels is None:
                self._backchannels = BackchannelBank(tts)
            return self._backchannels

    @property
    def turn_model(self):
        """The trained predictive end-of-turn model, or None where it is not available."""
        with self._lock:
            if not self._turn_model_loaded:
                self._turn_model_loaded = True
                try:
                    from ..turn.model import TurnPredictor
                    self._turn_model = TurnPredictor.load()
                except (ImportError, UserError) as e:  # no trained model: the engine uses its text rule
                    import sys
                    print(f"fullduplex: note: the predictive turn model is unavailable ({e}); "
                          "using the text rule", file=sys.stderr)
            return self._turn_model

    def load_all(self) -> None:
        """Load every model now (start-up), so the first turn does not pay for loading; check endpoints."""
        self.vad()
        _ = self.stt, self.tts
        self.llm.check()
