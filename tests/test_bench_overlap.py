"""FDB v1.5's overlap scenarios and metrics: behaviours from scripted event logs, timing intervals on
hand-made segments, annotations the loader checks strictly, and the synthetic builder (small)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fullduplex.bench import overlap
from fullduplex.bench.draft import Draft
from fullduplex.bench.scenarios import ALL_KINDS, KINDS, OVERLAP_KINDS, load_suite
from fullduplex.bench.suite import write_scenario
from fullduplex.bench.suite_overlap import (BAND_HZ, background_mix, compose, speech_level_db)
from fullduplex.events import Event
from fullduplex.models.stt import Word

OVERLAP = (4.0, 4.6)   # the overlap's speech in every scripted scenario


def ev(t, kind, turn=None, **data):
    return Event(t, kind, turn, data)


def answer(turn=1, start=2.5, pieces=("I can help with that.", "First, check the oil.", "Then the tyres.")):
    """An answer planned as ``pieces``: LLM done, then pieces playing 1 s apart from ``start``."""
    events = [ev(start - 0.3, "llm.done", turn, text=" ".join(pieces))]
    events += [ev(start - 0.2, "tts.piece", turn, index=i, text=p) for i, p in enumerate(pieces)]
    events.append(ev(start, "playback.start", turn, text=pieces[0]))
    return events, pieces


def piece(t, i, pieces, turn=1):
    return ev(t, "playback.piece", turn, index=i, text=pieces[i])


# --- behaviour from the event log --------------------------------------------------------------------

def test_talking_through_the_overlap_is_resume_with_nothing_lost():
    events, p = answer()
    events += [piece(2.5, 0, p), piece(3.5, 1, p), piece(4.5, 2, p), ev(5.5, "playback.end", 1, text=" ".join(p))]
    row = overlap.from_events(events, OVERLAP)
    assert row["behaviour"] == "RESUME" and row["words_lost"] == 0
    assert row["words_planned"] == row["words_played"] == 12


def test_pausing_then_resuming_after_a_backchannel_is_resume():
    events, p = answer()
    events += [piece(2.5, 0, p), piece(3.5, 1, p), ev(4.1, "bargein.yield", 1, onset=4.0),
               ev(4.9, "bargein.backchannel", 1, text="mm-hm"), piece(5.0, 2, p), ev(6.0, "playback.end", 1)]
    assert overlap.from_events(events, OVERLAP)["behaviour"] == "RESUME"


def test_a_new_answer_after_the_onset_is_respond_and_counts_the_words_cut():
    events, p = answer()
    events += [piece(2.5, 0, p), piece(3.5, 1, p), ev(4.1, "bargein.yield", 1, onset=4.0),
               ev(4.4, "bargein", 1, heard=" ".join(p[:2])), ev(5.2, "playback.start", 2, text="Sure."),
               ev(5.2, "playback.piece", 2, index=0, text="Sure.")]
    row = overlap.from_events(events, OVERLAP)
    assert row["behaviour"] == "RESPOND"
    assert row["words_lost"] == 3   # "Then the tyres." never played


def test_stopping_and_staying_silent_is_uncertain():
    events, p = answer()
    events += [piece(2.5, 0, p), ev(4.2, "bargein", 1, heard=p[0])]
    row = overlap.from_events(events, OVERLAP)
    assert row["behaviour"] == "UNCERTAIN" and row["words_lost"] == 7
    still_paused, p = answer()
    still_paused += [piece(2.5, 0, p), ev(4.1, "bargein.yield", 1, onset=4.0)]
    assert overlap.from_events(still_paused, OVERLAP)["behaviour"] == "UNCERTAIN"


def test_no_answer_playing_at_the_onset_is_not_judged():
    events, p = answer(start=5.0)     # the agent starts after the overlap began
    events += [piece(5.0, 0, p)]
    assert overlap.from_events(events, OVERLAP)["behaviour"] == "NOT_SPEAKING"
    done, p = answer()
    done += [piece(2.5, 0, p), ev(3.5, "playback.end", 1)]   # finished before it
    assert overlap.from_events(done, OVERLAP)["behaviour"] == "NOT_SPEAKING"


def test_server_stamped_events_are_ignored_and_the_transcript_decides():
    events = [ev(2.5, "playback.start", 1, origin="server")]
    assert not overlap.logs_playback(events)
    talked_through = overlap.overlap_metrics([(0.0, 1.5), OVERLAP], [(2.5, 6.0)], OVERLAP, events, [])
    assert talked_through["behaviour"] == "RESUME" and talked_through["behaviour_source"] == "transcript"
    words = [Word("Sure", 5.5, 5.8)]
    stopped = overlap.from_transcript([(2.5, 4.3), (5.5, 6.5)], words, OVERLAP)
    assert stopped["behaviour"] == "RESPOND"
    assert overlap.from_transcript([(2.5, 4.3)], [], OVERLAP)["behaviour"] == "UNCERTAIN"
    assert overlap.from_transcript([(5.0, 6.0)], [], OVERLAP)["behaviour"] == "NOT_SPEAKING"


# --- FDB v1.5's timing ---------------------------------------------------------------------------------

def test_timing_intervals_follow_fdb_get_timing():
    user = [(0.0, 1.0), (1.5, 2.0), (4.0, 4.6)]          # gap 0.5 <= 0.6: the first two merge
    agent = [(2.5, 3.0), (3.4, 4.3), (5.0, 6.0)]          # gap 0.4 <= 0.5 merges; 0.7 does not
    t = overlap.timing(user, agent, OVERLAP)
    assert t["stop_intervals"] == [[4.0, 4.3]]
    assert t["resp_intervals"] == [[2.0, 2.5], [4.6, 5.0]]
    assert t["stop_latency"] == pytest.approx(0.3)
    assert t["resp_latency"] == pytest.approx(0.4)
    silent = overlap.timing(user, [(5.0, 6.0)], OVERLAP)
    assert silent["stop_latency"] == 0.0 and silent["stop_intervals"] == []


def test_stop_intervals_keep_the_shortest_per_end_and_responses_the_latest_user_end():
    user = [(0.0, 2.0), (3.0, 3.5)]
    model = [(1.0, 3.5)]
    assert overlap.stop_intervals(user, model) == [[1.0, 2.0], [3.0, 3.5]]
    assert overlap.resp_intervals([(0.0, 1.0), (1.2, 2.0)], [(3.0, 4.0)]) == [[2.0, 3.0]]


def test_aggregate_rates_leave_out_rows_not_speaking_and_the_table_has_published_rows():
    rows = [{"kind": "overlap_backchannel", "behaviour": b, "behaviour_source": "events", "words_lost": w,
             "stop_latency": 0.2, "resp_latency": None, "stop_intervals": [[4.0, 4.2]], "resp_intervals": []}
            for b, w in (("RESUME", 0), ("RESUME", 0), ("RESPOND", 6), ("NOT_SPEAKING", None))]
    agg = overlap.aggregate(rows)["overlap_backchannel"]
    assert agg["n"] == 4 and agg["judged"] == 3 and agg["not_speaking"] == 1
    assert agg["resume"] == pytest.approx(2 / 3) and agg["respond"] == pytest.approx(1 / 3)
    assert agg["words_lost"] == pytest.approx(2.0) and agg["stop_fdb"] == pytest.approx(0.2)
    table = overlap.markdown_tables({"duplex": {"overlap_backchannel": agg}})
    assert "0.67 (n=3)" in table and "Gemini Live (published, FDB's data)* | 0.33 | 0.93 | 0.99 | 0.30" in table


# --- scenarios -----------------------------------------------------------------------------------------

def test_kinds_keep_fdb_v1_and_add_the_overlap_ones():
    assert KINDS == ("pause", "turn_taking", "interrupt", "backchannel")
    assert ALL_KINDS == KINDS + OVERLAP_KINDS


def test_compose_places_the_overlap_after_the_turn_end():
    turn = np.ones(16000, np.float32) * 0.1
    over = np.ones(8000, np.float32) * 0.1
    audio, t_span, o_span = compose(turn, (0.1, 0.9), over, (0.05, 0.45))
    assert t_span == (0.1, 0.9) and o_span[0] == pytest.approx(0.9 + 2.5, abs=1e-3)
    assert len(audio) / 16000 == pytest.approx(o_span[1] + 0.05 + 6.0, abs=1e-3)


def test_background_is_band_limited_and_below_the_user():
    rng = np.random.default_rng(0)
    user = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    bg = (rng.standard_normal(32000) * 0.1).astype(np.float32)
    mixed = background_mix(user, bg, 15.0)
    assert speech_level_db(user) - speech_level_db(mixed) == pytest.approx(15.0, abs=1.0)
    spectrum = np.abs(np.fft.rfft(mixed)) ** 2
    freqs = np.fft.rfftfreq(len(mixed), 1 / 16000)
    inside = spectrum[(freqs > BAND_HZ[0]) & (freqs < BAND_HZ[1])].mean()
    assert spectrum[freqs > 6000].mean() < inside / 100 and spectrum[freqs < 100].mean() < inside / 100


def _draft(kind, item):
    return Draft(kind, "x", np.ones(16000 * 8, np.float32) * 0.01, [item],
                 {"source": "synthetic", "origin": "test", "licence": "none"})


def test_the_loader_checks_overlap_annotations_strictly(tmp_path):
    good = {"text": "mm-hm", "timestamp": [4.0, 4.5], "turn": [0.1, 1.5], "context": "Hi there."}
    for kind in OVERLAP_KINDS:
        write_scenario(tmp_path / "ok", _draft(kind, good))
    scenarios, errors = load_suite(tmp_path / "ok")
    assert errors == [] and sorted(s.kind for s in scenarios) == sorted(OVERLAP_KINDS)
    assert all(s.span == (4.0, 4.5) for s in scenarios)
    write_scenario(tmp_path / "bad", _draft("overlap_side_talk", {**good, "turn": [0.1, 4.2]}))  # ends after onset
    write_scenario(tmp_path / "bad2", _draft("overlap_background", {"text": "x", "timestamp": [4.0, 4.5]}))
    folder = tmp_path / "bad3" / "s"
    write_scenario(tmp_path / "bad3", _draft("overlap_interrupt", good))
    folder = next((tmp_path / "bad3").rglob("overlap_interrupt.json")).parent
    (folder / "overlap_backchannel.json").write_text(json.dumps([good]))   # two annotation files
    for bad, says in (("bad", "'turn'"), ("bad2", "'turn'"), ("bad3", "exactly one annotation file")):
        scenarios, errors = load_suite(tmp_path / bad)
        assert not scenarios and len(errors) == 1 and says in str(errors[0]), errors


def test_synthetic_overlap_scenarios_one_of_each_kind(shared_data, tmp_path):
    """One Piper scenario per overlap kind, each with a valid annotation; deterministic."""
    pytest.importorskip("piper")
    from fullduplex.bench.suite import build_suite
    summary = build_suite(tmp_path / "a", data_dir=shared_data, seed=1, kinds=OVERLAP_KINDS, limit=1)
    assert summary.counts["synthetic"] == {k: 1 for k in OVERLAP_KINDS}
    scenarios, errors = load_suite(tmp_path / "a")
    assert errors == []
    import soundfile as sf
    for s in (s for s in scenarios if s.source == "synthetic"):
        item = s.annotation[0]
        audio, _ = sf.read(s.input_path, dtype="float32")
        start, end = s.span
        assert start - item["turn"][1] == pytest.approx(2.5, abs=0.01)
        assert len(audio) / 16000 >= end + 5.9
        assert np.abs(audio[int(item["turn"][1] * 16000) + 800:int(start * 16000) - 800]).max() == 0
        if s.kind == "overlap_background":
            user_level = speech_level_db(audio[:int(item["turn"][1] * 16000)])
            assert user_level - speech_level_db(audio[int(start * 16000):]) == pytest.approx(item["level_db"], abs=1.5)
