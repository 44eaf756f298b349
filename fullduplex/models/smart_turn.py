"""Smart Turn v3.2: the audio end-of-turn ONNX model shipped in the pipecat-ai wheel, with our own
wrapper and Whisper log-mel front end (numpy only); ~60 ms a call on one core, so the turn predictor
calls it once a pause.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..audio.frames import SAMPLE_RATE
from ..cputime import section
from .packages import model_file, require

SMART_TURN_FILE = "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SMART_TURN_SECONDS = 8


def _mel_filters(n_fft: int = 400, n_mels: int = 80, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-style mel filterbank (the one Whisper uses), shape (n_fft//2+1, n_mels)."""
    def hz_to_mel(f):
        f = np.asarray(f, float)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), lin)

    def mel_to_hz(m):
        m = np.asarray(m, float)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))

    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    bins = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lower = (bins[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])[None, :]
    upper = (edges[None, 2:] - bins[:, None]) / (edges[2:] - edges[1:-1])[None, :]
    tri = np.clip(np.minimum(lower, upper), 0.0, None)
    return tri * (2.0 / (edges[2:] - edges[:-2]))[None, :]


_MEL = _mel_filters()
_HANN = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)   # periodic Hann


def whisper_log_mel(audio: np.ndarray, seconds: int = SMART_TURN_SECONDS) -> np.ndarray:
    """Whisper's log-mel front end over exactly ``seconds`` of 16 kHz audio: (80, 100 * seconds) float32.

    Waveform normalised to zero mean / unit variance, 25 ms periodic-Hann STFT every 10 ms (centred,
    reflect padding), power spectrum through an 80-band Slaney mel bank, log10, floored 8 decades
    under the maximum and mapped by (x + 4) / 4.
    """
    n = SAMPLE_RATE * seconds
    x = np.zeros(n, np.float32)
    a = np.asarray(audio, np.float32)[:n]
    x[:len(a)] = a
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), 200, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 400)[::160]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=1)) ** 2          # (frames, 201)
    mel = np.log10(np.maximum(power @ _MEL, 1e-10)).T[:, :-1]          # (80, frames - 1)
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


def last_seconds(audio: np.ndarray, seconds: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The last ``seconds`` of ``audio``, zero-padded at the start when shorter."""
    n = int(seconds * sr)
    audio = np.asarray(audio, np.float32).reshape(-1)
    if len(audio) >= n:
        return audio[-n:]
    return np.concatenate([np.zeros(n - len(audio), np.float32), audio])


class SmartTurn:
    """Smart Turn v3.2 end-of-turn probability (~60 ms a call on one core)."""

    name = "smart-turn-v3.2"

    def __init__(self, model_path: str | os.PathLike | None = None, threads: int = 1) -> None:
        ort = require("onnxruntime", "onnxruntime", "Smart Turn")
        path = Path(model_path) if model_path else model_file("pipecat", "pipecat-ai", "Smart Turn v3.2", SMART_TURN_FILE)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()

    def probability(self, audio_16k_last_8s: np.ndarray) -> float:
        """P(turn complete) for audio ending now (16 kHz float32; the last 8 s are used, shorter is zero-padded)."""
        with section("smart_turn"):   # charged to the conversation whose thread asks (the session is shared)
            feats = whisper_log_mel(last_seconds(audio_16k_last_8s, SMART_TURN_SECONDS))[None]
            with self._lock:
                out = self._session.run(None, {self._input: feats})[0]
        return float(np.asarray(out).reshape(-1)[0])


_SMART_TURN: SmartTurn | None = None
_SMART_TURN_LOCK = threading.Lock()


def shared_smart_turn() -> SmartTurn:
    """One Smart Turn session per process."""
    global _SMART_TURN
    with _SMART_TURN_LOCK:
        if _SMART_TURN is None:
            _SMART_TURN = SmartTurn()
        return _SMART_TURN
