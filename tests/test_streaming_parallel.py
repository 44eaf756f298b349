"""Architectures 2 and 3: the piece segmenter, streaming TTS, and the fast + slow pair's override."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fullduplex.audio.clock import RealClock
from fullduplex.config import Config
from fullduplex.engines import make_agent
from fullduplex.engines.parallel import decide
from fullduplex.engines.text_pieces import TextPieces, split_pieces
from fullduplex.runtime.runner import run_agent
from fullduplex.runtime.simulate import simulate
from fullduplex.testing import ScriptedLlm, ScriptedStack, run_scripted, wait_idle

from .conftest import DATA


@pytest.mark.parametrize("text, pieces", [
    ("Dr. Smith is in. He left.", ["Dr. Smith is in.", "He left."]),
    ("Pi is 3.14 roughly. Okay?", ["Pi is 3.14 roughly.", "Okay?"]),
    ("Well... maybe. Wait... No!", ["Well... maybe.", "Wait...", "No!"]),
    ('He said "Hello." Then he left!', ['He said "Hello."', "Then he left!"]),
    ("You need: 1. Eggs 2. Milk. That's it.", ["You need: 1. Eggs 2. Milk.", "That's it."]),
    ("J. K. Rowling wrote it. Great.", ["J. K. Rowling wrote it.", "Great."]),
    ("Meet at 3 p.m. tomorrow, e.g. at the cafe. Ok.", ["Meet at 3 p.m. tomorrow, e.g. at the cafe.", "Ok."]),
    ("Lists:\n- eggs\n- milk\nDone.", ["Lists:", "- eggs", "- milk", "Done."]),
    ("Really?! Yes.", ["Really?!", "Yes."]),
])
def test_segmenter(text, pieces):
    assert split_pieces(text) == pieces
    streamed = TextPieces()
    out = [p for ch in text for p in streamed.push(ch)] + streamed.flush()
    assert out == pieces, "token by token gives the same pieces"


def test_first_clause_option():
    text = "Sure, I can help you with that today, and more. Bye."
    assert split_pieces(text, first_clause=True) == ["Sure, I can help you", "with that today, and more.", "Bye."]
    assert split_pieces("Sure, fine. Bye.", first_clause=True) == ["Sure, fine.", "Bye."], "too short a clause waits"
    assert split_pieces("In recent years, there has been a growing concern.", first_clause=True) == \
        ["In recent years,", "there has been a growing concern."]
    # a long first sentence with no clause boundary: cut before a phrase once 4 words precede it
    long = "I can assist with everything from planning a wedding to providing advice. Anything else?"
    assert split_pieces(long, first_clause=True) == ["I can assist with everything",
                                                     "from planning a wedding to providing advice.", "Anything else?"]
    assert split_pieces(long) == ["I can assist with everything from planning a wedding to providing advice.",
                                  "Anything else?"], "only the first piece, only with first_clause"
    assert split_pieces("This is a classic example of a backstory.", first_clause=True) == \
        ["This is a classic example of a backstory."], "no phrase word after 4 words: one piece"


def test_a_repeated_sentence_ends_the_reply():
    pieces = TextPieces(first_clause=True)
    text = "I'm so sorry, I missed that. Could you say it again? I'm so sorry, I missed that. Could you"
    out = [p for word in text.split(" ") for p in pieces.push(word + " ")]
    assert out == ["I'm so sorry,", "I missed that.", "Could you say it again?"], "the second time it is not said"
    assert pieces.looping and pieces.push("say it again? ") == [] and pieces.flush() == []
    # a clause that comes again is no loop (only a whole sentence counts), nor is a sentence said once
    assert split_pieces("Well, yes. Well, maybe. Okay.") == ["Well, yes.", "Well, maybe.", "Okay."]
    assert split_pieces("No! No! Stop.") == ["No!"], "the same short sentence twice is a loop too"


def test_a_reply_cut_off_ends_on_its_last_whole_sentence():
    cut = TextPieces()
    assert cut.push("Boil the egg for nine minutes. Then put it in cold water and ") == ["Boil the egg for nine minutes."]
    assert cut.flush(cut_off=True) == [], "half a sentence after a whole one is left unsaid"
    inside = TextPieces(first_clause=True)
    assert inside.push("I can assist with everything from planning a wedding to") == ["I can assist with everything"]
    assert inside.flush(cut_off=True) == ["from planning a wedding to"], "a sentence already begun goes on"
    ended = TextPieces()
    ended.push("Sure thing")
    assert ended.flush() == ["Sure thing"], "a reply that ended by itself is said as written"


class SlowTokens(ScriptedLlm):
    def stream(self, messages, cancel=None):
        for token in super().stream(messages, cancel):
            time.sleep(0.08)   # ~20 tokens: the LLM writes for 1.6 s, far longer than one sentence takes to speak
            yield token


def test_streaming_first_audio_before_the_llm_finishes(models):
    reply = "The library opens at nine. It closes at six on weekdays. On Sundays it stays closed all day long."
    stack = ScriptedStack(spans=[(0.3, 1.5)], llm=SlowTokens(reply))
    stack.tts = models.tts  # real Piper: the pieces are really synthesised
    # 9.5 s: the turn ends at ~2.2 s, the LLM writes until ~3.8 s, the third piece starts playing at ~6.1 s
    result = run_agent(make_agent("streaming", stack, Config()), np.zeros(int(16000 * 9.5), np.float32), RealClock())
    ev = result.events
    start = next(e for e in ev if e.kind == "playback.start")
    done = next(e for e in ev if e.kind == "llm.done")
    assert start.t < done.t - 0.3, f"first audio {start.t:.2f} s, LLM done {done.t:.2f} s"
    spoken = [e.data["text"] for e in ev if e.kind == "playback.piece"]
    assert spoken == split_pieces(reply)
    assert set(result.queues) == {"streaming-think", "streaming-speak"} and result.jobs_refused == 0
    assert 0 < result.queue_fill <= 1.0


@pytest.mark.slow
def test_streaming_speaks_exactly_the_reply_on_real_speech(models, tmp_path):
    sim = simulate(Config().with_(runtime={"tail_s": 5.0}), "streaming", DATA / "ami-es2011a-headset-40s-46s.wav",
                   tmp_path, models=models)
    ev = sim.result.events
    reply = next(e.data["text"] for e in ev if e.kind == "llm.done")
    spoken = " ".join(e.data["text"] for e in ev if e.kind == "playback.piece")
    assert spoken.split() == reply.split(), "nothing dropped, duplicated or reordered at piece boundaries"
    assert sim.turns[0].response is not None


# -- the fast + slow pair, on a virtual clock with gated fakes --------------------------------------

FAST = "Paris is in Spain. It has a big tower. People love it there."


def drive_pair(stack, seconds, release_at=None, gate=None):
    """The pair on the settled clock; the slow model is not waited for until the test opens its gate."""
    def release(conversation):
        gate.set()
        wait_idle(conversation.slow)
    actions = {release_at: release} if gate is not None and release_at is not None else {}
    run = run_scripted("parallel", stack, seconds, actions, skip=("parallel-slow",))
    return run.conversation, run.events


def test_slow_model_that_disagrees_takes_over_at_a_piece_boundary():
    gate = threading.Event()
    stack = ScriptedStack(spans=[(0.3, 1.0)], llm=ScriptedLlm(FAST),
                      slow_llm=ScriptedLlm("Paris is in France. It is the capital.", gate=gate))
    # Turn ends at ~1.7 s; fast pieces are 1 s each: piece 0 plays 1.7-2.7, piece 1 2.7-3.7. Release at 2.2 s.
    agent, ev = drive_pair(stack, 9.0, release_at=2.2, gate=gate)
    (decision,) = [e for e in ev if e.kind == "parallel.decision"]
    assert decision.data["decision"] == "replace" and decision.data["heard_change"]
    pieces = [(round(e.t, 2), e.data["text"]) for e in ev if e.kind == "playback.piece"]
    assert [p for _, p in pieces] == ["Paris is in Spain.", "Actually, paris is in France.", "It is the capital."]
    assert pieces[1][0] == pytest.approx(pieces[0][0] + 1.0, abs=0.021), "the first piece was played whole"
    history = agent.history[-1]["content"]
    assert history == "Paris is in Spain. Actually, paris is in France. It is the capital."


def test_slow_model_that_agrees_changes_nothing():
    gate = threading.Event()
    stack = ScriptedStack(spans=[(0.3, 1.0)], llm=ScriptedLlm(FAST), slow_llm=ScriptedLlm(FAST, gate=gate))
    agent, ev = drive_pair(stack, 6.0, release_at=2.2, gate=gate)
    assert [e.data["decision"] for e in ev if e.kind == "parallel.decision"] == ["keep"]
    assert [e.data["text"] for e in ev if e.kind == "playback.piece"] == split_pieces(FAST)
    assert agent.history[-1]["content"] == FAST


def test_slow_model_that_fails_leaves_the_fast_reply_and_logs_once():
    stack = ScriptedStack(spans=[(0.3, 1.0), (6.0, 7.0)], llm=ScriptedLlm(FAST), slow_llm=ScriptedLlm(fail=True))
    # the slow worker settled too (it fails at once): not waiting for it raced its failure against the
    # 12 virtual seconds, which a loaded machine ran before the thread was scheduled (seen in a full run)
    ev = run_scripted("parallel", stack, 12.0).events
    errors = [e for e in ev if e.kind == "error"]
    assert len(errors) == 1 and errors[0].data["where"] == "slow"
    assert [e.data["text"] for e in ev if e.kind == "playback.piece"] == split_pieces(FAST) * 2
    assert not [e for e in ev if e.kind == "parallel.decision"]


def test_decide():
    assert decide("", FAST, FAST) == ("keep", "")
    assert decide("", FAST, "Paris is in France.") == ("replace_unheard", "Paris is in France.")
    assert decide("Paris is in Spain.", FAST, "Paris is in France. It is the capital.")[0] == "replace"
    fast = "Paris is a city. It is in Spain, and it is very small and very quiet."
    slow = "Paris is a city. The capital of France, with famous museums, a great river and many old bridges."
    assert decide("Paris is a city.", fast, slow) == (
        "amend", "The capital of France, with famous museums, a great river and many old bridges.")
