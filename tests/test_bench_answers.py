"""Answers vs backchannels beside FDB's word rules, and the real listeners' backchannel rate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from fullduplex.bench import answers
from fullduplex.bench.answers import (
    aggregate_answers, answer_metrics, from_events, from_words, listener_backchannels, listener_rate,
    reference_rate, score_answers,
)
from fullduplex.bench.metrics import takeover, turn_taking_metrics
from fullduplex.bench.report import report
from fullduplex.events import Event
from fullduplex.models.stt import Word
from fullduplex.testing import ScriptedLlm, ScriptedStack, run_scripted


def ev(t, kind, **data):
    return Event(t, kind, None, data)


# -- synthetic event logs and transcripts ---------------------------------------------------------

def test_an_answer_in_the_mid_turn_pause_is_early_where_fdb_says_zero_latency():
    # The user pauses at 2.0-3.0 s and ends the turn at 4.6 s; the agent answered at 2.3 s, then again at 5.1 s.
    log = [ev(1.2, "backchannel", text="mm-hm", audio_s=0.4), ev(2.3, "playback.start", text="Sure."),
           ev(5.1, "playback.start", text="It opens at nine.")]
    words = [Word("Sure.", 2.3, 2.7), Word("It", 5.1, 5.2), Word("opens", 5.2, 5.5), Word("at", 5.5, 5.6),
             Word("nine.", 5.6, 6.0)]
    assert turn_taking_metrics(words, 4.6)["latency"] == 0.0, "FDB: first word anywhere, clipped at 0"
    row = score_answers("turn_taking", (4.6, 5.0), log, words)
    assert row["answer_source"] == "events" and row["answer_early"] == 1
    assert row["answer_onset"] == pytest.approx(0.5) and row["agent_bcs"] == 1
    # Only the early answer: no onset after the end, still early.
    row = score_answers("turn_taking", (4.6, 5.0), log[:2], words[:1])
    assert row["answer_onset"] is None and row["answer_early"] == 1
    # Only backchannels before the end: not early, onset from the real answer.
    row = score_answers("turn_taking", (4.6, 5.0), [log[0], log[2]], words)
    assert row["answer_early"] == 0 and row["answer_onset"] == pytest.approx(0.5)


def test_two_backchannels_are_a_fdb_takeover_but_no_answer():
    words = [Word("Mm-hm.", 1.0, 1.3), Word("Yeah.", 3.0, 3.3)]
    assert takeover(words) == 1, "FDB: words spanning >= 1 s anywhere"
    row = score_answers("pause", (2.0, 2.8), None, words)   # no event log (Moshi): the transcript
    assert row["answer_source"] == "transcript"
    assert row["answer_in_pause"] == 0 and row["pause_answered"] == 0 and row["agent_bcs"] == 2


def test_transcript_rule_joins_words_and_keeps_content_as_answers():
    words = [Word("Yeah,", 2.1, 2.3), Word("the", 2.4, 2.5), Word("shop", 2.5, 2.8),   # one utterance: content
             Word("okay", 6.0, 6.3),                                                   # a lone acknowledgement
             Word("yeah", 8.0, 8.3), Word("yeah", 8.4, 8.7), Word("yeah", 8.8, 9.2)]   # 1.2 s: too long for one
    kinds = [(u.start, u.kind) for u in from_words(words)]
    assert kinds == [(2.1, "answer"), (6.0, "backchannel"), (8.0, "answer")]
    row = answer_metrics("pause", (2.0, 2.6), from_words(words), "transcript")
    assert row["answer_in_pause"] == 1 and row["pause_answered"] == 1


def test_the_event_log_wins_over_the_words_and_server_events_do_not_count():
    # An LLM reply "Okay." is an answer by the architecture's own log, a backchannel by its words.
    log = [ev(3.0, "playback.start", text="Okay.")]
    words = [Word("Okay.", 3.0, 3.4)]
    assert score_answers("pause", (2.9, 3.5), log, words)["answer_in_pause"] == 1
    assert score_answers("pause", (2.9, 3.5), None, words)["answer_in_pause"] == 0
    # A ws:// agent: its server's events are on the server's clock, not the recorded output's.
    remote = [ev(3.0, "playback.start", text="Okay.", origin="server"), ev(0.0, "agent.text", origin="client")]
    assert from_events(remote) is None
    assert score_answers("pause", (2.9, 3.5), remote, words)["answer_source"] == "transcript"
    # Interrupt words start at the interruption end: no backchannel count from them.
    assert score_answers("interrupt", (4.0, 5.0), None, words)["agent_bcs"] is None


def test_aggregate_pools_the_backchannel_rate_and_counts_onsets():
    rows = [
        {"kind": "turn_taking", "answer_onset": 0.4, "answer_early": 0, "agent_bcs": 0, "user_speech_s": 6.0,
         "answer_source": "events"},
        {"kind": "turn_taking", "answer_onset": None, "answer_early": 1, "agent_bcs": 1, "user_speech_s": 6.0,
         "answer_source": "events"},
        {"kind": "turn_taking", "answer_onset": 1.0, "answer_early": 1, "agent_bcs": 0, "user_speech_s": 6.0,
         "answer_source": "events"},
        {"kind": "pause", "answer_in_pause": 1, "pause_answered": 1, "agent_bcs": 2, "user_speech_s": 12.0,
         "answer_source": "transcript"},
        {"kind": "pause", "answer_in_pause": 0, "pause_answered": 1, "agent_bcs": 0, "user_speech_s": 0.0},
    ]
    a = aggregate_answers(rows)
    assert a["answer_onset_median"] == pytest.approx(0.7) and a["answer_onset_n"] == 2 and a["turns"] == 3
    assert a["answer_early"] == pytest.approx(2 / 3)
    assert a["answer_in_pause"] == 0.5 and a["pause_answered"] == 1.0
    assert a["bc_per_user_min"] == pytest.approx(3 / (30 / 60)), "pooled: 3 backchannels in 30 s of user speech"
    assert a["sources"] == {"events": 3, "transcript": 1}


# -- on the scripted harness: the duplex engine's own event log ----------------------------------

def test_duplex_answering_in_a_mid_turn_pause_scores_early():
    """A complete-sounding question, a 1.5 s pause, then the user goes on: the engine answers in the
    pause. FDB would clip that to 0 s latency; here it is an answer before the labelled turn end."""
    stack = ScriptedStack(spans=[(0.5, 2.0), (3.5, 5.0)], llm=ScriptedLlm("It is three o'clock."))
    stack.stt.text = "What time is it?"
    run = run_scripted("duplex", stack, 9.0)
    starts = [e.t for e in run.kinds("playback.start")]
    assert starts and 2.0 < starts[0] < 3.5, "the harness answers in the pause"
    row = score_answers("turn_taking", (5.0, 5.5), run.events, [])
    assert row["answer_source"] == "events" and row["answer_early"] == 1
    pause = score_answers("pause", (2.0, 3.5), run.events, [])
    assert pause["answer_in_pause"] == 1


def test_duplex_monologue_backchannels_are_not_answers():
    spans = [(0.3, 3.0), (3.35, 6.0), (6.35, 9.0), (9.35, 12.0), (12.35, 15.0)]
    stack = ScriptedStack(spans=spans)
    stack.stt.text = "and then we went to the"        # always mid-sentence: the engine holds
    run = run_scripted("duplex", stack, 15.5)
    row = score_answers("pause", (6.0, 6.35), run.events, [])
    assert row["agent_bcs"] >= 2 and row["answer_in_pause"] == 0 and row["pause_answered"] == 0


# -- the real listeners' reference rate -----------------------------------------------------------

RTTM = """\
SPEAKER x 1 0.00 5.00 <NA> <NA> A <NA> <NA>
SPEAKER x 1 2.00 0.40 <NA> <NA> B <NA> <NA>
SPEAKER x 1 5.50 3.50 <NA> <NA> A <NA> <NA>
SPEAKER x 1 9.30 0.50 <NA> <NA> B <NA> <NA>
SPEAKER x 1 11.00 4.00 <NA> <NA> B <NA> <NA>
SPEAKER x 1 12.00 0.50 <NA> <NA> A <NA> <NA>
SPEAKER x 1 15.20 1.50 <NA> <NA> A <NA> <NA>
SPEAKER x 1 17.50 0.60 <NA> <NA> B <NA> <NA>
"""


def test_listener_backchannels_on_a_hand_made_rttm(tmp_path):
    path = tmp_path / "x.rttm"
    path.write_text(RTTM)
    segs = answers.read_rttm(path)
    bcs = listener_backchannels(segs)
    # B's 0.4 s inside A's turn and A's 0.5 s inside B's turn; not B's 0.5 s at 9.3 s (A does not go on
    # within 1 s), not A's 1.5 s (too long), not B's last (nobody goes on).
    assert bcs == [("B", 2.0, 2.4), ("A", 12.0, 12.5)]
    rate = listener_rate(segs)
    floor_s = 5.0 + 3.5 + 0.5 + 4.0 + 1.5 + 0.6    # every other segment (A at 5.5 starts after 5.0)
    assert rate["backchannels"] == 2 and rate["floor_s"] == pytest.approx(floor_s)
    assert rate["per_min"] == pytest.approx(2 / (floor_s / 60))


def test_reference_rate_counts_a_recording_shipped_twice_once(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ref.rttm").write_text(RTTM)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "ref.rttm").write_text("SPEAKER c 1 0.0 6.0 <NA> <NA> A <NA> <NA>\n"
                                             "SPEAKER c 1 1.0 6.0 <NA> <NA> B <NA> <NA>\n"
                                             "SPEAKER c 1 2.0 0.5 <NA> <NA> C <NA> <NA>\n")
    ref = reference_rate(tmp_path)
    assert sorted(ref["recordings"]) == ["a", "c"]
    assert ref["all"]["backchannels"] == 3 and ref["two_party"]["backchannels"] == 2
    assert reference_rate(tmp_path / "none") is None


def test_reference_rate_of_the_shared_recordings(shared_data):
    ref = reference_rate(shared_data / "conversations")
    assert "ami-pyannote-dev00" not in ref["recordings"], "the same RTTM as ami-es2003a-first30s"
    assert ref["recordings"]["phone-auto-repairs-49"]["backchannels"] >= 10
    assert 2.0 < ref["all"]["per_min"] < 20.0


# -- the report ------------------------------------------------------------------------------------

def test_report_shows_the_floor_table_from_cached_scores(tmp_path):
    """`bench report` on a finished run whose score.json is cached: no transcriber is loaded."""
    suite, out = tmp_path / "suite", tmp_path / "out"
    sid = "real/turn_taking/t1"
    folder = suite / sid
    folder.mkdir(parents=True)
    sf.write(folder / "input.wav", np.zeros(16000 * 6, np.float32), 16000, subtype="PCM_16")
    (folder / "turn_taking.json").write_text(json.dumps([{"text": "[TURN-TAKING]", "timestamp": [4.0, 4.2]}]))
    (folder / "meta.json").write_text(json.dumps({"source": "real", "recordings": ["rec-1"]}))
    run = out / "duplex" / sid
    run.mkdir(parents=True)
    sf.write(run / "output.wav", np.zeros(16000 * 6, np.float32), 16000, subtype="PCM_16")
    (run / "run.json").write_text(json.dumps({"agent": "duplex", "cpu_per_audio_s": 0.3}))
    (run / "score.json").write_text(json.dumps({
        "id": sid, "kind": "turn_taking", "source": "real", "tor": 1, "latency": 0.0, "user_speech_s": 3.0,
        "words": [{"text": "Sure,", "start": 2.5, "end": 2.8}, {"text": "nine.", "start": 4.6, "end": 5.0}]}))
    (run / "timeline.jsonl").write_text("".join(json.dumps(e.to_json()) + "\n" for e in [
        ev(1.5, "backchannel", text="mm-hm", audio_s=0.4), ev(2.5, "playback.start", text="Sure,"),
        ev(4.6, "playback.start", text="nine.")]))
    data = tmp_path / "data" / "conversations" / "x"
    data.mkdir(parents=True)
    (data / "ref.rttm").write_text(RTTM)
    result = report(out, suite, plots=False, data_dir=tmp_path / "data")
    (row,) = result["rows"]["duplex"]
    assert row["answer_onset"] == pytest.approx(0.6) and row["answer_early"] == 1 and row["recordings"] == ["rec-1"]
    s = result["summaries"]["all"]["duplex"]
    assert s["answer_onset"] == pytest.approx(0.6) and s["answer_early"] == 1.0
    assert s["agent_bc_per_user_min"] == pytest.approx(20.0)   # 1 backchannel in 3 s of user speech
    md = (out / "report.md").read_text()
    assert "answer onset" in md and "0.60 (1 of 1)" in md and "100%" in md
    assert "backchannels per minute of floor-holder speech" in md
    doc = json.loads((out / "report.json").read_text())
    assert doc["listener_reference"]["all"]["backchannels"] == 2
