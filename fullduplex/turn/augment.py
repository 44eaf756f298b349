"""Acoustic augmentation of training speech (level, noise, reverberation, telephone band), so the turn
model does not learn clean TTS.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from ..audio.frames import SAMPLE_RATE
from ..audio.resample import resample

SR = SAMPLE_RATE


def _coloured_noise(n: int, rng: np.random.Generator, colour: str) -> np.ndarray:
    white = rng.normal(size=n)
    if colour == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    spec /= np.sqrt(f) if colour == "pink" else f
    out = np.fft.irfft(spec, n)
    return out / (out.std() + 1e-12)


def augment(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = audio.astype(np.float64)
    speech_rms = math.sqrt(np.mean(x[np.abs(x) > 1e-4] ** 2)) if np.any(np.abs(x) > 1e-4) else 1e-3
    if rng.random() < 0.3:      # small room
        rt60 = rng.uniform(0.15, 0.6)
        t = np.arange(int(rt60 * SR)) / SR
        ir = rng.normal(size=len(t)) * np.exp(-6.9 * t / rt60) * rng.uniform(0.05, 0.3)
        ir[0] = 1.0
        x = fftconvolve(x, ir)[:len(x)]
    band = rng.random()
    if band < 0.2:              # telephone
        x = resample(x.astype(np.float32), SR, 8000).astype(np.float64)
        x = sosfilt(butter(4, [300, 3400], btype="band", fs=8000, output="sos"), x)
        x = resample(x.astype(np.float32), 8000, SR).astype(np.float64)[:len(audio)]
        x = np.pad(x, (0, len(audio) - len(x)))
    elif band < 0.35:           # muffled, far-field
        x = sosfilt(butter(4, rng.uniform(2500, 5000), fs=SR, output="sos"), x)
    target = 10 ** (rng.uniform(-35, -14) / 20)
    x *= target / max(speech_rms, 1e-6)
    if rng.random() < 0.85:
        snr = rng.uniform(8, 45)
        colour = str(rng.choice(["white", "pink", "brown"]))
        x += _coloured_noise(len(x), rng, colour) * target * 10 ** (-snr / 20)
    else:
        x += rng.normal(size=len(x)) * 1e-4
    return np.clip(x, -1, 1).astype(np.float32)
