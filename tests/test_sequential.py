"""Architecture 1, the sequential cascade: its turn logic on a virtual clock, then on real speech in real time."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from fullduplex.audio.frames import rms_dbfs
from fullduplex.runtime.latency import STAGES, breakdown
from fullduplex.runtime.simulate import simulate
from fullduplex.config import Config
from fullduplex.testing import ScriptedLlm, ScriptedStack, run_scripted

from .conftest import DATA


def drive(stack, seconds):
    """The sequential agent on the test harness's settled virtual clock: conversation time measures
    the agent's logic alone."""
    run = run_scripted("sequential", stack, seconds)
    return run.events, run.output


def kinds(events, kind):
    return [e for e in events if e.kind == kind]


def test_turn_ends_after_the_silence_threshold():
    stack = ScriptedStack(spans=[(0.5, 2.0)])
    events, out = drive(stack, 5.0)
    (end,) = kinds(events, "turn.end")
    assert end.data["speech_end"] == pytest.approx(2.0, abs=0.033)
    assert end.t - end.data["speech_end"] == pytest.approx(0.7, abs=0.021)
    (start,) = kinds(events, "playback.start")
    assert start.t == pytest.approx(end.t, abs=0.021), "instant models: audio starts at the decision"
    audible = np.flatnonzero(np.abs(out) > 1e-3) / 16000
    assert audible[0] == pytest.approx(start.t, abs=0.001) and audible[-1] == pytest.approx(start.t + 1.0, abs=0.021)


def test_does_not_listen_while_speaking_then_listens_again():
    # The user talks over the 1 s reply (at 2.9-3.3 s), then asks again at 5-6 s.
    stack = ScriptedStack(spans=[(0.5, 2.0), (2.9, 3.3), (5.0, 6.0)])
    events, _ = drive(stack, 8.0)
    overlapped = [e for e in kinds(events, "vad.speech_start") if 2.8 < e.t < 3.4]
    assert overlapped and overlapped[0].data["heard"] is False
    ends = kinds(events, "turn.end")
    assert [round(e.data["speech_end"], 1) for e in ends] == [2.0, 6.0]
    assert len(kinds(events, "playback.start")) == 2
    history = stack.llm.calls[1]
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user"]


def test_a_failing_model_is_reported_and_the_conversation_goes_on():
    stack = ScriptedStack(spans=[(0.5, 2.0), (4.0, 5.0)], llm=ScriptedLlm(fail=True))
    events, out = drive(stack, 7.0)
    errors = kinds(events, "error")
    assert len(errors) == 2 and "model exploded" in errors[0].data["message"]
    assert len(kinds(events, "turn.end")) == 2 and np.abs(out).max() == 0


@pytest.mark.slow
def test_answers_a_real_user_turn_in_real_time(models, tmp_path):
    """AMI headset clip: "Um I'm Abigail Claflin ... you can call me Abbie", speech ends at ~4.5 s."""
    cfg = Config().with_(runtime={"tail_s": 5.0})
    sim = simulate(cfg, "sequential", DATA / "ami-es2011a-headset-40s-46s.wav", tmp_path, models=models)
    events = sim.result.events
    assert [e.t for e in events] == sorted(e.t for e in events), "timeline is monotonic"
    assert all(e.kind != "error" for e in events)
    inp, rate = sf.read(sim.paths["input.wav"], dtype="float32")
    outp, _ = sf.read(sim.paths["output.wav"], dtype="float32")
    assert rate == 16000 and len(outp) == len(inp) == pytest.approx(11.0 * 16000, abs=320)
    (turn,) = sim.turns
    assert 4.2 < turn.speech_end < 4.8
    start = kinds(events, "playback.start")[0].t
    assert rms_dbfs(outp[: int(start * 16000)]) < -90, "silent while the user speaks and until it answers"
    assert rms_dbfs(outp[int(start * 16000): int((start + 0.5) * 16000)]) > -40, "then speaks"
    stages = [turn.stages[c] for c, _ in STAGES]
    assert None not in stages and stages == sorted(stages), stages
    assert turn.user_text and turn.agent_text
    assert breakdown(events)[0].response == turn.response
