"""Text-to-speech: Piper speaks sentence by sentence at 16 kHz; the speech is intelligible."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from fullduplex.config import TtsConfig
from fullduplex.models.tts import EspeakTts, Stop
from fullduplex.textnorm import wer


def test_piper_one_chunk_per_sentence(models):
    chunks = list(models.tts.synthesize("Hello there. How can I help you today?"))
    assert len(chunks) == 2
    for c in chunks:
        assert c.dtype == np.float32 and 0.4 < len(c) / 16000 < 4.0 and np.abs(c).max() > 0.1


def test_piper_speech_is_understood(models):
    """Round trip through the real recogniser: what Piper says, Moonshine hears."""
    text = "The weather is lovely today, so we could walk to the park."
    audio = np.concatenate(list(models.tts.synthesize(text)))
    assert wer(text, models.stt.transcribe(audio).text) <= 0.2


def test_empty_text_says_nothing(models):
    assert list(models.tts.synthesize("   ")) == []


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make install)")
def test_espeak_fallback(models):
    audio = np.concatenate(list(EspeakTts(TtsConfig(backend="espeak")).synthesize("Good morning to you.")))
    assert 0.5 < len(audio) / 16000 < 3.0
    assert wer("good morning to you", models.stt.transcribe(audio).text) <= 0.5


def test_a_piece_said_again_is_not_synthesised_again(models):
    """Issue 17: replies repeat their openings across calls; the voice keeps short pieces' audio by text."""
    tts = models.tts
    said = tts.said
    first = list(tts.synthesize("Sure, I can help with that."))
    hits = said.hits
    again = list(tts.synthesize("Sure, I can help with that."))
    assert said.hits == hits + 1 and len(again) == len(first)
    assert all(a is b for a, b in zip(again, first)) and not again[0].flags.writeable, "the same audio, read-only"
    cut = tts.synthesize("A piece nobody let finish.")
    next(cut)
    cut.close()
    assert said.get("A piece nobody let finish.") is None, "a synthesis cut off is not kept"


def test_a_stopped_synthesis_ends_at_once_and_frees_the_voice(models):
    """Issues 12 and 17: a dropped draft's long piece must not hold the voice every call shares."""
    tts = models.tts
    text = ("In recent years there has been a growing concern regarding the impact of climate change on the "
            "wildlife of the northern forests and the rivers that run through them.")
    t0 = time.perf_counter()
    whole = list(tts.synthesize(text + " Again."))          # not kept: longer than a kept piece
    took = time.perf_counter() - t0
    stop = Stop()
    threading.Timer(took / 10, stop.stop).start()
    t0 = time.perf_counter()
    cut = list(tts.synthesize(text + " Once more.", stop))
    stopped_after = time.perf_counter() - t0
    assert whole and cut == [], "a stopped synthesis yields nothing"
    assert stopped_after < took / 2, f"stopped after {stopped_after:.2f} s; the whole piece takes {took:.2f} s"
    assert tts.said.get(text + " Once more.") is None
    stopped = Stop()
    stopped.stop()
    assert list(tts.synthesize("Never said at all.", stopped)) == []
    assert len(list(tts.synthesize("Hello again."))) == 1, "the voice serves the next piece"
