"""Who should speak next: the duplex conversation's small decisions, each a pure function of what it
has heard, so they can be tested alone. (When to take the floor is ``turn/floor.py``'s ``FloorRule``.)

- ``EndOfTurn``: how likely the user is done: the predictive turn model on the trailing audio and the
  streaming transcript (a per-conversation view of the shared model), or a text rule without it.
- ``BackchannelTiming``: when, while the user holds the floor, a short acknowledgement fits.
- ``is_backchannel``: whether what the user said over the agent was only "mm-hm", "yeah", ...
"""

from __future__ import annotations

import re

import numpy as np

from ..config import DuplexConfig

BACKCHANNEL_WORDS = frozenset(
    "mm mhm mmhm hm hmm uh huh uhhuh yeah yea yep yes yup right okay ok sure alright aha ah oh wow "
    "i see true exactly totally got it cool nice".split())
# A lone filler over the agent says nothing either; the recogniser often hears a quiet "uh-huh" as "Um."
FILLER_WORDS = frozenset("um umm uh er erm ah".split())


def is_backchannel(text: str, max_words: int = 3) -> bool:
    """True for "mm-hm", "yeah", "oh right", "I see", a lone "um" (and silence-like nothing), not content."""
    words = re.findall(r"[a-z']+", text.lower().replace("-", ""))
    return len(words) <= max_words and all(w in BACKCHANNEL_WORDS or w in FILLER_WORDS for w in words)


class EndOfTurn:
    """P(user done) from the trained turn model (``fullduplex.turn``) when installed with its data;
    without it, a transparent text rule stands in (trailing conjunction/filler -> holding)."""

    def __init__(self, predictor=None) -> None:
        self.predictor = predictor

    @property
    def detector(self) -> str:
        return "turn-model" if self.predictor is not None else "text-rule"

    def p_done(self, audio_tail: np.ndarray, text: str, silence_s: float) -> float:
        if self.predictor is not None:
            return float(self.predictor.predict(audio_tail, text, silence_s))
        return text_rule(text)


_HOLD = frozenset("and but or so because um uh er like the a an to of with i my your if when then".split())


def text_rule(text: str) -> float:
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        return 0.0
    stripped = text.rstrip(" \"')")
    if words[-1] in _HOLD or stripped.endswith((",", "...", "-")):
        return 0.1
    if stripped.endswith("?"):
        return 0.9
    if stripped.endswith((".", "!")) and len(words) >= 3:
        return 0.75
    return 0.4


class BackchannelTiming:
    """Acknowledge at a short pause after a stretch of the user's speech, while they are holding the floor.

    People backchannel at pauses after clause ends, roughly every few seconds of the speaker's talk
    and rarely twice in a row (``DuplexConfig`` holds the numbers).
    """

    def __init__(self, cfg: DuplexConfig = DuplexConfig()) -> None:
        self.cfg = cfg

    def fits(self, speech_since_s: float, since_last_s: float, silence_s: float, p_done: float) -> bool:
        c = self.cfg
        return (speech_since_s >= c.bc_min_speech_s and since_last_s >= c.bc_min_gap_s
                and c.bc_pause_s[0] <= silence_s <= c.bc_pause_s[1] and p_done <= c.bc_max_p_done)
