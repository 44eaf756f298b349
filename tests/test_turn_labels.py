"""Real pauses as data: labelling from a hand-made RTTM, and leave-one-recording-out never sees the
recording it scores."""

from __future__ import annotations

import pytest

from fullduplex.turn.labels import label_pauses

# Who speaks when (start, end, speaker), and the speech segments a VAD would find in the mixed audio.
LABELS = [
    (0.0, 3.0, "A"), (3.5, 6.0, "A"),      # 3.0-3.5: A pauses and goes on (hold)
    (6.6, 9.0, "B"),                        # 6.0-6.6: B takes the turn (shift)
    (9.5, 9.9, "A"),                        # 9.0-9.5: A says "mm-hm", a listener's backchannel ...
    (10.3, 15.0, "B"),                      # ... and B goes on (the 9.9-10.3 gap is nobody's pause)
    (14.7, 16.0, "A"),                      # A starts over B's end: overlapping talk at the 15.0 pause
    (16.6, 18.0, "B"),
    (21.0, 22.0, "B"),                      # 18.0-19.0 and 19.5-20.5: speech nobody labelled (sparse labels)
]
SEGMENTS = [(0.0, 3.0), (3.5, 6.0), (6.6, 9.0), (9.5, 9.9), (10.3, 15.0), (15.5, 16.0), (16.6, 18.0),
            (19.0, 19.5), (21.0, 22.0)]


def test_pauses_are_labelled_shift_hold_backchannel_and_the_rest_counted():
    pauses, counts = label_pauses(LABELS, SEGMENTS, "call")
    got = [(round(p.end_s, 2), p.label, round(p.gap_s, 2), p.speaker) for p in pauses]
    assert got == [(3.0, "hold", 0.5, "A"), (6.0, "shift", 0.6, "A"), (9.0, "backchannel", 1.3, "B"),
                   (16.0, "shift", 0.6, "A")]
    assert [p.done for p in pauses] == [False, True, False, True]
    assert pauses[2].listener_s == pytest.approx(0.5)       # the "mm-hm" began 0.5 s into B's pause
    assert pauses[1].turn_start_s == 0.0 and pauses[3].turn_start_s == pytest.approx(15.5)
    assert dict(counts.kept) == {"hold": 1, "shift": 2, "backchannel": 1}
    assert dict(counts.skipped) == {"ending a listener's backchannel": 1, "with overlapping talk at the pause": 1,
                                    "without a labelled speaker on one side": 2}


def test_a_short_answer_that_keeps_the_floor_is_a_shift_not_a_backchannel():
    """"Yes." (short) followed by more of the same speaker is a shift: the first speaker did not go on."""
    labels = [(0.0, 2.0, "A"), (2.5, 3.0, "B"), (3.4, 6.0, "B")]
    pauses, _ = label_pauses(labels, [(0.0, 2.0), (2.5, 3.0), (3.4, 6.0)], "call")
    assert [(p.label, p.speaker) for p in pauses] == [("shift", "A"), ("hold", "B")]


def test_leave_one_recording_out_never_trains_on_the_recording_it_scores(monkeypatch):
    import numpy as np

    from fullduplex.turn import train as train_mod
    from fullduplex.turn.gbm import GbmParams
    from fullduplex.turn.labels import Pause
    from fullduplex.turn.real import loro_curves

    rng = np.random.default_rng(0)

    def pause(source, done, group=""):
        p = Pause("conversations", source, 1.0, 0.6, done, 0.0, group or source)
        p.signals = {"smart_turn": float(rng.random()) * 0.5 + 0.5 * done}
        return p

    real = [pause(f"rec{r}", k % 2 == 0) for r in range(4) for k in range(6)]
    real += [pause(f"clip{c}", False, group=f"monologue-{c % 2}") for c in range(4)]
    synthetic = [pause("synth", k % 2 == 0) for k in range(20)]
    seen = []
    fit = train_mod.fit_trees

    def spy(events, groups, params, event_weights=None):
        seen.append({e.group for e in events if e.source != "synth"})
        return fit(events, groups, params, event_weights)

    monkeypatch.setattr(train_mod, "fit_trees", spy)
    grid, curves = loro_curves(synthetic, real, ("silence", "smart_turn"), GbmParams(n_trees=5), 3.0, 0.0)
    folds = sorted({p.group for p in real})
    assert len(seen) == len(folds) == 6                    # one model per recording (monologue clips: per fold)
    for held, groups in zip(folds, seen):
        assert held not in groups and groups == set(folds) - {held}
    assert curves.shape == (len(real), len(grid)) and np.all((curves >= 0) & (curves <= 1))
