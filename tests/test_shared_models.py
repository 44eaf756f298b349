"""Who goes first at a model the conversations share (issue 17): a user waiting for an answer before a
draft, and among answers, the user who finished first."""

from __future__ import annotations

import threading
import time

import numpy as np

from fullduplex.engines.voice import AHEAD_S, Voice
from fullduplex.models.priority import SharedModelLock, speculative


def contend(requests: list[tuple[str, object]], lock: SharedModelLock, hold_s: float = 0.05) -> list[str]:
    """One holder, then ``requests`` (name, until: None for an answer) queue up in this order; the order in
    which they get the model."""
    served: list[str] = []
    release = threading.Event()

    def holder():
        with lock:
            release.wait(5)

    def ask(name, until):
        def run():
            if until is None:
                with lock:
                    served.append(name)
            else:
                with speculative(until), lock:
                    served.append(name)
            time.sleep(hold_s / 10)
        return threading.Thread(target=run, name=name)
    first = threading.Thread(target=holder)
    first.start()
    while not lock.busy:
        time.sleep(0.001)
    threads = []
    for name, until in requests:
        threads.append(ask(name, until))
        threads[-1].start()
        # Arrival order is the list's order: each waits for the model before the next starts (a 50 ms sleep
        # between starts did not guarantee it on a busy box: one failure in a full run).
        deadline = time.monotonic() + 5
        while lock.state()["waiting"] < len(threads) and time.monotonic() < deadline:
            time.sleep(0.001)
    release.set()
    for t in [first, *threads]:
        t.join(5)
    return served


def test_answers_go_before_drafts_and_the_first_to_finish_is_served_first():
    lock = SharedModelLock()
    never = lambda: False   # noqa: E731
    served = contend([("draft-a", never), ("answer-b", None), ("draft-c", never), ("answer-d", None)], lock)
    assert served == ["answer-b", "answer-d", "draft-a", "draft-c"]
    assert lock.overtaken == 2 and not lock.busy


def test_the_lock_counts_who_waited_how_long_and_who_held_it():
    lock = SharedModelLock()
    never = lambda: False   # noqa: E731
    t0 = time.monotonic()
    contend([("draft-a", never), ("answer-b", None)], lock)
    turns = lock.state()["turns"]
    assert turns["urgent"]["n"] == 2 and turns["other"]["n"] == 1, "the first holder (an answer) and answer-b; the draft"
    # answer-b waited for the first holder only, the draft for both: its wait is the longer
    assert turns["urgent"]["wait_p90_s"] <= turns["other"]["wait_p50_s"] <= time.monotonic() - t0
    assert turns["urgent"]["held_s"] >= turns["urgent"]["hold_p90_s"] >= turns["urgent"]["hold_p50_s"] >= 0


def test_the_rest_of_a_reply_with_audio_to_play_waits_behind_a_users_first_words():
    """A reply that let another call in goes on before other calls' answers only once less than
    ``AHEAD_S`` of its audio is left (issue 17: at 12 calls, 80 % of what the LLM wrote while an
    answer waited was the rest of replies already playing)."""
    voice = Voice("a", None, lambda *a, **k: None, 30.0)
    voice._left_s = AHEAD_S + 1.0     # a sentence still playing
    assert contend([("rest-of-a", voice.needed(AHEAD_S)), ("answer-b", None)], SharedModelLock()) == \
        ["answer-b", "rest-of-a"]
    voice._left_s = AHEAD_S - 0.5     # about to fall silent: first come, first served
    assert contend([("rest-of-a", voice.needed(AHEAD_S)), ("answer-b", None)], SharedModelLock()) == \
        ["rest-of-a", "answer-b"]


def test_a_waiting_draft_becomes_an_answer_when_its_floor_is_taken():
    lock = SharedModelLock()
    floor = threading.Event()
    floor.set()   # taken while it waited: it now goes in its arrival order among the answers
    served = contend([("draft-a", floor.is_set), ("answer-b", None)], lock)
    assert served == ["draft-a", "answer-b"]


def test_urgency_that_changes_between_two_looks_does_not_leave_a_free_model_unused():
    """A reply's urgency changes while it waits (its audio ran low, then a piece topped it up). The two
    waiters below each see the other as next when the model is freed — B sees A urgent, A sees itself
    not urgent and B first — and each went back to sleep: every call of a loaded server then waited for
    a free LLM for good (seen at 10 calls, issue 17). Now the first to look at the free model chooses."""
    lock = SharedModelLock()
    a_is_urgent = lambda: threading.current_thread().name == "B"   # noqa: E731  true only in B's look
    served = contend([("B", lambda: False), ("A", a_is_urgent)], lock)
    assert sorted(served) == ["A", "B"] and not lock.busy


