"""`bench run` and `bench report` end to end on a tiny suite: real agent, real time, resumable."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from fullduplex.bench.report import report
from fullduplex.bench.runner import effective_jobs, run_bench
from fullduplex.cli import main
from fullduplex.config import Config

from .conftest import DATA


def make_suite(root, tail_s: float = 8.0):
    """Two real scenarios from LJ Speech clips plus one broken folder."""
    clip, _ = sf.read(DATA / "ljspeech-LJ002-0020.wav", dtype="float32")
    turn = root / "real" / "turn_taking" / "lj0020"
    turn.mkdir(parents=True)
    # 8 s after the turn end: room for the sequential agent's ~2.4 s wait (here; a slower CPU or a longer
    # reply, synthesised whole, takes seconds more) and more than a second of answer after it
    sf.write(turn / "input.wav", np.concatenate([clip, np.zeros(int(tail_s * 16000), np.float32)]), 16000,
             subtype="PCM_16")
    (turn / "turn_taking.json").write_text(json.dumps([{"text": "[TURN-TAKING]", "timestamp": [1.45, 2.0]}]))
    (turn / "meta.json").write_text(json.dumps({"source": "real"}))
    pause = root / "real" / "pause" / "lj0020"
    pause.mkdir(parents=True)
    sf.write(pause / "input.wav", np.concatenate([clip, np.zeros(8000, np.float32), clip]), 16000, subtype="PCM_16")
    (pause / "pause.json").write_text(json.dumps([{"text": "[PAUSE]", "timestamp": [1.5, 2.0]}]))
    (pause / "meta.json").write_text(json.dumps({"source": "real"}))
    broken = root / "real" / "pause" / "broken"
    broken.mkdir(parents=True)
    shutil.copy(turn / "input.wav", broken / "input.wav")
    (broken / "pause.json").write_text("[{\"text\": \"[PAUSE]\", \"timestamp\": [1.0,")
    return root


@pytest.mark.slow
def test_run_resume_and_report(tmp_path, models, capsys):
    suite = make_suite(tmp_path / "suite")
    out = tmp_path / "out"
    logs = []
    run = run_bench(["sequential"], suite, out, log=logs.append)
    assert run.ran == 2 and not run.failed
    assert any("broken/pause.json" in line for line in logs), "the bad folder is named, the rest still ran"
    for sid in ("real/turn_taking/lj0020", "real/pause/lj0020"):
        folder = out / "sequential" / sid
        inp = sf.info(str(suite / sid / "input.wav"))
        outp = sf.info(str(folder / "output.wav"))
        assert outp.frames == inp.frames, "FDB layout: output.wav as long as input.wav"
        assert (folder / "timeline.jsonl").exists() and json.loads((folder / "run.json").read_text())["cpu_s"] > 0
    stamp = (out / "sequential" / "real/pause/lj0020" / "output.wav").stat().st_mtime_ns

    again = run_bench(["sequential"], suite, out, log=logs.append)
    assert again.ran == 0 and again.skipped == 2
    assert (out / "sequential" / "real/pause/lj0020" / "output.wav").stat().st_mtime_ns == stamp, "nothing redone"

    result = report(out)
    rows = {r["id"]: r for r in result["rows"]["sequential"]}
    turn = rows["real/turn_taking/lj0020"]
    assert turn["tor"] == 1 and 0.5 < turn["latency"] < 7.0, "the pipeline answers, late (700 ms wait + whole-reply TTS)"
    assert rows["real/pause/lj0020"]["tor"] == 0, "a 0.5 s pause is shorter than the 700 ms threshold: it holds"
    assert (out / "report.md").read_text().count("sequential") >= 1
    assert json.loads((out / "report.json").read_text())["summaries"]["real"]["sequential"]["n"] == 2
    assert (out / "plots" / "sequential" / "real__turn_taking__lj0020.png").stat().st_size > 5000


def test_a_finished_run_is_kept_only_for_the_same_code_and_settings(tmp_path):
    """``make demo`` twice after a change must not reprint the old numbers: run.json names what made it."""
    from fullduplex.bench.runner import RUN_FILE, code_stamp, is_done, scenario_dir
    from fullduplex.bench.scenarios import load_suite
    suite = make_suite(tmp_path / "suite", tail_s=0.5)
    scenario = load_suite(suite)[0][0]
    stamp = code_stamp(Config())
    assert stamp == code_stamp(Config()) and stamp != code_stamp(Config().with_(llm={"max_tokens": 61}))
    folder = scenario_dir(tmp_path / "out", "duplex", scenario)
    assert not is_done(tmp_path / "out", "duplex", scenario, stamp)
    folder.mkdir(parents=True)
    for marker, done in [({"code": stamp}, True), ({"code": "older"}, False), ({}, False), ("{\"co", False)]:
        (folder / RUN_FILE).write_text(marker if isinstance(marker, str) else json.dumps(marker))
        assert is_done(tmp_path / "out", "duplex", scenario, stamp) == done, marker


def test_jobs_capped_by_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    jobs, note = effective_jobs(4)
    assert jobs == 1 and "2 cores" in note
    assert effective_jobs(1) == (1, None)


def test_bench_cli_errors(tmp_path, capsys):
    assert main(["bench", "run", "--suite", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "fullduplex: error:" in capsys.readouterr().err
    assert main(["bench", "report", str(tmp_path / "nothing")]) == 2
    assert "no such bench output folder" in capsys.readouterr().err


@pytest.mark.slow
def test_each_real_scenario_meets_the_turn_model_that_never_heard_it(tmp_path, models):
    """`bench run --turn-models DIR`: the scenario cut from a recording runs with the model trained without
    it (``turn train --leave-one-out``'s index.json); a scenario of two recordings in different folds is
    refused by name, not run with a model that heard one of them."""
    from fullduplex.bench.runner import held_out_turn_model
    from fullduplex.bench.scenarios import load_suite
    from fullduplex.errors import UserError
    from fullduplex.turn.model import FAST_MODEL

    suite = make_suite(tmp_path / "suite", tail_s=2.0)   # which model answered, not what it said
    shutil.rmtree(suite / "real" / "pause")
    meta = suite / "real" / "turn_taking" / "lj0020" / "meta.json"
    meta.write_text(json.dumps({"source": "real", "recordings": ["ljspeech-LJ002-0020"]}))
    held = tmp_path / "held"
    held.mkdir()
    shutil.copy(FAST_MODEL, held / "asr-ljspeech.json")
    (held / "index.json").write_text(json.dumps({"ljspeech-LJ002-0020": "asr-ljspeech.json",
                                                 "jfk": "asr-jfk.json"}))   # the recordings models learnt from
    out = tmp_path / "out"
    run = run_bench(["predictive"], suite, out, turn_models=held)
    assert run.ran == 1 and not run.failed
    stats = json.loads((out / "predictive" / "real/turn_taking/lj0020" / "run.json").read_text())
    assert stats["turn_model"] == "asr-ljspeech.json"

    scenario = load_suite(suite)[0][0]
    assert held_out_turn_model(None, scenario) == ""
    scenario.recordings = ("ljspeech-LJ002-0020", "jfk")
    with pytest.raises(UserError, match="different folds"):
        held_out_turn_model(held, scenario)
    scenario.recordings = ("somewhere-else",)
    assert held_out_turn_model(held, scenario) == "", "no model learnt from it: the committed one has not either"
    scenario.recordings = ("jfk", "somewhere-else")
    assert held_out_turn_model(held, scenario).endswith("asr-jfk.json")
