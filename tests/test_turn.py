"""The predictive turn model (architecture 4): its signals, its trees, the shipped model, training.

Fast by design (the whole file in well under a minute on 2 cores): real models run only on a
handful of clips; the VAP check scores the shipped model on the phrase groups it never saw.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from fullduplex.cli import main
from fullduplex.models.smart_turn import SmartTurn, last_seconds, whisper_log_mel
from fullduplex.turn.gbm import GbmParams, Trees, fit
from fullduplex.turn.signals import prosody, text_markers, yin_pitch

from .conftest import read_clip

SR = 16000


def harmonic_glide(f_start: float, f_end: float, seconds: float = 1.2) -> np.ndarray:
    """A voiced-like tone (three harmonics) whose pitch moves geometrically from f_start to f_end."""
    n = int(seconds * SR)
    f = np.geomspace(f_start, f_end, n)
    phase = 2 * np.pi * np.cumsum(f) / SR
    return (0.3 * (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase))).astype(np.float32)


# --- prosody -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hz", [90.0, 150.0, 240.0])
def test_yin_finds_the_pitch_of_a_tone(hz):
    f0, voiced, _ = yin_pitch(harmonic_glide(hz, hz, 0.5))
    assert voiced.mean() > 0.9
    assert abs(np.nanmedian(f0) / hz - 1) < 0.02


def test_falling_and_rising_glides_give_the_right_slope_sign():
    silence = np.zeros(int(0.4 * SR), np.float32)
    falling = prosody(np.concatenate([harmonic_glide(220, 140), silence]), silence_s=0.4)
    rising = prosody(np.concatenate([harmonic_glide(140, 220), silence]), silence_s=0.4)
    level = prosody(harmonic_glide(160, 160))
    # 220 -> 140 Hz over 1.2 s is -7.8 semitones: about -6.5 st/s.
    assert -9 < falling["f0_final_slope"] < -4
    assert 4 < rising["f0_final_slope"] < 9
    assert abs(level["f0_final_slope"]) < 0.5
    assert falling["f0_final_rel"] < 0 < rising["f0_final_rel"]


def test_prosody_ignores_the_silence_after_speech():
    tone = harmonic_glide(220, 140)
    a = prosody(tone)
    b = prosody(np.concatenate([tone, np.zeros(SR, np.float32)]), silence_s=1.0)
    assert a["f0_final_slope"] == pytest.approx(b["f0_final_slope"])


def test_prosody_on_real_speech_is_plausible():
    clip = read_clip("jfk.wav")
    p = prosody(clip[:int(4.0 * SR)])
    f0, voiced, _ = yin_pitch(clip[:int(4.0 * SR)])
    assert 0.15 < voiced.mean() < 0.9
    assert 80 < np.nanmedian(f0) < 350                     # an adult voice
    assert 1.0 < p["rate_syl_s"] < 8.0                     # syllables per second
    assert all(np.isfinite(p[k]) for k in ("f0_range", "energy_final_rel", "voiced_frac"))


def test_prosody_costs_a_few_ms():
    clip = read_clip("jfk.wav")[:int(2.5 * SR)]
    prosody(clip)
    t = time.perf_counter()
    for _ in range(10):
        prosody(clip)
    assert (time.perf_counter() - t) / 10 < 0.015


# --- text markers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, marker", [
    ("I went to the store and", 1.0), ("so I was thinking that um", 1.0), ("it was because", 1.0),
    ("can you give me the", 1.0), ("it's kind of", 1.0),
    ("I went to the store.", 0.0), ("Yes, please.", 0.0), ("What time is it?", 0.0),
])
def test_trailing_markers(text, marker):
    assert text_markers(text)["continuation_marker"] == marker


def test_punctuation_and_open_clauses():
    assert text_markers("I went home.")["punct_final"] == 1.0
    assert text_markers("Are you a student?")["punct_question"] == 1.0
    assert text_markers("I went home,")["punct_continue"] == 1.0
    assert text_markers("If you go there")["open_subordinate"] == 1.0
    assert text_markers("If you go there, call me.")["open_subordinate"] == 0.0
    assert np.isnan(text_markers("")["continuation_marker"])


@pytest.fixture(scope="module")
def moonshine():
    from fullduplex.config import SttConfig
    from fullduplex.models.stt import load_stt
    return load_stt(SttConfig())


def test_real_clip_ending_in_and_vs_full_stop(moonshine):
    """LibriSpeech: '... the narrative would be tedious to him and | painful to myself.'"""
    clip = read_clip("librispeech-2412-153948-0000.wav")
    cut = moonshine.transcribe(clip[:int(AND_END_S * SR)]).text
    full = moonshine.transcribe(clip).text
    assert cut.lower().rstrip(" ,.?!…").endswith("and"), cut
    assert text_markers(cut)["continuation_marker"] == 1.0
    assert text_markers(full)["continuation_marker"] == 0.0


AND_END_S = 10.02   # end of "and" in librispeech-2412-153948-0000 (an energy dip before "painful"; checked with Moonshine)


# --- Smart Turn ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smart_turn():
    return SmartTurn()


def test_log_mel_shape_and_range():
    mel = whisper_log_mel(read_clip("jfk.wav"))
    assert mel.shape == (80, 800) and mel.dtype == np.float32
    assert 1.0 < mel.max() - mel.min() <= 2.0 + 1e-6       # floored 8 decades under the peak, divided by 4


def test_log_mel_matches_the_reference_front_end():
    """Same numbers as the feature code that ships beside the model (loaded from its file, not imported
    as a package: pipecat is installed without its dependencies)."""
    import importlib.util

    from fullduplex.models.packages import package_dir
    try:
        path = package_dir("pipecat", "pipecat-ai", "Smart Turn") / "audio/turn/smart_turn/_whisper_features.py"
    except Exception:
        pytest.skip("pipecat-ai is not installed")
    spec = importlib.util.spec_from_file_location("_reference_whisper_features", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    audio = last_seconds(read_clip("jfk.wav"), 8)
    assert np.abs(ref.compute_whisper_log_mel_features(audio) - whisper_log_mel(audio)).max() < 1e-5


def test_smart_turn_complete_vs_cut_mid_phrase(smart_turn):
    clip = read_clip("librispeech-2412-153948-0000.wav")
    pad = np.zeros(int(0.2 * SR), np.float32)
    complete = smart_turn.probability(np.concatenate([clip, pad]))
    cut = smart_turn.probability(np.concatenate([clip[:int(AND_END_S * SR)], pad]))
    assert 0.0 <= cut < complete <= 1.0


# --- the tree model ----------------------------------------------------------------------------------------

def test_gbm_learns_handles_missing_values_and_round_trips():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    y = ((X[:, 0] + (X[:, 1] > 0.5)) > 0.3).astype(float)
    X[rng.random(3000) < 0.2, 2] = np.nan          # an irrelevant feature, often missing
    X[:200, 0] = np.nan                            # the main one, sometimes missing
    trees = fit(X[:2000], y[:2000], ["a", "b", "c", "d"], GbmParams(n_trees=60))
    p = trees.predict(X[2000:])
    assert np.mean((p > 0.5) == y[2000:]) > 0.9
    again = Trees.from_dict(json.loads(json.dumps(trees.to_dict())))
    one = np.array([again.predict_one(list(x)) for x in X[2000:2100]])
    assert np.allclose(one, p[:100], atol=1e-6)
    assert np.isfinite(trees.predict(X[:200])).all()


# --- the shipped model ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor():
    from fullduplex.turn.model import TurnPredictor
    return TurnPredictor.load()


def test_shipped_models_load_and_describe_themselves(predictor):
    from fullduplex.turn.model import TurnPredictor
    assert predictor.uses_smart_turn and "smart_turn" in predictor.describe()
    assert predictor.version in predictor.describe()
    fast = TurnPredictor.load(fast=True)
    assert not fast.uses_smart_turn
    assert 0 < predictor.threshold < 1 and 0 < fast.threshold < 1


def test_predict_is_within_its_time_budget(predictor):
    clip = read_clip("jfk.wav")
    tail = np.concatenate([clip[:int(6 * SR)], np.zeros(int(0.3 * SR), np.float32)])
    predictor.reset()
    t = time.perf_counter()
    first = predictor.predict(tail[:-int(0.2 * SR)], "And so my fellow Americans", 0.1)   # signals, no Smart Turn yet
    t_first = time.perf_counter() - t
    predictor.predict(tail, "And so my fellow Americans", 0.3)                            # Smart Turn, once
    t = time.perf_counter()
    for _ in range(20):
        p = predictor.predict(tail, "And so my fellow Americans", 0.3)                    # cached
    t_cached = (time.perf_counter() - t) / 20
    assert 0 <= first <= 1 and 0 <= p <= 1
    assert t_first < 0.020
    assert t_cached < 0.003
    assert predictor.last_smart_turn_ms is not None and predictor.last_smart_turn_ms < 400


def test_decision_rule(predictor):
    assert not predictor.decision(1.0, 0.1)                          # never inside a word gap
    assert predictor.decision(predictor.threshold, 0.3)
    assert not predictor.decision(predictor.threshold - 0.01, 0.3)
    assert predictor.decision(0.0, predictor.max_silence_s)          # the silence fallback


def test_shipped_model_separates_the_vap_pairs_it_never_saw(predictor, shared_data, moonshine):
    """Short phrase ends (turn ends) vs long phrases cut at the same words (the turn goes on), for the
    VAP phrase groups left out of training: P(done) at 0.3 s of silence ranks them apart in at least
    70 % of the pairs (chance: 50 %)."""
    from fullduplex.turn.dataset import DataConfig
    from fullduplex.turn.evaluate import auc
    from fullduplex.turn.train import VAP_HELD_OUT
    from fullduplex.turn.vap import render_vap, vap_rows

    rows = [r for r in vap_rows(shared_data) if r["phrase"] in VAP_HELD_OUT][::2]   # 30 clips: 15 per side
    cfg = DataConfig(augment=False)
    done, held = [], []
    for j, row in enumerate(rows):
        clip, events = render_vap(row, j, cfg, pause_s=0.6, augment_it=False)
        e = events[0]
        audio = clip[:int((e.end_s + 0.3) * SR)]
        text = moonshine.transcribe(clip[int(0.2 * SR):int(e.end_s * SR)]).text
        predictor.reset()
        p = predictor.predict(audio, text, 0.3)
        (done if e.done else held).append(p)
    assert len(done) >= 10 and len(held) >= 10
    assert auc(np.array(done), np.array(held)) >= 0.70


@pytest.mark.slow
def test_real_model_learnt_from_the_real_pauses_the_labels_give(shared_data):
    """turn-real.json is trained on real speech only, on exactly the labelled pauses the shared
    recordings give today (a change to the labelling or the data means: retrain, and re-run `turn eval`).
    How well it does on recordings it never heard is `turn eval`'s leave-one-recording-out report."""
    from fullduplex.turn.labels import PauseCounts, conversation_pauses
    from fullduplex.turn.model import DATA_DIR, TurnPredictor
    from fullduplex.turn.real import monologue_pauses

    training = TurnPredictor.load(DATA_DIR / "turn-real.json").spec["training"]
    assert training["synthetic"] is False and training["real_weight"] > 0
    counts = PauseCounts()
    pauses, _ = conversation_pauses(shared_data / "conversations", counts=counts)
    assert training["conversations"] == sorted({p.source for p in pauses})
    assert "ami-pyannote-dev00" in counts.duplicates, "a recording shipped twice is read once"
    assert training["real_pauses"] == len(pauses) + len(monologue_pauses(shared_data).pauses)
    assert training["turn_ends"] == sum(p.done for p in pauses)


