"""The signals a turn model reads while the user speaks and pauses, each cheap and incremental.

- ``prosody(audio, silence_s)``: pitch contour and its final slope, energy, speaking rate and
  final-syllable lengthening over the trailing ~2 s of *speech* (the part before the current
  silence), from a YIN pitch tracker written here (numpy only; ~1-2 ms for 2 s).
- ``text_markers(transcript)``: discourse markers and clause completeness from the streaming
  transcript: a trailing "and"/"so"/"because"/"um"/"the" vs a completed clause, the recogniser's own
  final punctuation, an open subordinate clause.

The two model-based signals live with the other model wrappers: Smart Turn v3.2 in
``fullduplex/models/smart_turn.py`` and the LLM end-of-utterance probability in
``fullduplex/models/llm_eou.py``.

Every feature is a float; NaN means "not measurable here" (e.g. no voiced frame in the tail), which
the gradient-boosted model routes explicitly.
"""
from __future__ import annotations

import hashlib
import math
import re

import numpy as np
from scipy.signal import find_peaks

from ..audio.frames import SAMPLE_RATE
from ..audio.resample import resample
from ..textnorm import words_of

NAN = float("nan")

# ----------------------------------------------------------------------------------------------------
# Pitch: YIN (de Cheveigné & Kawahara 2002), vectorised over frames with one FFT per frame.

PITCH_RATE = 8_000   # pitch is tracked at 8 kHz: enough for F0 <= 400 Hz, and a quarter of the FFT work
HOP = 80             # 10 ms at 8 kHz
WIN = 320            # 40 ms: two periods of the lowest pitch we track
FMIN, FMAX = 60.0, 400.0
_NFFT = 512          # >= WIN + (WIN - max lag) - 1: linear, not circular, correlation


def frame_view(audio: np.ndarray, win: int = WIN, hop: int = HOP) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) < win:
        return np.zeros((0, win), np.float32)
    return np.lib.stride_tricks.sliding_window_view(audio, win)[::hop]


