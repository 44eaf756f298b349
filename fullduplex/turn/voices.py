"""Speaking a text in one of many voices: Piper en_US-joe-medium with varied speed, noise and pitch, or
one of several espeak-ng voices and variants; and cutting speech at its pauses.
"""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import soundfile as sf

from ..audio.frames import SAMPLE_RATE
from ..audio.resample import resample
from ..errors import UserError

SR = SAMPLE_RATE
ESPEAK_VOICES = ("en-us", "en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("", "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "adam", "linda", "steph", "paul", "john", "max")


class Voices:
    def __init__(self, seed: int = 0) -> None:
        self._piper = None
        self._seed = seed
        self._espeak = shutil.which("espeak-ng")

    def _piper_voice(self):
        if self._piper is None:
            import onnxruntime
            from ..config import TtsConfig
            from ..models.tts import PiperTts
            # Piper draws its noise inside the ONNX graph; seeding onnxruntime before the session is made
            # makes the whole sequence of syntheses (one build, in order) repeatable.
            onnxruntime.set_seed(self._seed)
            self._piper = PiperTts(TtsConfig())
        return self._piper

    def sample(self, rng: np.random.Generator, piper_share: float) -> dict:
        if rng.random() < piper_share:
            return {"kind": "piper", "length_scale": float(rng.uniform(0.85, 1.25)),
                    "noise_scale": float(rng.uniform(0.4, 0.9)), "noise_w": float(rng.uniform(0.5, 1.1)),
                    "semitones": 0.0 if rng.random() < 0.4 else float(rng.uniform(-3.0, 5.0))}
        return {"kind": "espeak", "voice": ESPEAK_VOICES[rng.integers(len(ESPEAK_VOICES))],
                "variant": ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))],
                "pitch": int(rng.integers(25, 80)), "speed": int(rng.integers(135, 200))}

    def speak(self, text: str, spec: dict) -> np.ndarray:
        if spec["kind"] == "piper":
            from piper.config import SynthesisConfig
            tts = self._piper_voice()
            syn = SynthesisConfig(length_scale=spec["length_scale"], noise_scale=spec["noise_scale"],
                                  noise_w_scale=spec["noise_w"])
            with tts._lock:   # our own Piper wrapper's voice, with per-item synthesis settings
                chunks = list(tts._voice.synthesize(text, syn_config=syn))
            audio = np.concatenate([c.audio_float_array for c in chunks]) if chunks else np.zeros(0, np.float32)
            rate = chunks[0].sample_rate if chunks else 22050
            shifted = rate * 2 ** (spec["semitones"] / 12)     # play faster/slower: pitch and tempo move together
            audio = resample(audio, int(round(shifted)), SR)
        else:
            if self._espeak is None:
                raise UserError("espeak-ng is not installed: run `make install` (or `apt-get install espeak-ng`)")
            voice = spec["voice"] + (f"+{spec['variant']}" if spec["variant"] else "")
            wav = subprocess.run([self._espeak, "--stdout", "-v", voice, "-p", str(spec["pitch"]),
                                  "-s", str(spec["speed"]), text], capture_output=True, check=True, timeout=30).stdout
            audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
            audio = resample(audio, rate, SR)
        return trim(audio)


def silent_gaps(audio: np.ndarray, floor_db: float = 35.0, min_s: float = 0.03) -> list[tuple[float, float]]:
    """Silences inside ``audio`` (10 ms frames ``floor_db`` under the loudest, at least ``min_s``)."""
    n = len(audio) // 160
    if n == 0:
        return []
    db = 20 * np.log10(np.sqrt(np.mean(audio[:n * 160].reshape(n, 160) ** 2, axis=1)) + 1e-9)
    quiet = db < db.max() - floor_db
    gaps, i = [], 0
    while i < n:
        if quiet[i]:
            j = i
            while j < n and quiet[j]:
                j += 1
            if i > 0 and j < n and (j - i) * 0.01 >= min_s:
                gaps.append((i * 0.01, j * 0.01))
            i = j
        else:
            i += 1
    return gaps


def speak_split(voices: "Voices", first: str, rest: str, spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Speak ``first rest`` as one sentence and cut it at the pause after ``first`` (the silence
    nearest to where ``first`` alone ends); if the voice made no such pause, speak them apart."""
    alone = voices.speak(first, spec)
    full = voices.speak(f"{first} {rest}", spec)
    expected = len(alone) / SR
    # A comma or a filler makes a pause of 100-300 ms; stop closures inside words are shorter.
    near = [g for g in silent_gaps(full, min_s=0.07) if -0.2 * expected - 0.05 <= g[0] - expected <= 0.25 * expected + 0.05]
    if near:
        start, end = min(near, key=lambda g: abs(g[0] - expected))
        return trim(full[:int(start * SR)]), trim(full[int(end * SR):])
    return alone, voices.speak(rest, spec)


def trim(audio: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    """Cut leading and trailing silence (10 ms frames more than ``floor_db`` under the loudest)."""
    n = len(audio) // 160
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[:n * 160].reshape(n, 160) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    active = np.flatnonzero(db > db.max() - floor_db)
    return audio[active[0] * 160:(active[-1] + 1) * 160].astype(np.float32)
