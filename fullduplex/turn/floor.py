"""The floor rule: "take the floor now?" — one implementation, run live by the duplex and predictive
conversations and replayed offline by ``fullduplex turn eval`` on labelled pauses.

The agent takes the floor once the silence reaches ``min_silence_s + max_extra_s * (1 - p)^2``, p being
the turn model's latest P(user done): sure -> the shortest gap people leave, unsure -> up to the
fallback. It asks the model during a pause on a schedule (``PauseSchedule``): first the words up to
the pause (``ask_after_s`` into the silence), then P every ``p_every_s``; an answer is usable from the
next frame on. ``replay`` runs that same schedule and rule over a pause's P(done)-by-silence curve, so
an offline score is the decision the agent would have made, frame for frame (with instant models).
"""

from __future__ import annotations

from typing import Callable

from ..config import DuplexConfig


class FloorRule:
    def __init__(self, cfg: DuplexConfig = DuplexConfig()) -> None:
        self.cfg = cfg

    def wait_s(self, p: float) -> float:
        return self.cfg.min_silence_s + self.cfg.max_extra_s * (1.0 - p) ** 2

    def take_floor(self, p: float, silence_s: float) -> bool:
        return silence_s >= self.wait_s(p)

    def draft(self, p: float) -> bool:
        """Worth preparing a reply now (cheap to discard)."""
        return p >= self.cfg.draft_p

    @property
    def longest_wait_s(self) -> float:
        return self.wait_s(0.0)

    def replay(self, p_at: Callable[[float], float], frame_s: float = 0.02, first_s: float | None = None) -> float:
        """The silence (s) at which the agent takes the floor in a pause that goes on long enough,
        given P(done) as a function of the silence: the live schedule and rule, with instant models
        (an answer asked for at one frame is there at the next, as on the test harness's settled clock).
        ``first_s``: the silence at the end of the pause's first frame (live it depends on where speech
        ended within a frame; by default one whole frame)."""
        schedule = PauseSchedule(self.cfg, frame_s)
        first = frame_s if first_s is None else first_s
        p, pending = 0.0, None
        j = -1
        while True:
            j += 1
            silence = round(first + j * frame_s, 9)
            if pending is not None:                 # the model's answer to the previous frame's question
                p, pending = pending, None
            if schedule.next(silence) == "p":
                pending = p_at(silence)
            if schedule.ready and self.take_floor(p, silence):
                return silence
            if silence > self.longest_wait_s + 1.0:   # unreachable while wait_s(p) <= longest_wait_s
                return silence


class PauseSchedule:
    """When, inside one pause, the agent asks for the words so far and then for P(done).

    ``next()`` is called once a frame of the pause and says what to ask at this frame: ``"words"`` (the
    recogniser's transcript up to the pause, at ``ask_after_s`` of silence), then, once the words are in,
    ``"p"`` (the turn model) at once and every ``p_every_s`` of frames while the model is idle.
    Live, the duplex conversation drives it with the ear's and the judge's state; ``replay`` with
    instant answers.
    """

    def __init__(self, cfg: DuplexConfig, frame_s: float) -> None:
        self.cfg = cfg
        self.frame_s = frame_s
        self.asked_words = False
        self.ready = False            # the words up to this pause are in: decisions may be taken
        self._frames = 0              # frames since the words came in
        self._last_p = None           # the frame P was last asked for

    def next(self, silence_s: float, words_in: bool = True, judge_idle: bool = True) -> str | None:
        if not self.asked_words:
            if silence_s >= self.cfg.ask_after_s - 1e-9:
                self.asked_words = True
                return "words"
            return None
        if not self.ready:
            if not words_in:
                return None
            self.ready = True
        else:
            self._frames += 1
        every = max(1, round(self.cfg.p_every_s / self.frame_s))
        if judge_idle and (self._last_p is None or self._frames - self._last_p >= every):
            self._last_p = self._frames
            return "p"
        return None