# --- training ---------------------------------------------------------------------------------------------

def test_scores_separation_and_bootstrap_intervals():
    from types import SimpleNamespace as P

    from fullduplex.turn.scoring import score, score_with_ci
    pauses = [P(done=True, gap_s=float("inf"))] * 6 + [P(done=False, gap_s=g) for g in (0.4, 0.6, 0.8, 1.2)]
    silence = score(np.full(10, 0.7), pauses, 1.0)
    assert silence["separation"] == 0.5 and silence["false_cutoffs"] == 0.5 and silence["shift_detected"] == 1.0
    knows = score_with_ci(np.array([0.3] * 6 + [1.5] * 4), pauses, 1.0, n=200)
    assert knows["separation"] == 1.0 and knows["false_cutoffs"] == 0.0 and knows["mean_delay_s"] == 0.3
    mixed = score_with_ci(np.array([0.3, 0.3, 0.3, 1.5, 1.5, 1.5, 0.3, 1.5, 0.3, 1.5]), pauses, 1.0, n=500)
    lo, hi = mixed["ci"]["separation"]
    assert lo < mixed["separation"] < hi and hi - lo > 0.2   # six shifts and four holds say little


def test_small_training_run_is_deterministic_and_loads(tmp_path):
    from fullduplex.turn.model import TurnPredictor
    from fullduplex.turn.train import TrainConfig, train

    cfg = TrainConfig.small(seed=3)
    a = train(cfg, tmp_path / "a.json", tmp_path / "cache-a")
    b = train(cfg, tmp_path / "b.json", tmp_path / "cache-b")
    assert a["trees"] == b["trees"] and a["threshold"] == b["threshold"]
    model = TurnPredictor.load(tmp_path / "a.json")
    assert not model.uses_smart_turn
    p = model.predict(harmonic_glide(200, 120, 1.5), "I went to the store and", 0.4)
    assert 0.0 <= p <= 1.0


