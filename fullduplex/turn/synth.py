"""Synthesised training turns with known turn ends and mid-turn pauses.

Each *item* is one scripted turn spoken by one voice (``voices.py``): a complete utterance, or pieces
with a pause between them: a sentence cut mid-clause, a hesitation ("um,"), a trailing connector
("and", "because"), or a complete sentence after which the speaker goes on. Every pause gives an
event; the audio is augmented (``augment.py``). Deterministic given the seed and the item's index.
When the audio made here, in ``voices.py`` or in ``augment.py`` changes, bump ``dataset.DATA_VERSION``:
it is part of every cache key.
"""

from __future__ import annotations

import math

import numpy as np

from ..audio.frames import SAMPLE_RATE
from .augment import augment
from .dataset import DataConfig, Event
from .scripts import CONNECTORS, CONTINUATIONS, FILLERS, SENTENCES, TRAILING_DONE
from .voices import Voices, speak_split

SR = SAMPLE_RATE
TAIL_S = 0.6          # silence kept after a turn's last word (decisions beyond it pad with the same noise)


def _strip_end(text: str) -> str:
    return text.rstrip(" .?!,")


def make_script(rng: np.random.Generator) -> tuple[list[tuple[str, str]], bool]:
    """One turn as [(text, "hold" | "done"), ...] (the last piece is "done"), and whether the pieces
    belong to one sentence (then they are spoken as one and cut at the pause, so the words before
    the pause keep their mid-sentence prosody)."""
    s = SENTENCES[rng.integers(len(SENTENCES))]
    words = s.split()
    r = rng.random()
    if r < 0.28 or len(words) < 4:
        return [(s, "done")], False
    punct = str(rng.choice([",", "...", ""], p=[0.55, 0.2, 0.25]))
    if r < 0.55:     # cut mid-clause
        k = int(rng.integers(1, len(words) - 1))
        return [(_strip_end(" ".join(words[:k])) + punct, "hold"), (" ".join(words[k:]), "done")], True
    if r < 0.70:     # hesitation
        k = int(rng.integers(1, len(words) - 1))
        filler = FILLERS[rng.integers(len(FILLERS))]
        return [(_strip_end(" ".join(words[:k])) + f", {filler}" + punct, "hold"), (" ".join(words[k:]), "done")], True
    if r < 0.83:     # trailing connector
        conn = CONNECTORS[rng.integers(len(CONNECTORS))]
        cont = CONTINUATIONS[rng.integers(len(CONTINUATIONS))]
        return [(_strip_end(s) + f", {conn}" + punct, "hold"), (cont[0].lower() + cont[1:], "done")], True
    if r < 0.94:     # a complete sentence, and the speaker goes on
        cont = CONTINUATIONS[rng.integers(len(CONTINUATIONS))]
        return [(s, "hold"), (cont, "done")], False
    tag = TRAILING_DONE[rng.integers(len(TRAILING_DONE))]   # trails, but done
    return [(_strip_end(s) + f", {tag}", "done")], False


def sample_pause(rng: np.random.Generator) -> float:
    """Mid-turn pause length: log-normal, median 0.55 s, within [0.25, 2.5] s."""
    return float(np.clip(math.exp(rng.normal(math.log(0.55), 0.55)), 0.25, 2.5))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SR)), np.float32)


def render_item(index: int, cfg: DataConfig, voices: Voices) -> tuple[np.ndarray, list[Event]]:
    rng = np.random.default_rng([cfg.seed, 1, index])
    parts, joined = make_script(rng)
    spec = voices.sample(rng, cfg.piper_share)
    lead = float(rng.uniform(0.2, 0.6))
    if joined:
        spoken = list(speak_split(voices, parts[0][0], parts[1][0], spec))
    else:
        spoken = [voices.speak(text, spec) for text, _ in parts]
    pieces, events, t, said = [silence(lead)], [], lead, []
    for (text, after), speech in zip(parts, spoken):
        pieces.append(speech)
        t += len(speech) / SR
        said.append(text)
        if after == "hold":
            pause = sample_pause(rng)
            events.append(Event(-1, t, False, pause, lead, " ".join(said), spec["kind"], f"item{index}"))
            pieces.append(silence(pause))
            t += pause
        else:
            events.append(Event(-1, t, True, None, lead, " ".join(said), spec["kind"], f"item{index}"))
            pieces.append(silence(TAIL_S))
    audio = np.concatenate(pieces)
    return (augment(audio, rng) if cfg.augment else audio), events
