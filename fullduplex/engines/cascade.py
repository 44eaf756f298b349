"""The cascade: VAD -> end of turn -> speech-to-text -> LLM -> text-to-speech -> playback.

One class, presets by attribute:
- ``sequential`` (architecture 1): a fixed silence threshold ends the turn; the whole utterance is
  transcribed, the whole reply generated, then synthesised as a whole, then played.
- ``streaming`` (architecture 3): the LLM's tokens are cut into pieces (sentences; optionally a
  short first clause) and each piece is synthesised and played while the rest is still written.
Neither listens while it speaks: VAD edges are still logged (``heard: false``), so the bench sees the
user talking over it, but they change nothing.

Threads: ``think`` (STT, then the LLM) feeds text pieces to the ``Voice`` (TTS in its own thread)
through a bounded queue; ``step()`` only runs the VAD (~0.1 ms a chunk), moves synthesised audio into
playback and notes what the user has heard. Every reply is a generation of the voice: audio of a
superseded generation (an override, a new turn) is dropped wherever it is found.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from ..audio.frames import SAMPLE_RATE, seconds
from ..cputime import section
from .talker import PREROLL_S, TalkingConversation, ThinkDone
from .voice import Piece
from .workers import JobFailed


class SequentialConversation(TalkingConversation):
    name = "sequential"
    description = "architecture 1: VAD silence threshold -> whole-utterance STT -> full LLM reply -> whole-reply TTS"
    streaming = False      # the whole reply is synthesised, then played

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.turn = 1
        self.phase = "listening"   # -> "thinking" -> "speaking" -> "listening"
        self._audio: deque[np.ndarray] = deque()
        self._audio_t0 = 0.0       # conversation time of the first buffered sample
        self._heard_speech = False
        self._reset_reply()

    def _reset_reply(self) -> None:
        self._done: ThinkDone | None = None   # the LLM has finished (and how many pieces to expect)
        self._received = 0                     # pieces of this generation synthesised and queued
        self._spoken: list[str] = []           # texts of pieces the user has started hearing
        self._user_text = ""
        self._playing = False

    # -- the audio path ------------------------------------------------------------------------------
    def step(self, user_frame: np.ndarray, t: float) -> np.ndarray:
        t_end = t + seconds(len(user_frame))
        listening = self.phase == "listening"
        for edge in self.segmenter.push(self.vad.push(user_frame)):
            self.emit(f"vad.{edge.kind}", self.turn, t=edge.t, heard=listening)
            if listening and edge.kind == "speech_start":
                self._heard_speech = True
        if listening:
            self._buffer(user_frame, t)
            if self._turn_ended():
                self._end_turn(t_end)
        else:
            self._collect()
        out, started = self.voice.frame(len(user_frame))
        for piece in started:
            self._on_piece_started(piece, t_end)
        if self.phase != "listening" and self._reply_finished():
            self._finish_reply(t)   # the last frame with audio played until this frame's start
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

    def _end_turn(self, t_end: float, **why) -> None:
        speech_end = self.segmenter.last_speech_end
        why = why or {"detector": "silence", "silence_ms": self.cfg.turn.silence_ms}
        self.emit("turn.end", self.turn, t=t_end, speech_end=round(speech_end, 6), **why)
        audio = np.concatenate(self._audio)
        cut = int((speech_end - self._audio_t0) * SAMPLE_RATE) + int(0.2 * SAMPLE_RATE)
        self.phase = "thinking"
        self._audio.clear()
        self._heard_speech = False
        self._reset_reply()
        self._start_reply(self.turn, self.voice.new_generation(), audio[:cut])

    def _start_reply(self, turn: int, gen: int, audio: np.ndarray) -> None:
        """Hook for presets that do more at the end of a turn (the parallel pair starts its slow model)."""
        self.think.submit(lambda cancel: self._think(turn, gen, audio, cancel))

    def _collect(self) -> None:
        result = self.think.poll()
        if isinstance(result, JobFailed):
            self.emit("error", self.turn, where="think", message=str(result.error))
            self._back_to_listening()
            return
        if isinstance(result, ThinkDone) and result.gen == self.voice.gen:
            self._done = result
            self._user_text = result.user_text
        received = self.voice.collect()
        if received:
            self._received += received
            self.phase = "speaking"

    def _on_piece_started(self, piece: Piece, t: float) -> None:
        if not self._playing:
            self._playing = True
            self.emit("playback.start", piece.turn, t=t, text=piece.text)
        self._spoken.append(piece.text)
        self.emit("playback.piece", piece.turn, t=t, index=piece.index, text=piece.text)

    def _reply_finished(self) -> bool:
        done = self._done
        return done is not None and self._received >= done.pieces and not self.playback.active

    def _finish_reply(self, t_end: float) -> None:
        done = self._done
        spoken = " ".join(self._spoken)
        if self._playing:
            self.emit("playback.end", done.turn, t=t_end, heard_s=round(seconds(self.playback.played), 3), text=spoken)
        if done.user_text and spoken:
            self.history += [{"role": "user", "content": done.user_text}, {"role": "assistant", "content": spoken}]
        self._back_to_listening()

    def _back_to_listening(self) -> None:
        self.phase = "listening"
        self.turn += 1
        self.playback.reset()
        self._reset_reply()
        self._audio.clear()
        # The user may already be talking (they spoke over us); that speech starts the next turn.
        self._heard_speech = self.segmenter.in_speech

    # -- worker threads ------------------------------------------------------------------------------
    def _transcribe(self, turn: int, audio: np.ndarray) -> str:
        with section("stt"):     # in the think worker, whose jobs are otherwise charged to the LLM
            text = self.models.stt.transcribe(audio).text
        self.emit("stt.final", turn, text=text, audio_s=round(seconds(len(audio)), 3))
        if not text:
            self.emit("turn.empty", turn)
        return text

    def _think(self, turn: int, gen: int, audio: np.ndarray, cancel: threading.Event) -> ThinkDone:
        user_text = self._transcribe(turn, audio)
        if not user_text:
            return ThinkDone(turn, gen, "", "", 0)
        return self.generate(turn, gen, user_text, self.models.llm, cancel)


class StreamingConversation(SequentialConversation):
    name = "streaming"
    description = "architecture 3: the cascade with sentence-level streaming TTS (first audio after the first sentence)"
    streaming = True


class StreamingClauseConversation(StreamingConversation):
    name = "streaming-clause"
    description = "architecture 3, eager: the first piece ends at the first clause boundary, then whole sentences"
    first_clause = True
