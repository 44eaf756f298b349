"""One feature vector per decision: the signals of a pause, plus how long the silence has lasted.

Within one pause only ``silence_s`` changes: prosody, text and Smart Turn are computed once (the
predictor caches them) and each later decision costs a tree walk. Smart Turn is run once, on the
audio up to ``SMART_TURN_AT_S`` of silence (as Pipecat does after its VAD's 0.2 s stop time), and its
answer is usable ``SMART_TURN_LATENCY_S`` later; decisions before that see it as missing (NaN).
"""

from __future__ import annotations

import math

import numpy as np

from .signals import NAN, PROSODY_FEATURES, TEXT_FEATURES, prosody, text_markers

SMART_TURN_AT_S = 0.2        # silence at which Smart Turn is run, once a pause
SMART_TURN_LATENCY_S = 0.06  # its cost on one core of the 2-core machine (measured: see the report)
DECISION_START_S = 0.2       # no decision before 200 ms of silence: shorter gaps are inside words and phrases

# Measured but not fed to the model: in synthesised data a hold is always a prefix of the finished
# turn, so how much has been said (speech_s, n_words) separates them for a reason that real
# conversation does not share.
LENGTH_ARTEFACTS = ("speech_s", "n_words")
GROUPS: dict[str, tuple[str, ...]] = {
    "silence": ("silence_s",),
    "prosody": tuple(f for f in PROSODY_FEATURES if f not in LENGTH_ARTEFACTS),
    "text": tuple(f for f in TEXT_FEATURES if f not in LENGTH_ARTEFACTS),
    "smart_turn": ("smart_turn",),
    "llm": ("llm_eou",),
}
DEFAULT_GROUPS = ("silence", "prosody", "text", "smart_turn")
# Domain knowledge the trees may not contradict: more silence, a more confident Smart Turn or LLM
# never lowers P(done); a trailing connector, filler or continuation comma never raises it.
MONOTONE = {"silence_s": 1, "smart_turn": 1, "llm_eou": 1, "continuation_marker": -1, "ends_conjunction": -1,
            "ends_function": -1, "ends_filler": -1, "ends_marker_phrase": -1, "punct_continue": -1,
            "open_subordinate": -1}


def feature_names(groups: tuple[str, ...] | list[str]) -> list[str]:
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown feature group(s) {unknown}; known: {', '.join(GROUPS)}")
    return [name for g in GROUPS if g in groups for name in GROUPS[g]]


def pause_signals(audio_until_speech_end: np.ndarray, transcript: str, smart_turn: float = NAN,
                  llm_eou: float = NAN) -> dict[str, float]:
    """Everything that stays fixed during one pause. ``audio_until_speech_end`` ends where speech stopped."""
    signals = prosody(audio_until_speech_end, 0.0)
    signals.update(text_markers(transcript))
    signals["smart_turn"] = float(smart_turn)
    signals["llm_eou"] = float(llm_eou)
    return signals


def smart_turn_ready(silence_s: float, latency_s: float = SMART_TURN_LATENCY_S) -> bool:
    return silence_s >= SMART_TURN_AT_S + latency_s - 1e-9


def vector(signals: dict[str, float], silence_s: float, names: list[str],
           latency_s: float = SMART_TURN_LATENCY_S) -> list[float]:
    out = []
    for name in names:
        if name == "silence_s":
            out.append(float(silence_s))
        elif name == "smart_turn" and not smart_turn_ready(silence_s, latency_s):
            out.append(NAN)
        else:
            v = signals.get(name, NAN)
            out.append(NAN if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
    return out
