"""Real recordings as data for the turn model: their labelled pauses with the signals the agent would
have had, and leave-one-recording-out (LORO) training and scoring.

Two real sets, both split by recording, never by pause:
- conversations: every labelled pause of the recorded conversations (``labels.py``: shift, hold,
  backchannel), one recording per fold;
- monologue (holds only): pauses >= 200 ms inside single-speaker clips (``asr/``, Silero VAD, one fold
  per corpus: the two LJ Speech clips are one speaker; and ``vad/ten-vad-testset``, hand labels, dealt
  into ``MONOLOGUE_FOLDS`` folds).

Each pause's signals (Moonshine's transcript of the turn so far, Smart Turn at 0.2 s of silence,
prosody) are computed once and cached per set under the cache folder; ``fullduplex turn eval`` and
``fullduplex turn train`` share them. ``loro_curves`` gives every real pause the P(done)-by-silence
curve of a model trained without its recording (asserted on names).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..audio.frames import SAMPLE_RATE
from ..models.vad import speech_spans
from .features import SMART_TURN_AT_S, pause_signals
from .gbm import GbmParams, Trees
from .labels import Pause, PauseCounts, conversation_pauses, read_audio

SR = SAMPLE_RATE
MONOLOGUE_FOLDS = 3
SIGNALS_VERSION = 2   # bump when the signals of a pause change: part of the cache key


@dataclass
class RealSet:
    pauses: list[Pause]
    audio: dict[str, np.ndarray]
    counts: PauseCounts = field(default_factory=PauseCounts)


def monologue_pauses(shared: Path, min_pause_s: float = 0.2) -> RealSet:
    pauses, audio = [], {}
    for wav in sorted((shared / "asr").glob("*.wav")):
        a = read_audio(wav)
        audio[wav.stem] = a
        segs = speech_spans(a)
        for k in range(len(segs) - 1):
            gap = segs[k + 1][0] - segs[k][1]
            if gap >= min_pause_s:
                pauses.append(Pause("monologue", wav.stem, segs[k][1], gap, False, max(segs[0][0], segs[k][1] - 8),
                                    wav.stem, label="hold"))
    for scv in sorted((shared / "vad" / "ten-vad-testset").glob("*.scv")):
        wav = scv.with_suffix(".wav")
        if not wav.exists():
            continue
        fields = scv.read_text().strip().split(",")[1:]
        spans = [(float(fields[i]), float(fields[i + 1])) for i in range(0, len(fields) - 2, 3) if fields[i + 2] == "1"]
        a = read_audio(wav)
        audio[wav.stem] = a
        for k in range(len(spans) - 1):
            gap = spans[k + 1][0] - spans[k][1]
            if gap >= min_pause_s and spans[k][1] - spans[k][0] > 0.3:
                pauses.append(Pause("monologue", wav.stem, spans[k][1], gap, False,
                                    max(spans[0][0], spans[k][1] - 8), wav.stem, label="hold"))
    asr = {w.stem for w in (shared / "asr").glob("*.wav")}
    testset = sorted({p.source for p in pauses} - asr)
    fold = {s: f"asr-{s.split('-')[0]}" for s in asr}
    fold.update({s: f"ten-vad-{i % MONOLOGUE_FOLDS}" for i, s in enumerate(testset)})
    for p in pauses:
        p.group = fold[p.source]
    return RealSet(pauses, audio)


def conversation_set(folder: Path) -> RealSet:
    counts = PauseCounts()
    pauses, audio = conversation_pauses(folder, counts=counts)
    return RealSet(pauses, audio, counts)


# ----------------------------------------------------------------------------------------------------
# Signals (cached: Moonshine and Smart Turn are the slow part)

def _until(audio: np.ndarray, t: float) -> np.ndarray:
    return audio[:int(round(t * SR))]


def pause_set_signals(pauses: list[Pause], audio: dict[str, np.ndarray], cache: Path, llm: bool = False,
                      progress: Callable[[str], None] = lambda m: None) -> dict:
    """Fill ``p.signals`` for every pause; return the measured per-call costs (median ms)."""
    key = hashlib.sha1(json.dumps([SIGNALS_VERSION, llm, SMART_TURN_AT_S] +
                                  [[p.set, p.source, round(p.end_s, 4), round(p.turn_start_s, 4),
                                    len(audio[p.source])] for p in pauses]).encode()).hexdigest()[:10]
    path = Path(cache) / f"pause-signals-{key}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        for p, s in zip(pauses, saved["signals"]):
            p.signals = {k: (float("nan") if v is None else v) for k, v in s.items()}
        return saved["costs"]
    from ..config import SttConfig
    from ..models.smart_turn import SmartTurn
    from ..models.stt import load_stt
    from .signals import prosody
    stt = load_stt(SttConfig())
    smart = SmartTurn()
    lm = None
    if llm:
        from ..models.llm_eou import LlmEndOfUtterance
        lm = LlmEndOfUtterance()
    costs = {"smart_turn_ms": [], "prosody_ms": [], "stt_ms": [], "llm_ms": []}
    t0 = time.time()
    for i, p in enumerate(pauses):
        a = audio[p.source]
        until_end = _until(a, p.end_s)
        t = time.perf_counter()
        transcript = stt.transcribe(until_end[int(max(p.turn_start_s - 0.1, 0) * SR):]).text
        costs["stt_ms"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        st = smart.probability(_until(a, p.end_s + SMART_TURN_AT_S))
        costs["smart_turn_ms"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        prosody(until_end)
        costs["prosody_ms"].append((time.perf_counter() - t) * 1000)
        lp = float("nan")
        if lm is not None:
            t = time.perf_counter()
            lp = lm.probability(transcript)
            costs["llm_ms"].append((time.perf_counter() - t) * 1000)
        p.signals = pause_signals(until_end, transcript, st, lp)
        p.signals["transcript"] = transcript
        if (i + 1) % 50 == 0:
            progress(f"signals for {i + 1}/{len(pauses)} pauses ({time.time() - t0:.0f} s)")
    summary = {k: (float(np.median(v)) if v else None) for k, v in costs.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps({"costs": summary, "signals": [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in p.signals.items()} for p in pauses]}))
    tmp.replace(path)
    return summary


# ----------------------------------------------------------------------------------------------------
# Leave one recording out

def fold_of(pause: Pause) -> str:
    """The fold a real pause is held out with: its recording (monologue clips: their fold)."""
    return pause.group or pause.source


def without(real: list[Pause], held_out: str) -> list[Pause]:
    """The real pauses a model trained without ``held_out`` (a recording or a fold) may learn from."""
    kept = [p for p in real if fold_of(p) != held_out]
    assert held_out not in {fold_of(p) for p in kept}, "a held-out recording leaked into training"
    return kept


def loro_fit(synthetic: list, real: list[Pause], held_out: str, groups: tuple[str, ...], gbm: GbmParams,
             real_weight: float) -> Trees:
    """The model trained on the synthetic pauses and every real pause not of ``held_out``."""
    from .train import fit_trees
    train = without(real, held_out)
    events = list(synthetic) + train
    return fit_trees(events, groups, gbm, event_weights=[1.0] * len(synthetic) + [real_weight] * len(train))


def loro_curves(synthetic: list, real: list[Pause], groups: tuple[str, ...], gbm: GbmParams, real_weight: float,
                latency_s: float, progress: Callable[[str], None] = lambda m: None) -> tuple[np.ndarray, np.ndarray]:
    """P(done) on the silence grid for every real pause, each from a model that never saw its recording."""
    from .train import probability_curves
    folds = sorted({fold_of(p) for p in real})
    curves, grid = None, None
    for k, held in enumerate(folds):
        idx = [i for i, p in enumerate(real) if fold_of(p) == held]
        trees = loro_fit(synthetic, real, held, groups, gbm, real_weight)
        grid, c = probability_curves(trees, [real[i] for i in idx], latency_s=latency_s)
        if curves is None:
            curves = np.zeros((len(real), len(grid)))
        curves[idx] = c
        progress(f"leave one recording out: {k + 1}/{len(folds)} ({held})")
    return grid, curves
