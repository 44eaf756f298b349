"""Who should speak next: the duplex conversation's small decisions, each a pure function of what it
has heard, so they can be tested alone. (When to take the floor is ``turn/floor.py``'s ``FloorRule``.)

- ``EndOfTurn``: how likely the user is done: the predictive turn model on the trailing audio and the
  streaming transcript (a per-conversation view of the shared model), or a text rule without it.
- ``BackchannelTiming``: when, while the user holds the floor, a short acknowledgement fits.
- ``is_backchannel``: whether what the user said over the agent was only "mm-hm", "yeah", ...
- ``claims_the_floor``: whether a short stretch of speech over the agent asks it to stop or asks it
  something; ``UserLevel``: the user's own loudness in this call, to tell them from speech farther away.
- ``same_request``: whether a reply drafted from an earlier transcript still answers the final one.
"""

from __future__ import annotations

import re
from collections import deque

import numpy as np

from ..config import DuplexConfig
from ..textnorm import normalize

BACKCHANNEL_WORDS = frozenset(
    "mm mhm mmhm hm hmm uh huh uhhuh yeah yea yep yes yup right okay ok sure alright aha ah oh wow "
    "i see true exactly totally got it cool nice".split())
# A lone filler over the agent says nothing either; the recogniser often hears a quiet "uh-huh" as "Um."
FILLER_WORDS = frozenset("um umm uh er erm ah".split())


def is_backchannel(text: str, max_words: int = 3) -> bool:
    """True for "mm-hm", "yeah", "oh right", "I see", a lone "um" (and silence-like nothing), not content."""
    words = re.findall(r"[a-z']+", text.lower().replace("-", ""))
    return len(words) <= max_words and all(w in BACKCHANNEL_WORDS or w in FILLER_WORDS for w in words)


# Words that take the floor even in a short overlap: stop-cues anywhere, question words as the first word.
_STOP_CUES = frozenset("stop wait hold hang no nope sorry excuse pardon hey actually but".split())
_QUESTION_OPENERS = frozenset("what why how when where who which".split())


def claims_the_floor(text: str) -> bool:
    """Whether a short stretch of speech over the agent tells it to stop or asks it something: a
    stop-cue ("wait", "no", "sorry", "hold on") or a question (opening with "what", "why", ..., or
    ending in "?").
    Everything else this short lets the agent go on: "mm-hm", "right", and also words the recogniser
    half-heard in a listener token (it writes a quiet "uh-huh" as "Like," or "At the moment,"), so a
    false stop costs a pause, never the answer. A longer overlap is a barge-in whatever it says."""
    if is_backchannel(text):
        return False    # "right?", "yeah?", "oh okay?": a listener's rising tone, not a question
    words = re.findall(r"[a-z']+", text.lower().replace("-", ""))
    return (text.rstrip(" \"')").endswith("?") or any(w in _STOP_CUES for w in words)
            or bool(words) and words[0] in _QUESTION_OPENERS)


class UserLevel:
    """How loud the user speaks in this call: the 90th percentile of the frame levels of their speech
    while the agent is silent (their own turns: the microphone hears no agent there, whatever the echo
    cancellation), over the last ``window_frames``. Speech far below it is someone else: a TV, a
    person across the room. None until ``min_frames`` of the user's speech are heard."""

    def __init__(self, window_frames: int = 1500, min_frames: int = 25) -> None:
        self._levels: deque[float] = deque(maxlen=window_frames)
        self.min_frames = min_frames

    def add(self, db: float) -> None:
        self._levels.append(db)

    @property
    def db(self) -> float | None:
        if len(self._levels) < self.min_frames:
            return None
        return float(np.percentile(self._levels, 90))


# Hesitation sounds carry no request wherever the recogniser puts them (hyphenated "mm-hm" splits in two).
_HESITATIONS = FILLER_WORDS | frozenset("hm hmm mm".split())
# At the end of a turn these only trail off ("..., so", "..., yeah"); inside it they can be content.
_TRAILING = frozenset("so yeah".split())
# Short words a recogniser revises without changing what is asked: articles, "is/was", a preposition.
# Negations (not, no, never, don't, can't...), question words (what, where, when, who, why, how,
# which) and numbers are left out on purpose: one of those changes the answer. So are pronouns
# ("I" vs "you") and words of direction ("to" vs "from").
_MINOR = frozenset("a an the this that these those it its is are was were be been am and of in on at "
                   "for with about just please really".split())
SAME_REQUEST_MIN_WORDS = 4   # below this one word is too much of the request to let it change


def _request_words(text: str) -> list[str]:
    words = [w for w in normalize(text) if w not in _HESITATIONS]   # case, punctuation, digits -> words
    while words and words[-1] in _TRAILING:
        words.pop()
    return words


def same_request(draft_text: str, final_text: str) -> bool:
    """True when a reply drafted from ``draft_text`` answers ``final_text`` as well: they are equal
    but for case, punctuation and fillers, or differ by one minor word (substituted, inserted or
    deleted) in a turn of ``SAME_REQUEST_MIN_WORDS`` words or more. False when the user said more
    (a new content word) or a word that matters changed. Redrafting costs ~0.5-1 s of answer
    latency; answering the wrong request costs more, so anything unsure is False."""
    a, b = _request_words(draft_text), _request_words(final_text)
    if a == b:
        return True
    if min(len(a), len(b)) < SAME_REQUEST_MIN_WORDS:
        return False
    # One edit at most: what is left between the common prefix and suffix is one word a side or less.
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    j = 0
    while j < min(len(a), len(b)) - i and a[-1 - j] == b[-1 - j]:
        j += 1
    changed_a, changed_b = a[i:len(a) - j], b[i:len(b) - j]
    return len(changed_a) <= 1 and len(changed_b) <= 1 and all(w in _MINOR for w in changed_a + changed_b)


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
