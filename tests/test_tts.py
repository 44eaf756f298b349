"""Text-to-speech: Piper speaks sentence by sentence at 16 kHz; the speech is intelligible."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fullduplex.config import TtsConfig
from fullduplex.models.tts import EspeakTts
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
