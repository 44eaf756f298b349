"""One floor rule: ``turn eval``'s offline replay of a labelled pause gives the moment the live duplex
conversation takes the floor in that pause, on every real pause of the dev conversations."""

from __future__ import annotations

import numpy as np
import pytest

from fullduplex.config import Config, DuplexConfig
from fullduplex.engines import make_agent
from fullduplex.testing import ScriptedStack, run_scripted
from fullduplex.turn.floor import FloorRule, PauseSchedule

SPEECH_S = 1.0       # the scripted user speaks this long before each pause (the curve, not the audio, decides)
LISTEN_S = 2.5       # and the run goes on this long after it (the rule always decides within 1.8 s)
FRAME_S = 0.02


class CurvePredictor:
    """The turn model's P(done) for one real pause, as a function of the silence (what ``turn eval`` computed)."""

    def __init__(self, grid, curve) -> None:
        self.grid, self.curve = grid, curve

    def for_conversation(self):
        return self

    def predict(self, audio_tail, text, silence_s) -> float:
        return float(np.interp(silence_s, self.grid, self.curve))


def live_take_floor(grid, curve, text: str, gap_s: float) -> tuple[float | None, float]:
    """The silence at which the duplex conversation takes the floor in this pause, or None if the user
    went on first (a hold shorter than its wait); and the silence at the end of the pause's first frame."""
    pause = min(gap_s, LISTEN_S)
    spans = [(0.3, 0.3 + SPEECH_S)] + ([(0.3 + SPEECH_S + gap_s, 0.3 + SPEECH_S + gap_s + 1.0)] if gap_s < LISTEN_S else [])
    stack = ScriptedStack(spans, turn_model=CurvePredictor(grid, curve))
    stack.stt.text = text or "okay."
    run = run_scripted(make_agent("duplex", stack, Config()), seconds=0.3 + SPEECH_S + pause + 0.2)
    ends = [e for e in run.kinds("turn.end") if e.t < 0.3 + SPEECH_S + pause]
    speech_end = run.kinds("vad.speech_end")[0].t
    first = round((speech_end // FRAME_S + 1) * FRAME_S - speech_end, 6) or FRAME_S
    return (round(ends[0].t - speech_end, 6) if ends else None), first


def test_the_schedule_and_rule_replay_as_expected():
    cfg = DuplexConfig()
    rule = FloorRule(cfg)
    assert rule.replay(lambda s: 1.0) == pytest.approx(cfg.min_silence_s, abs=0.021)     # sure: the shortest gap
    assert rule.replay(lambda s: 0.0) == pytest.approx(cfg.min_silence_s + cfg.max_extra_s, abs=0.021)  # the fallback
    schedule = PauseSchedule(DuplexConfig(), 0.02)
    asks = [schedule.next(round(0.02 * j, 3)) for j in range(1, 12)]
    assert asks[:4] == [None, None, "words", "p"] and asks[4:8] == [None, None, "p", None]


@pytest.mark.slow
def test_replay_equals_the_live_decision_on_every_dev_pause(shared_data):
    """Every pause >= 200 ms of the shared conversations, with the P(done)-by-silence curve the committed
    fast model (no Smart Turn) gives on that pause's audio. The rule, not the curve, is under test: the
    words are left out (Moonshine on every pause would cost a minute and change only the curves)."""
    from fullduplex.turn.features import pause_signals
    from fullduplex.turn.labels import conversation_pauses
    from fullduplex.turn.model import TurnPredictor
    from fullduplex.turn.train import probability_curves

    pauses, audio = conversation_pauses(shared_data / "conversations")
    assert len(pauses) >= 100
    for p in pauses:
        p.signals = pause_signals(audio[p.source][:int(p.end_s * 16000)], "")
    grid, curves = probability_curves(TurnPredictor.load(fast=True).trees, pauses, latency_s=0.0)
    rule = FloorRule(DuplexConfig())
    mismatches, taken = [], 0
    for pause, curve in zip(pauses, curves):
        gap = pause.gap_s if not pause.done else np.inf
        live, first = live_take_floor(grid, curve, "okay.", gap)
        replayed = rule.replay(lambda s: float(np.interp(s, grid, curve)), FRAME_S, first)
        expected = replayed if replayed < min(gap, LISTEN_S) - 1e-6 else None
        same = (live is None and expected is None) or (
            live is not None and expected is not None and abs(live - expected) < 1e-6)
        if not same and not (expected is not None and abs(expected - gap) <= FRAME_S):  # the user goes on in that frame
            mismatches.append((pause.source, round(pause.end_s, 2), expected, live))
        taken += live is not None
    assert not mismatches, mismatches
    # Not vacuous: the floor is taken in many pauses and withheld in many others.
    assert taken >= 20 and len(pauses) - taken >= 20, taken
