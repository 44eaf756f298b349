"""Full-Duplex-Bench v1 metrics and scenario loading: hand-made cases with known answers, FDB's own
example data (read in place from ../shared, never copied into the repo: it is CC BY-NC), and one pass
through our Whisper transcription of FDB's example outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from fullduplex.bench.metrics import (
    aggregate, backchannel_metrics, interruption_metrics, load_chunks, merge_gaps, overlap_stats,
    score_scenario, segments_from_probs, speech_during_user, speech_probabilities, takeover, timing_histogram,
    transcribe_words, turn_taking_metrics,
)
from fullduplex.bench.scenarios import load_suite
from fullduplex.errors import UserError
from fullduplex.models.stt import Transcript, Word

from .conftest import DATA, SHARED

FDB = SHARED / "reference" / "fdb-v1"
EXAMPLES = FDB / "example_data"
needs_fdb = pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"FDB v1's example data is not at {EXAMPLES} "
                               "(it is CC BY-NC and kept out of the repo)")


def words(*spans, text="word"):
    return [Word(text, s, e) for s, e in spans]


# --- takeover and the per-kind rules, hand-made ----------------------------------------------

def test_takeover_rules():
    assert takeover([]) == 0
    assert takeover(words((3.4, 4.0), (4.1, 4.6))) == 1            # 1.2 s of words inside a pause
    assert takeover(words((1.0, 1.1), (1.1, 1.2), (1.2, 1.3), (1.3, 1.4))) == 1  # 4 short words: by count
    assert takeover(words((1.0, 1.2), (1.3, 1.5), (1.6, 1.9))) == 0  # 3 words over 0.9 s: a backchannel
    assert takeover(words((2.0, 3.0))) == 1                          # one word, exactly 1 s


def test_turn_taking_latency_and_clipping():
    assert turn_taking_metrics(words((2.3, 2.8), (2.8, 3.5)), turn_end=2.0) == pytest.approx(
        {"tor": 1, "latency": 0.3})
    early = turn_taking_metrics(words((1.5, 2.0), (2.0, 3.0)), turn_end=2.0)
    assert early == {"tor": 1, "latency": 0.0}                      # started before the turn end: clipped
    assert turn_taking_metrics(words((2.5, 2.7)), turn_end=2.0) == {"tor": 0, "latency": None}


def test_interruption_metrics():
    agent = [(5.0, 6.0), (6.2, 7.4), (9.0, 12.0)]                   # 0.2 s pause: still talking
    m = interruption_metrics(words((9.1, 9.5), (9.5, 10.8)), (7.0, 8.5), agent)
    assert m["tor"] == 1 and m["latency"] == pytest.approx(0.6) and m["stop_latency"] == pytest.approx(0.4)
    quiet = interruption_metrics([], (8.0, 8.5), agent)            # silent when the user starts, never answers
    assert quiet == {"tor": 0, "latency": None, "stop_latency": 0.0}
    assert merge_gaps([(0, 1), (1.4, 2), (3, 4)], 0.5) == [(0, 2), (3, 4)]


def test_backchannel_rules_and_fdb_quirks():
    # Two short nods (<= 2 words, < 1 s): no takeover, two events.
    segs = [(1.0, 1.4), (5.0, 5.3)]
    m = backchannel_metrics(segs, words((1.0, 1.3), (5.0, 5.2)), 10.0, human=None)
    assert m == {"tor": 0, "bc_freq": 0.2, "bc_jsd": None, "bc_events": 2, "bc_takeovers": 0}
    # FDB replaces the verdict at every segment: a 2 s takeover followed by a nod leaves TOR 0.
    m = backchannel_metrics([(0.0, 2.0), (5.0, 5.3)], words((0.1, 1.9), (5.0, 5.2)), 10.0)
    assert (m["tor"], m["bc_events"], m["bc_takeovers"]) == (0, 2, 1)
    # A segment over 3 s ends the scan: TOR 1, later segments are not events.
    m = backchannel_metrics([(0.0, 0.4), (1.0, 5.0), (6.0, 6.3)], [], 10.0)
    assert (m["tor"], m["bc_events"]) == (1, 1)
    # Three words in a short segment is a takeover.
    assert backchannel_metrics([(1.0, 1.6)], words((1.0, 1.2), (1.2, 1.4), (1.4, 1.6)), 4.0)["tor"] == 1


def test_backchannel_jsd():
    human = timing_histogram([(0.0, 0.3)], 2.0)                     # bins 0-1 of 11
    assert human.shape == (11,) and human.sum() == pytest.approx(1.0) and human[0] == pytest.approx(0.5)
    assert backchannel_metrics([], [], 2.0, human)["bc_jsd"] == 1.0      # agent never backchannels
    same = backchannel_metrics([(0.0, 0.3)], [], 2.0, human)["bc_jsd"]
    apart = backchannel_metrics([(1.0, 1.3)], [], 2.0, human)["bc_jsd"]  # bins 5-6: disjoint mass
    assert same == pytest.approx(0.0, abs=1e-6)
    assert apart == pytest.approx(math.sqrt(math.log(2)), abs=1e-4)     # JS distance, natural log
    # A human histogram of another length is linearly resampled to the agent's bins.
    assert backchannel_metrics([(0.0, 0.3)], [], 2.0, np.repeat(human, 2)[:21])["bc_jsd"] < 0.3


def test_vad_segmentation_rule():
    """get_speech_timestamps at its defaults, on hand-made probabilities (512-sample chunks)."""
    probs = [0.1, 0.1] + [0.9] * 11 + [0.1] * 10 + [0.9] * 7 + [0.1] * 10
    # Speech from chunk 2 (1024) to chunk 13 (6656); the 7-chunk run (3584 samples <= 250 ms) is dropped;
    # 30 ms (480 samples) of padding each side.
    assert segments_from_probs(np.array(probs), len(probs) * 512) == [(544 / 16000, 7136 / 16000)]
    assert segments_from_probs(np.array(probs), len(probs) * 512, decimals=1) == [(0.0, 0.4)]


def test_speech_during_user_overlap():
    stats = overlap_stats(user=[(0.0, 2.0), (3.0, 5.0)], agent=[(1.5, 2.5), (5.2, 5.6), (9.0, 9.3)])
    # 0.5 s of 4 s overlapped; one backchannel: (5.2, 5.6) is short and starts 0.2 s after the user;
    # (1.5, 2.5) is 1 s long, (9.0, 9.3) is long after the user.
    assert stats == pytest.approx({"speech_during_user_share": 0.125, "bc_per_user_min": 15.0,
                                   "user_speech_s": 4.0})
    assert overlap_stats([], [(0.0, 1.0)])["speech_during_user_share"] is None


def test_speech_during_user_on_real_audio():
    clip, _ = sf.read(DATA / "jfk.wav", dtype="float32")
    silent = np.zeros_like(clip)
    assert speech_during_user(clip, silent)["speech_during_user_share"] == 0.0
    assert speech_during_user(clip, clip)["speech_during_user_share"] == pytest.approx(1.0)


class FakeStt:
    name = "fake"

    def __init__(self, result):
        self.result, self.seen = result, None

    def transcribe(self, audio, word_timestamps=False):
        self.seen = len(audio)
        return self.result


def test_transcribe_words_cuts_and_shifts():
    stt = FakeStt(Transcript("hi there", [Word("hi", 0.1, 0.3), Word("there", 0.3, 0.6)]))
    hum = (0.01 * np.sin(np.arange(16000 * 3) * 2 * np.pi * 100 / 16000)).astype(np.float32)   # not silence
    got = transcribe_words(hum, stt, start_s=1.0)
    assert stt.seen == 32000 and [t for w in got for t in (w.start, w.end)] == pytest.approx([1.1, 1.3, 1.3, 1.6])
    with pytest.raises(UserError, match="word timestamps"):
        transcribe_words(np.zeros(16000, np.float32), FakeStt(Transcript("hello", [])))


def test_a_short_agent_word_stamped_long_is_clipped_to_its_sound():
    """A 0.15 s burst of real speech (an agent's "Uh-huh."), which FDB's VAD rule drops (segments of
    250 ms or less), and a Whisper stamp of 1.4 s around it: clipped to the burst, it is no turn."""
    clip, _ = sf.read(DATA / "ljspeech-LJ002-0020.wav", dtype="float32")
    audio = np.zeros(3 * 16000, np.float32)
    audio[32000:32000 + 2400] = clip[8000:10400]
    assert segments_from_probs(speech_probabilities(audio), len(audio)) == [], "FDB's rule: no segment"
    got = transcribe_words(audio, FakeStt(Transcript("Oh.", [Word("Oh.", 0.9, 2.3)])))
    assert 1.9 < got[0].start and got[0].end - got[0].start < 0.35 and takeover(got) == 0, got


def test_aggregate():
    rows = [{"kind": "turn_taking", "tor": 1, "latency": x} for x in (0.1, 0.2, 0.3, 0.4)]
    rows += [{"kind": "turn_taking", "tor": 0, "latency": None}, {"kind": "pause", "tor": 1}]
    agg = aggregate(rows)
    tt = agg["turn_taking"]
    assert tt["n"] == 5 and tt["tor"] == pytest.approx(0.8)
    assert tt["latency_median"] == pytest.approx(0.25) and tt["latency_mean"] == pytest.approx(0.25)
    assert tt["latency_p90"] == pytest.approx(0.37) and tt["latency_n"] == 4
    assert agg["pause"] == {"n": 1, "tor": 1.0} and agg["all"]["n"] == 6


# --- scenarios ---------------------------------------------------------------------------------

def write_scenario(folder, annotation_name=None, annotation=None, audio=True):
    folder.mkdir(parents=True)
    if audio:
        sf.write(folder / "input.wav", np.zeros(8000, np.float32), 16000)
    if annotation_name:
        text = annotation if isinstance(annotation, str) else json.dumps(annotation)
        (folder / annotation_name).write_text(text)


def test_load_suite_reports_bad_folders_and_loads_the_rest(tmp_path):
    ok = [{"text": "[PAUSE]", "timestamp": [1.0, 2.0]}]
    write_scenario(tmp_path / "pause" / "1", "pause.json", ok)
    write_scenario(tmp_path / "pause" / "2", "pause.json", '[{"text": "[PAUSE]",\n "timestamp": [1.0, 2.0]\n')
    write_scenario(tmp_path / "turn" / "1", "turn_taking.json", [{"text": "[TURN-TAKING]", "timestamp": [3, 2]}])
    write_scenario(tmp_path / "turn" / "2", "turn_taking.json", [{"text": "x", "timestamp": ["a", 2]}])
    write_scenario(tmp_path / "turn" / "3", "turn_taking.json", [{"text": "x"}])
    write_scenario(tmp_path / "intr" / "1", "interrupt.json", [{"context": "c", "timestamp": [1, 2]}])
    write_scenario(tmp_path / "intr" / "2", "interrupt.json",
                   [{"context": "c", "interrupt": "i", "timestamp": [1, 2]}])
    write_scenario(tmp_path / "none" / "1")                          # no annotation, not a backchannel folder
    write_scenario(tmp_path / "noaudio" / "1", "pause.json", ok, audio=False)
    write_scenario(tmp_path / "empty" / "1", "pause.json", ok, audio=False)
    (tmp_path / "empty" / "1" / "input.wav").write_bytes(b"")
    write_scenario(tmp_path / "icc_backchannel" / "7")               # FDB backchannel: input.wav only
    write_scenario(tmp_path / "ours" / "mono", "backchannel.json", [])
    (tmp_path / "ours" / "mono" / "meta.json").write_text('{"source": "real"}')

    scenarios, errors = load_suite(tmp_path)
    assert [(s.id, s.kind) for s in scenarios] == [
        ("icc_backchannel/7", "backchannel"), ("intr/2", "interrupt"), ("ours/mono", "backchannel"),
        ("pause/1", "pause")]
    by_id = {s.id: s for s in scenarios}
    assert by_id["icc_backchannel/7"].icc_key == "7" and by_id["icc_backchannel/7"].source == "fdb"
    assert by_id["ours/mono"].source == "real" and by_id["ours/mono"].icc_key is None
    assert by_id["pause/1"].span == (1.0, 2.0)

    msgs = {e.dir.relative_to(tmp_path).as_posix(): e.message for e in errors}
    assert len(msgs) == len(errors) == 8
    assert "pause/2/pause.json: not valid JSON (line 3" in msgs["pause/2"]
    assert "turn/1/turn_taking.json: each item needs a 'timestamp' [start, end]" in msgs["turn/1"]
    assert "start <= end" in msgs["turn/1"] and "[3, 2]" in msgs["turn/1"]
    assert "turn_taking.json" in msgs["turn/2"] and "['a', 2]" in msgs["turn/2"]
    assert "turn/3/turn_taking.json" in msgs["turn/3"] and "None" in msgs["turn/3"]
    assert "intr/1/interrupt.json: each item needs a 'interrupt' string" in msgs["intr/1"]
    assert "no annotation file" in msgs["none/1"]
    assert "noaudio/1/input.wav: missing" in msgs["noaudio/1"]
    assert "empty/1/input.wav: is empty" in msgs["empty/1"]


def test_load_suite_refuses_missing_or_empty_root(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        load_suite(tmp_path / "nope")
    with pytest.raises(UserError, match="holds no scenario"):
        load_suite(tmp_path)


def test_backchannel_scenario_jsd_sources(tmp_path):
    """FDB id with the ICC histogram beside the suite -> JSD 1 for a silent agent; our monologue -> None."""
    clip, _ = sf.read(DATA / "jfk.wav", dtype="float32")
    for folder in (tmp_path / "icc_backchannel" / "0", tmp_path / "ours" / "mono"):
        folder.mkdir(parents=True)
        sf.write(folder / "input.wav", clip, 16000)
    (tmp_path / "ours" / "mono" / "backchannel.json").write_text("[]")
    (tmp_path / "icc_gt_distribution.json").write_text(json.dumps({"0": [0.5, 0.5]}))
    sf.write(tmp_path / "silent.wav", np.zeros_like(clip), 16000)
    scenarios, errors = load_suite(tmp_path)
    assert not errors
    rows = {s.id: score_scenario(s, tmp_path / "silent.wav", words=[]) for s in scenarios}
    assert rows["icc_backchannel/0"]["bc_jsd"] == 1.0 and rows["icc_backchannel/0"]["bc_freq"] == 0.0
    assert rows["icc_backchannel/0"]["tor"] == 0 and rows["ours/mono"]["bc_jsd"] is None
    assert rows["ours/mono"]["speech_during_user_share"] == 0.0


# --- FDB's own example data ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def fdb_examples():
    if not EXAMPLES.is_dir():
        pytest.skip(f"FDB v1's example data is not at {EXAMPLES} (CC BY-NC, kept out of the repo)")
    scenarios, errors = load_suite(EXAMPLES)
    assert not errors, errors
    return {s.kind: s for s in scenarios}


@needs_fdb
def test_fdb_examples_from_their_chunks(fdb_examples):
    """Values derived by hand from FDB's example files:
    - pause: 12 chunks from 0.00 to 4.68 s -> span 4.68 s >= 1 -> TOR 1.
    - turn-taking: turn end = first number of [2.01, 2.40] = 2.01; first chunk "Yes," at 3.36;
      22 chunks to 10.38 -> TOR 1, latency 3.36 - 2.01 = 1.35 s.
    - interruption [10.5307, 13.144]: chunks (already cut at 13.144) from 17.224 to 28.124 -> TOR 1,
      latency 17.224 - 13.144 = 4.08 s. Stop latency from VAD on output.wav: the agent's segments
      (9.986-10.462, 10.562-11.23 s, a 0.1 s pause between words) -> 11.23 - 10.5307 = 0.70 s.
    """
    rows = {kind: score_scenario(s, s.dir / "output.wav", words=load_chunks(s.dir / "output.json"))
            for kind, s in fdb_examples.items()}
    assert rows["pause"]["tor"] == 1 and rows["pause"]["n_words"] == 12
    assert rows["turn_taking"]["tor"] == 1 and rows["turn_taking"]["latency"] == pytest.approx(1.35, abs=1e-9)
    intr = rows["interrupt"]
    assert intr["tor"] == 1 and intr["latency"] == pytest.approx(4.08, abs=1e-9)
    assert intr["stop_latency"] == pytest.approx(0.70, abs=0.05)
    # The pause example's agent talks over the user (it took the turn): audible in half the user's speech.
    assert 0.3 < rows["pause"]["speech_during_user_share"] < 0.7
    assert rows["turn_taking"]["speech_during_user_share"] == 0.0


@pytest.fixture(scope="module")
def whisper():
    from fullduplex.bench.metrics import default_stt
    return default_stt()


@pytest.mark.slow
@needs_fdb
def test_fdb_examples_through_our_whisper(fdb_examples, whisper):
    """Whisper base instead of FDB's parakeet: same verdicts; word times within 0.4 s (Whisper's word
    timing is coarser: on these files it put the first words 0.34 s late and 0.28 s early)."""
    rows = {kind: score_scenario(s, s.dir / "output.wav", stt=whisper) for kind, s in fdb_examples.items()}
    assert rows["pause"]["tor"] == 1
    assert rows["turn_taking"]["tor"] == 1 and rows["turn_taking"]["latency"] == pytest.approx(1.35, abs=0.4)
    assert rows["interrupt"]["tor"] == 1 and rows["interrupt"]["latency"] == pytest.approx(4.08, abs=0.4)
    assert rows["interrupt"]["n_words"] >= 25                         # FDB's chunks: 32 words


def test_word_times_are_clipped_to_speech():
    """A lone backchannel at 3.33-3.65 s that Whisper stamps 2.14-3.54 s is one short word, not a turn."""
    from fullduplex.bench.metrics import clip_to_speech
    from fullduplex.models.stt import Word
    words = clip_to_speech([Word("Oh", 2.14, 3.54)], [(3.33, 3.646)])
    assert [(w.start, w.end) for w in words] == [(3.33, 3.54)] and takeover(words) == 0
    assert clip_to_speech([Word("x", 1.0, 2.0)], []) == [Word("x", 1.0, 2.0)], "no speech: kept as is"


def test_a_word_written_into_digital_silence_is_no_word():
    """Whisper wrote "Oh." over 1.4 s of an agent's silent output in the demo's pause scenario, which FDB's
    rule scores as the agent taking the floor. A real quiet word (-45 dBFS, which the VAD may miss) stays."""
    from fullduplex.bench.metrics import drop_silent
    from fullduplex.models.stt import Word

    audio = np.zeros(4 * 16000, np.float32)
    t = np.arange(8000) / 16000
    audio[16000:24000] = (0.008 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)     # ~-45 dBFS, 1.0-1.5 s
    words = [Word("so", 1.05, 1.4), Word("Oh.", 2.2, 3.6)]
    assert drop_silent(words, audio) == [Word("so", 1.05, 1.4)]
