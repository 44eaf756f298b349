"""The cascade: VAD -> end of turn -> speech-to-text -> LLM -> text-to-speech -> playback.

Architecture 1, ``sequential``, is the cascade as the essay first built it: a fixed silence threshold
ends the turn, the whole utterance is transcribed, the whole reply generated, the whole reply
synthesised, then played. While it thinks and speaks it does not listen: VAD edges are still logged
(``heard: false``) so the bench sees the user talking over it, but they change nothing.

The per-turn work runs in one worker thread (``_answer``); ``step()`` only runs the VAD (~0.1 ms a
chunk), moves audio, and polls for the finished reply.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..audio.frames import SAMPLE_RATE, seconds
from ..models.vad import SpeechSegmenter
from .base import Agent, Session
from .playback import Playback
from .workers import JobFailed, Worker

PREROLL_S = 0.3   # audio kept before the VAD's speech start: onsets are soft and the STT needs them


@dataclass
class Reply:
    turn: int
    user_text: str
    text: str
    audio: np.ndarray


class SequentialAgent(Agent):
    name = "sequential"
    description = "architecture 1: VAD silence threshold -> whole-utterance STT -> full LLM reply -> whole-reply TTS"

    def start(self, session: Session) -> None:
        super().start(session)
        self.vad = self.models.vad()
        self.segmenter = SpeechSegmenter(self.cfg.vad)
        self.playback = Playback(self.cfg.runtime.max_reply_s)
        self.worker = Worker(self.name, depth=1)
        self.history: list[dict] = []
        self.turn = 1
        self.state = "listening"   # -> "thinking" -> "speaking" -> "listening"
        self._audio: deque[np.ndarray] = deque()
        self._audio_t0 = 0.0       # conversation time of the first buffered sample
        self._heard_speech = False
        self._reply: Reply | None = None

    # -- the audio path ------------------------------------------------------------------------------
    def step(self, user_frame: np.ndarray, t: float) -> np.ndarray:
        t_end = t + seconds(len(user_frame))
        listening = self.state == "listening"
        for edge in self.segmenter.push(self.vad.push(user_frame)):
            self.emit(f"vad.{edge.kind}", self.turn, t=edge.t, heard=listening)
            if listening and edge.kind == "speech_start":
                self._heard_speech = True
        if listening:
            self._buffer(user_frame, t)
            if self._turn_ended():
                self._end_turn(t_end)
        elif self.state == "thinking":
            self._collect_reply(t)
        out = self.playback.next_frame(len(user_frame))
        if self.state == "speaking" and not self.playback.active:
            self._finish_speaking(t_end)
        return out

    def _buffer(self, frame: np.ndarray, t: float) -> None:
        if not self._audio:
            self._audio_t0 = t
        self._audio.append(frame)
        if not self._heard_speech:  # before speech, keep only the pre-roll
            keep = int(PREROLL_S * SAMPLE_RATE)
            while self._audio and sum(map(len, self._audio)) - len(self._audio[0]) >= keep:
                self._audio_t0 += seconds(len(self._audio.popleft()))

    def _turn_ended(self) -> bool:
        return (self._heard_speech and not self.segmenter.in_speech
                and self.segmenter.silence_s >= self.cfg.turn.silence_ms / 1000)

    def _end_turn(self, t_end: float) -> None:
        speech_end = self.segmenter.last_speech_end
        self.emit("turn.end", self.turn, t=t_end, speech_end=round(speech_end, 6), detector="silence",
                  silence_ms=self.cfg.turn.silence_ms)
        audio = np.concatenate(self._audio)
        cut = int((speech_end - self._audio_t0) * SAMPLE_RATE) + int(0.2 * SAMPLE_RATE)
        turn = self.turn
        self.worker.submit(lambda cancel: self._answer(turn, audio[:cut], cancel))
        self.state = "thinking"
        self._audio.clear()
        self._heard_speech = False

    def _collect_reply(self, t: float) -> None:
        result = self.worker.poll()
        if result is None:
            return
        if isinstance(result, JobFailed):
            self.emit("error", self.turn, where="answer", message=str(result.error))
            self._back_to_listening()
        elif len(result.audio) == 0:
            self._back_to_listening()
        else:
            self._reply = result
            self.playback.reset()
            self.playback.push(result.audio)
            self.state = "speaking"
            self.emit("playback.start", result.turn, t=t, text=result.text)

    def _finish_speaking(self, t_end: float) -> None:
        reply = self._reply
        self.emit("playback.end", reply.turn, t=t_end, heard_s=round(seconds(self.playback.played), 3))
        self.history += [{"role": "user", "content": reply.user_text}, {"role": "assistant", "content": reply.text}]
        self._back_to_listening()

    def _back_to_listening(self) -> None:
        self.state = "listening"
        self.turn += 1
        self._reply = None
        self._audio.clear()
        # The user may already be talking (they spoke over us); that speech starts the next turn.
        self._heard_speech = self.segmenter.in_speech

    # -- the worker thread ---------------------------------------------------------------------------
    def messages(self, user_text: str) -> list[dict]:
        keep = self.history[-2 * self.cfg.llm.history_turns:] if self.cfg.llm.history_turns else []
        return [{"role": "system", "content": self.cfg.llm.system_prompt}, *keep,
                {"role": "user", "content": user_text}]

    def _answer(self, turn: int, audio: np.ndarray, cancel: threading.Event) -> Reply:
        user_text = self.models.stt.transcribe(audio).text
        self.emit("stt.final", turn, text=user_text, audio_s=round(seconds(len(audio)), 3))
        if not user_text:
            self.emit("turn.empty", turn)
            return Reply(turn, "", "", np.zeros(0, np.float32))
        pieces: list[str] = []
        for piece in self.models.llm.stream(self.messages(user_text), cancel):
            if not pieces:
                self.emit("llm.first_token", turn)
            pieces.append(piece)
            self.emit("llm.token", turn, text=piece)
        text = "".join(pieces).strip()
        self.emit("llm.done", turn, text=text, tokens=len(pieces))
        chunks: list[np.ndarray] = []
        for chunk in self.models.tts.synthesize(text):
            if not chunks:
                self.emit("tts.first_audio", turn)
            chunks.append(chunk)
            self.emit("tts.chunk", turn, audio_s=round(seconds(len(chunk)), 3))
            if cancel.is_set():
                break
        audio_out = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        self.emit("tts.done", turn, audio_s=round(seconds(len(audio_out)), 3))
        return Reply(turn, user_text, text, audio_out)

    def close(self) -> None:
        if hasattr(self, "worker"):
            self.worker.close()
