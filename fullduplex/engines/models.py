"""The model stack: loaded once, shared by every agent and every session of a process.

Stateless-per-call models (STT, LLM, TTS) are shared and serialise themselves with a lock; stateful
streaming models (VAD) are made fresh for each session. Loading is lazy, so an agent that needs no
LLM never pays for one.
"""

from __future__ import annotations

import threading

from ..config import Config
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

    def load_all(self) -> None:
        """Load every model now (start-up), so the first turn does not pay for loading; check endpoints."""
        self.vad()
        _ = self.stt, self.tts
        self.llm.check()