def test_one_conversation_alone_is_never_held_back():
    lock = SharedModelLock()
    with speculative(lambda: False), lock:
        assert lock.busy
    with lock:
        pass
    assert not lock.busy and lock.overtaken == 0


class HeldTts:
    """A voice whose synthesis lasts until it is stopped (or 5 s): a long piece in a shared Piper."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def synthesize(self, text, stop=None):
        self.started.set()
        t0 = time.monotonic()
        while not (stop is not None and stop.stopped) and time.monotonic() - t0 < 5:
            time.sleep(0.002)
        if stop is None or not stop.stopped:
            yield np.zeros(1600, np.float32)


def test_a_superseded_piece_stops_its_synthesis_and_the_next_reply_is_not_kept_waiting():
    tts, events = HeldTts(), []
    voice = Voice("test", tts, lambda kind, turn, **data: events.append(kind), 30.0)
    try:
        voice.say(1, voice.new_generation(), 0, "A long first piece of a draft the user talked over.")
        assert tts.started.wait(2)
        t0 = time.monotonic()
        gen = voice.new_generation()       # the draft is dropped: the user went on
        tts.started.clear()
        voice.say(1, gen, 0, "The next draft.")
        assert tts.started.wait(2), "the voice took the next piece"
        assert time.monotonic() - t0 < 1.0 and "tts.stopped" in events
    finally:
        voice.new_generation()
        voice.speak.close()


def test_a_replys_later_pieces_are_synthesised_just_in_time_and_never_after_a_barge_in():
    """A 3 s piece playing: the next one waits as text until less than ``AHEAD_S`` is left (played without
    a gap: it is in before the first ends); a new generation drops what was still text, unsynthesised."""
    from fullduplex.audio.frames import SAMPLE_RATE
    from fullduplex.testing.fakes import ToneTts
    from fullduplex.testing.harness import wait_idle

    made: list[tuple[int, float]] = []     # (piece index, audio left to play when it was synthesised)
    voice = Voice("test", ToneTts(3.0), lambda kind, turn, **data: None, 30.0)
    tts_synthesize = voice._tts.synthesize

    def synthesize(text, stop=None):
        made.append((int(text), voice._left_s))
        yield from tts_synthesize(text, stop)
    voice._tts.synthesize = synthesize
    frame, played = 320, []

    def play(frames: int) -> None:
        for _ in range(frames):
            wait_idle(voice.speak)
            voice.collect()
            played.append(voice.frame(frame)[0])
    try:
        gen = voice.new_generation()
        voice.say(1, gen, 0, "0")
        play(1)
        voice.say(1, gen, 1, "1")           # 2.98 s left: not needed yet
        wait_idle(voice.speak)
        assert [i for i, _ in made] == [0], "the second piece waits as text"
        play(40)
        assert [i for i, _ in made] == [0, 1], "synthesised once less was left to play"
        assert 2.0 < made[1][1] < AHEAD_S
        voice.say(1, gen, 2, "2")
        play(10)
        voice.new_generation()               # the user barged in
        play(300)
        assert [i for i, _ in made] == [0, 1], "the barged-in reply's last piece was never synthesised"
        out = np.concatenate(played)
        start = np.flatnonzero(np.abs(out) > 0)[0]
        assert np.all(np.abs(out[start:start + int(5.9 * SAMPLE_RATE)]).reshape(-1, 16).max(axis=1) > 0), \
            "pieces 0 and 1 played back to back"
    finally:
        voice.new_generation()
        voice.speak.close()


def test_a_holder_is_asked_to_let_in_an_answer_not_a_draft():
    """``contended``: a reply being written stops at its next piece for another user's answer, not for a
    draft (a hand-over costs a context switch, and the draft's user may never need it)."""
    lock, floor = SharedModelLock(), threading.Event()
    waiting = []

    def wait(until):
        def run():
            with speculative(until), lock:
                pass
        waiting.append(threading.Thread(target=run))
        waiting[-1].start()
    with lock:
        wait(floor.is_set)                         # a draft
        while not lock.busy or len(lock._waiting) < 1:
            time.sleep(0.001)
        assert not lock.contended, "a waiting draft does not stop the holder"
        floor.set()                                # its floor is taken: now an answer
        assert lock.contended
    for t in waiting:
        t.join(5)
    assert not lock.contended