def yin_pitch(audio: np.ndarray, sr: int = SAMPLE_RATE, threshold: float = 0.15,
              voicing: float = 0.35) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (f0 Hz, voiced mask, frame energy dB), one value per 10 ms frame (frame i covers
    [i * 10 ms, i * 10 ms + 40 ms)). f0 is NaN where unvoiced."""
    audio = resample(np.asarray(audio, np.float32), sr, PITCH_RATE)
    sr = PITCH_RATE
    frames = frame_view(audio).astype(np.float64)
    n = len(frames)
    if n == 0:
        return np.zeros(0), np.zeros(0, bool), np.zeros(0)
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy_db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    min_lag, max_lag = int(sr / FMAX), int(math.ceil(sr / FMIN))
    w = WIN - max_lag                                  # integration window
    head = np.zeros_like(frames)
    head[:, :w] = frames[:, :w]
    spec_full = np.fft.rfft(frames, _NFFT)
    spec_head = np.fft.rfft(head, _NFFT)
    cross = np.fft.irfft(np.conj(spec_head) * spec_full, _NFFT)[:, :max_lag + 1]  # sum_j x_j x_{j+tau}
    sq = np.concatenate([np.zeros((n, 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    taus = np.arange(max_lag + 1)
    e0 = sq[:, w][:, None]                             # sum_{j<w} x_j^2
    e_tau = sq[:, taus + w] - sq[:, taus]              # sum_{tau<=j<tau+w} x_j^2
    diff = np.maximum(e0 + e_tau - 2 * cross, 0.0)
    cum = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)
    region = cmnd[:, min_lag:max_lag + 1]
    below = region < threshold
    first = np.where(below.any(axis=1), below.argmax(axis=1), region.argmin(axis=1))
    for _ in range(max_lag - min_lag):                 # walk down to the local minimum (few steps in practice)
        nxt = np.minimum(first + 1, region.shape[1] - 1)
        step = region[np.arange(n), nxt] < region[np.arange(n), first]
        if not step.any():
            break
        first = np.where(step, nxt, first)
    rows = np.arange(n)
    best = region[rows, first]
    lag = first + min_lag
    # Parabolic interpolation around the minimum for sub-sample lag.
    lo = cmnd[rows, np.maximum(lag - 1, 1)]
    hi = cmnd[rows, np.minimum(lag + 1, max_lag)]
    denom = lo - 2 * cmnd[rows, lag] + hi
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (lo - hi) / np.where(denom == 0, 1, denom), 0.0)
    f0 = sr / (lag + np.clip(shift, -1, 1))
    loud = energy_db > max(energy_db.max() - 30.0, -65.0)
    voiced = (best < voicing) & loud & (lag < max_lag - 1)   # a lag at the edge is hum or noise, not voice
    f0 = np.where(voiced, f0, np.nan)
    return f0, voiced, energy_db


def _smooth_semitones(f0: np.ndarray) -> np.ndarray:
    """Semitones re 100 Hz, with single-frame octave jumps and outliers removed by a 5-point median
    over the voiced frames."""
    st = 12 * np.log2(f0 / 100.0)
    idx = np.flatnonzero(~np.isnan(st))
    if len(idx) >= 5:
        padded = np.pad(st[idx], 2, mode="edge")
        st = st.copy()
        st[idx] = np.median(np.lib.stride_tricks.sliding_window_view(padded, 5), axis=1)
    return st


PROSODY_FEATURES = (
    "speech_s",          # speech in the analysed tail (s), up to 2
    "voiced_frac",       # share of 10 ms frames that are voiced
    "f0_final_slope",    # semitones/s over the last <=300 ms of voicing before the pause
    "f0_final_rel",      # final pitch minus the tail's median (st)
    "f0_final_low",      # final pitch above the tail's 10th percentile (st): 0 = at the bottom of the range
    "f0_range",          # 90th - 10th percentile (st)
    "energy_final_rel",  # last 150 ms of speech vs the tail's loud level (dB)
    "energy_final_slope",  # dB/s over the last 300 ms of speech
    "rate_syl_s",        # syllable nuclei (energy peaks in voiced speech) per second
    "final_lengthening",  # last voiced run / median voiced run
    "final_ioi_ratio",   # last interval between syllable nuclei / median interval
)


def prosody(audio: np.ndarray, silence_s: float = 0.0, window_s: float = 2.0,
            sr: int = SAMPLE_RATE) -> dict[str, float]:
    """Prosodic features of the ``window_s`` of audio before the current silence.

    ``audio`` ends now; its last ``silence_s`` seconds are the pause so far and are not analysed.
    """
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    end = len(audio) - int(round(max(silence_s, 0.0) * sr))
    seg = audio[max(0, end - int(window_s * sr)):max(end, 0)]
    out = {k: NAN for k in PROSODY_FEATURES}
    out["speech_s"] = len(seg) / sr
    f0, voiced, edb = yin_pitch(seg, sr)
    if len(f0) < 5:
        return out
    t = (np.arange(len(f0)) + 2) * 0.01            # frame centres (s)
    seg_end = len(seg) / sr
    out["voiced_frac"] = float(voiced.mean())
    # Energy (relative, so recording level does not matter).
    loud = np.percentile(edb, 90)
    final = t >= seg_end - 0.17
    out["energy_final_rel"] = float(np.mean(edb[final]) - loud) if final.any() else NAN
    last = t >= seg_end - 0.32
    if last.sum() >= 5:
        out["energy_final_slope"] = float(np.polyfit(t[last], edb[last], 1)[0])
    # Pitch.
    if voiced.sum() >= 5:
        st = _smooth_semitones(f0)
        v = ~np.isnan(st)
        ref, p10, p90 = np.median(st[v]), np.percentile(st[v], 10), np.percentile(st[v], 90)
        out["f0_range"] = float(p90 - p10)
        vi = np.flatnonzero(v)
        recent = vi[t[vi] >= seg_end - 0.5]             # voicing in the last 0.5 s of speech
        if len(recent) >= 3:
            tail = recent[t[recent] >= t[recent[-1]] - 0.3]
            out["f0_final_rel"] = float(np.mean(st[tail[-10:]]) - ref)
            out["f0_final_low"] = float(np.mean(st[tail[-10:]]) - p10)
            if len(tail) >= 5:
                out["f0_final_slope"] = float(np.polyfit(t[tail], st[tail], 1)[0])
        # Voiced runs (gaps of one frame bridged) as syllable-sized units.
        runs, start, prev = [], vi[0], vi[0]
        for i in vi[1:]:
            if i - prev > 2:
                runs.append((start, prev))
                start = i
            prev = i
        runs.append((start, prev))
        lengths = np.array([b - a + 1 for a, b in runs], float)
        if len(lengths) >= 2 and runs[-1][1] >= len(f0) - 60:  # last run within ~0.6 s of the pause
            out["final_lengthening"] = float(lengths[-1] / np.median(lengths))
    # Syllable nuclei: peaks of the smoothed energy envelope in voiced frames.
    env = np.convolve(edb, np.ones(5) / 5, mode="same")
    peaks, _ = find_peaks(np.where(voiced, env, env.min()), prominence=4.0, distance=8)
    speech_frames = edb > loud - 30
    speech_dur = max(speech_frames.sum() * 0.01, 0.1)
    out["rate_syl_s"] = float(len(peaks) / speech_dur)
    if len(peaks) >= 3:
        ioi = np.diff(t[peaks])
        out["final_ioi_ratio"] = float((seg_end - t[peaks[-1]]) / np.median(ioi))
    return out


# ----------------------------------------------------------------------------------------------------
# Text: discourse markers and clause completeness.

CONJUNCTIONS = frozenset("and but or so because cause cuz if when while although though unless since until "
                         "whether that which who whom whose where than nor plus".split())
FUNCTION_WORDS = frozenset((
    "the a an this these those my your his her our their its some any every each no another such "
    "to of in on at for with from about into onto by as over under between through during without "
    "toward towards upon among via per i we they he she is are was were am be been being will would "
    "can could should shall must might may have has had do does did gonna wanna gotta not very really "
    "just also more most less least much many several").split())
FILLERS = frozenset("um umm uh uhh er erm uhm hmm mm ah eh like".split())
MARKER_PHRASES = ("you know", "i mean", "kind of", "sort of", "and then", "and so", "as well as",
                  "such as", "rather than", "in order to", "as if", "so that", "a lot of")
SUBORDINATORS = frozenset("if when because although though while since unless before after whenever".split())

TEXT_FEATURES = (
    "n_words",           # log(1 + words in the transcript)
    "ends_conjunction",  # trailing "and", "but", "so", "because", "that", ...
    "ends_function",     # trailing article, preposition, auxiliary, subject pronoun
    "ends_filler",       # trailing "um", "uh", "like", ...
    "ends_marker_phrase",  # trailing "you know", "kind of", ...
    "continuation_marker",  # any of the four above
    "punct_final",       # the recogniser closed the text with "." or "!"
    "punct_question",    # ... with "?"
    "punct_continue",    # ... with "," or "..." or "-" (it heard a continuation)
    "open_subordinate",  # starts "if/when/because ..." with no main clause after a comma
)

def text_markers(transcript: str) -> dict[str, float]:
    text = (transcript or "").strip()
    words = words_of(text)
    out = dict.fromkeys(TEXT_FEATURES, 0.0)
    out["n_words"] = math.log1p(len(words))
    if not words:
        for k in TEXT_FEATURES[1:]:
            out[k] = NAN
        return out
    last = words[-1]
    tail2 = " ".join(words[-2:])
    tail3 = " ".join(words[-3:])
    out["ends_conjunction"] = float(last in CONJUNCTIONS)
    out["ends_function"] = float(last in FUNCTION_WORDS)
    out["ends_filler"] = float(last in FILLERS)
    out["ends_marker_phrase"] = float(any(tail2 == p or tail3 == p for p in MARKER_PHRASES))
    out["continuation_marker"] = float(max(out["ends_conjunction"], out["ends_function"], out["ends_filler"],
                                           out["ends_marker_phrase"]))
    stripped = text.rstrip(" \"')]")
    out["punct_continue"] = float(stripped.endswith((",", "...", "…", "-", "—", ";", ":")))
    out["punct_question"] = float(stripped.endswith("?"))
    out["punct_final"] = float(stripped.endswith((".", "!")) and not out["punct_continue"])
    # The last sentence of the transcript: does it open with a subordinate clause still waiting for its main one?
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    last_sentence = sentences[-1] if sentences else text
    lw = words_of(last_sentence)
    out["open_subordinate"] = float(bool(lw) and lw[0] in SUBORDINATORS and "," not in last_sentence.rstrip(",")
                                    and len(lw) < 14)
    return out


# ----------------------------------------------------------------------------------------------------
# One key per pause, for the predictor's cache.

def audio_key(audio: np.ndarray, silence_s: float, sr: int = SAMPLE_RATE) -> str:
    """A fingerprint of the last second of speech before the current silence: the same for every call
    within one pause (the window slides, the speech before the pause does not change)."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    end = len(audio) - int(round(max(silence_s, 0.0) * sr))
    piece = audio[max(0, end - sr):max(end, 0)]
    return hashlib.blake2b(piece.tobytes(), digest_size=12).hexdigest()