def test_cli_rejects_bad_training_input(tmp_path, capsys):
    """(The CLI's good run is in the next test, which trains small with and without conversations.)"""
    out = tmp_path / "m.json"
    assert main(["turn", "train", "--small", "--items", "0", "--out", str(out)]) == 2
    assert main(["turn", "train", "--groups", "prosody,bogus", "--out", str(out)]) == 2
    assert main(["turn", "eval", "--model", str(tmp_path / "missing.json")]) == 2
    assert "error" in capsys.readouterr().err


def test_training_on_your_own_labelled_conversations(shared_data, tmp_path, capsys):
    """`turn train --conversations`: a recorded meeting with an RTTM joins the training data, as real speech
    (in place of the shared recordings)."""
    import shutil

    from fullduplex.turn.labels import conversation_pauses
    from fullduplex.turn.model import TurnPredictor

    mine = tmp_path / "mine"
    (mine / "call").mkdir(parents=True)
    src = shared_data / "conversations" / "ami-es2003a-first30s"
    shutil.copy(src / "audio.wav", mine / "call" / "call.wav")
    shutil.copy(src / "ref.rttm", mine / "call" / "call.rttm")
    pauses, _ = conversation_pauses(mine)
    assert any(p.done for p in pauses) and any(not p.done for p in pauses)

    out = tmp_path / "m.json"
    args = ["turn", "train", "--small", "--out", str(out), "--cache", str(tmp_path / "c")]
    assert main(args + ["--conversations", str(mine)]) == 0
    spec = json.loads(out.read_text())
    assert spec["training"]["conversations"] == ["call"]
    alone = tmp_path / "alone.json"
    assert main(["turn", "train", "--small", "--out", str(alone), "--cache", str(tmp_path / "c")]) == 0
    assert json.loads(alone.read_text())["format"] == "fullduplex-turn-model"
    assert spec["training"]["pauses"] == json.loads(alone.read_text())["training"]["pauses"] + len(pauses)
    assert spec["training"]["real_pauses"] == len(pauses) and spec["training"]["real_weight"] > 0
    assert TurnPredictor.load(out).spec["training"]["conversations"] == ["call"]

    (tmp_path / "empty").mkdir()
    assert main(args + ["--conversations", str(tmp_path / "empty")]) == 2
    assert main(args + ["--conversations", str(tmp_path / "nowhere")]) == 2
    assert main(["turn", "eval", "--conversations", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e")]) == 2
    assert "no conversation" in capsys.readouterr().err
