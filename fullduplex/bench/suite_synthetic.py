"""Synthetic scenarios: scripted user turns spoken by the Piper voice, timed by a seeded RNG.

The real recordings give ~10 scenarios per kind; these add controlled ones with exactly known event
times: a filler or conjunction ("um", "and", "so") then a 0.8-1.5 s pause mid-sentence; a complete
question then silence; a question, room for the answer, then an interrupting question; a monologue
with no listener. Text order, pause lengths, gaps and speaking rate come from ``seed``.

Determinism: Piper's VITS model draws noise inside its ONNX graph, from a generator onnxruntime seeds
once per session from a process-wide seed; unset, that seed differs run to run. We set it
(``onnxruntime.set_seed``) before loading the voices, so the same seed gives byte-identical audio.
Sessions created later in the same process inherit that seed too, which only makes them repeatable.
Each voice's generator advances with every sentence, so a scenario's exact samples also depend on
what was synthesised before it: the same arguments (seed, kinds, limit) give the same files.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from ..audio.frames import SAMPLE_RATE
from ..config import TtsConfig
from ..models.tts import load_tts
from .draft import Draft, n_samples, silence_s, ts
from .scenarios import OVERLAP_KINDS

PER_KIND = 12
LEAD_S = 0.4                 # silence before the user starts
PAUSE_RANGE_S = (0.8, 1.5)   # a hesitation an agent should wait through
TURN_SILENCE_S = 6.0         # after a complete turn: time for the agent to answer
ANSWER_GAP_RANGE_S = (4.0, 5.0)  # interrupt: the agent's answer runs here when the user cuts in
INTERRUPT_TAIL_S = 5.0
SENTENCE_GAP_RANGE_S = (0.25, 0.45)  # between sentences of one turn: short, not a turn end
MONOLOGUE_GAP_RANGE_S = (0.3, 0.8)   # between a monologue's sentences, where listeners backchannel
RATES = (0.9, 1.0, 1.15)     # Piper length_scale: faster, normal and slower speakers
SILENCE_DBFS = -50.0         # trimming Piper's own leading/trailing near-silence
LICENCE = ("synthetic speech: Piper en_US-joe-medium voice (MIT package, CC0 dataset); "
           "script from fullduplex.bench.suite_synthetic")

PAUSES = [
    ("So I was thinking, um,", "maybe we could meet on Tuesday."),
    ("I'd like to book a table for, uh,", "four people at seven tonight."),
    ("Can you remind me to call my sister and,", "also to buy some milk on the way home?"),
    ("The thing I really wanted to ask you about is, um,", "how long the battery lasts."),
    ("We drove to the coast and,", "the whole trip took almost six hours."),
    ("My favourite part of the film was, uh,", "the scene on the night train."),
    ("The shop was already closed when we got there, so,", "we just went home and ordered pizza."),
    ("I'm looking for a recipe that uses, um,", "chickpeas and spinach."),
    ("So the main problem with my laptop is,", "it gets really hot when I watch videos."),
    ("Could you tell me, uh,", "what time the pharmacy closes on Sundays?"),
    ("I started learning the guitar last year, and,", "now I can play a few simple songs."),
    ("The best way to get there is probably, um,", "the train from the central station."),
    ("I was going to order the pasta, but,", "then I saw they had fresh fish."),
    ("Honestly, I think the reason is, um,", "nobody read the instructions."),
    ("We need to pick up the kids at three and,", "drop the car at the garage before that."),
    ("What I really want for my birthday is, um,", "a quiet day at the beach."),
]
TURNS = [
    ["What's the weather going to be like tomorrow?"],
    ["Can you recommend a good book for a long flight?"],
    ["How do I get a coffee stain out of a white shirt?"],
    ["What time is it in Tokyo right now?"],
    ["Could you set a timer for ten minutes, please?"],
    ["Why is the sky blue?"],
    ["I'm planning a trip to Rome next month.", "What should I see first?"],
    ["How many cups are there in a litre?"],
    ["What's the capital of Australia?"],
    ["Can you help me write a short birthday message for my dad?"],
    ["I just got back from Spain.", "Have you ever heard of Granada?"],
    ["Tell me a fun fact about octopuses."],
    ["Is it better to rent or to buy a house?"],
    ["I finally finished painting the kitchen."],
    ["What should I cook for dinner tonight?"],
    ["My phone keeps losing its signal at home.", "What can I do about it?"],
]
INTERRUPTS = [
    ("Could you explain how a car engine works?", "Actually, wait, can you just tell me how to check the oil?"),
    ("Tell me about the history of the Roman Empire.", "Sorry, can we skip ahead to how it ended?"),
    ("What are some good exercises for back pain?", "Hold on, what about exercises I can do at my desk?"),
    ("Can you describe how to bake bread from scratch?", "Wait, I don't have any yeast. What can I use instead?"),
    ("What are the main sights in Paris?", "Stop, I meant Paris in Texas, not in France."),
    ("Can you give me a summary of today's news?", "Actually, just the sports news, please."),
    ("How does a solar panel produce electricity?", "Sorry to interrupt, but how much do they cost?"),
    ("Recommend me a few science fiction novels.", "No, something shorter. Maybe a short story?"),
    ("Explain the rules of cricket to me.", "Hang on, let's do baseball instead."),
    ("What should I pack for a week of camping?", "Wait, it's going to snow. Does that change anything?"),
    ("How do I start investing with a small budget?", "Actually, can you explain what an index fund is first?"),
    ("Can you tell me a bedtime story about a dragon?", "Make it a friendly dragon, please."),
    ("Walk me through setting up a new phone.", "Hmm, I already did that part. How do I move my photos?"),
    ("What's the best way to learn Spanish?", "Sorry, I meant Portuguese, not Spanish."),
]
MONOLOGUES = [
    ["Let me tell you about my weekend.", "On Saturday morning I went to the farmers market with my neighbour.",
     "They had these huge tomatoes, so we bought far too many.",
     "In the afternoon we tried to make a sauce from them.",
     "It took hours, and the kitchen was a complete mess.", "But honestly, it was the best pasta I've had in years."],
    ["So my first job was in a small bakery.", "I had to start at four in the morning, every single day.",
     "The owner was an old man who never wrote anything down.", "All his recipes were in his head.",
     "After a year he finally let me make the bread on my own.", "I still remember how proud I felt that morning."],
    ["I've been trying to get better at running.", "In January I could barely run for ten minutes.",
     "Now I go out three times a week, mostly along the river.", "Last Sunday I ran my first ten kilometres.",
     "My legs hurt for two days afterwards.", "Still, I'm already thinking about a half marathon."],
    ["We moved to a new flat last month.", "It's smaller than the old one, but it has a balcony.",
     "The first week we had no internet at all.", "So we spent the evenings playing cards by candlelight.",
     "The neighbours are friendly, and there's a park just around the corner."],
    ["My grandmother grew up on a farm in the mountains.", "She used to walk two hours to school and two hours back.",
     "In winter the snow was sometimes higher than the fences.",
     "She told me they kept the goats in the kitchen to stay warm.",
     "I never knew whether to believe that part.", "But she told the story the same way every time."],
    ["I had a strange day at work yesterday.", "The fire alarm went off right in the middle of a meeting.",
     "We all stood outside in the rain for almost an hour.",
     "It turned out someone had burnt toast on the third floor.",
     "By the time we got back, nobody remembered what the meeting was about."],
    ["Last summer I finally learned to swim properly.", "I was always a bit scared of deep water.",
     "So I booked ten lessons at the local pool.", "The teacher was very patient with me.",
     "By the last lesson I could swim a whole length without stopping.", "Now I go every Friday after work."],
    ["Our cat has a very particular routine.", "Every morning at six she sits on my chest and stares at me.",
     "If that doesn't work, she knocks things off the shelf.", "After breakfast she sleeps in the sun until lunch.",
     "Then she spends the afternoon watching birds from the window."],
    ["I've started reading a lot more this year.", "Mostly history books, which surprised me.",
     "The last one was about the people who built the first railways.",
     "It's amazing how fast everything changed back then.",
     "Whole towns appeared in just a few years.", "Next I want to read something about the first airlines."],
    ["We went camping by a lake for three days.", "The first night it rained so hard our tent flooded.",
     "We slept in the car, which was not very comfortable.", "The next two days were sunny and perfectly calm.",
     "We swam, we fished, and we didn't look at our phones once."],
    ["My brother is getting married in June.", "The wedding is going to be in a barn in the countryside.",
     "I have to give a speech, and I'm already nervous about it.", "I've written three versions so far.",
     "One is too long, one is too short, and one is just embarrassing."],
    ["I tried to fix my bicycle on my own last week.", "The chain kept falling off every time I changed gear.",
     "I watched a few videos and bought the wrong part twice.", "In the end I took it to the shop around the corner.",
     "The mechanic fixed it in five minutes and didn't even charge me."],
]


class _Voices:
    """One Piper voice per speaking rate, loaded with a fixed onnxruntime seed."""

    def __init__(self, seed: int) -> None:
        import onnxruntime

        onnxruntime.set_seed(int(seed))
        self._tts = {rate: load_tts(TtsConfig(length_scale=rate)) for rate in RATES}

    def say(self, text: str, rate: float) -> np.ndarray:
        audio = np.concatenate([np.zeros(0, np.float32), *self._tts[rate].synthesize(text)])
        return _trim(audio)


def _trim(audio: np.ndarray, frame: int = 160) -> np.ndarray:
    """Cut Piper's leading and trailing near-silence (10 ms frames under SILENCE_DBFS): event times
    in the annotation are then where speech really starts and stops, to the frame."""
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[:n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(20 * np.log10(np.maximum(rms, 1e-9)) > SILENCE_DBFS)
    if len(loud) == 0:
        return audio[:0]
    return audio[loud[0] * frame:(loud[-1] + 1) * frame]


def _sentences(voices: _Voices, texts: list[str], rate: float, rng, gap_range) -> np.ndarray:
    parts = []
    for i, text in enumerate(texts):
        if i:
            parts.append(silence_s(rng.uniform(*gap_range)))
        parts.append(voices.say(text, rate))
    return np.concatenate(parts)


def _meta(seed: int, kind: str, i: int, rate: float, script: list[str], **extra) -> dict:
    return {"source": "synthetic", "licence": LICENCE, "seed": seed, "script": script, "length_scale": rate,
            "origin": f"fullduplex.bench.suite_synthetic, seed {seed}, {kind} #{i}, Piper en_US-joe-medium", **extra}


def _pause(v, rng, seed, i, rate, item) -> Draft:
    first, rest = item
    a, b = v.say(first, rate), v.say(rest, rate)
    pause = rng.uniform(*PAUSE_RANGE_S)
    start = LEAD_S + len(a) / SAMPLE_RATE
    audio = np.concatenate([silence_s(LEAD_S), a, silence_s(pause), b, silence_s(0.5)])
    return Draft("pause", f"piper-{i:02d}", audio,
                 [{"text": "[PAUSE]", "timestamp": [ts(start), ts(start + n_samples(pause) / SAMPLE_RATE)]}],
                 _meta(seed, "pause", i, rate, [first, f"<{pause:.2f} s pause>", rest]))


def _turn(v, rng, seed, i, rate, texts) -> Draft:
    speech = _sentences(v, texts, rate, rng, SENTENCE_GAP_RANGE_S)
    end = LEAD_S + len(speech) / SAMPLE_RATE
    audio = np.concatenate([silence_s(LEAD_S), speech, silence_s(TURN_SILENCE_S)])
    # No human answered: the second number (when the listener took the turn) equals the turn end.
    return Draft("turn_taking", f"piper-{i:02d}", audio,
                 [{"text": "[TURN-TAKING]", "timestamp": [ts(end), ts(end)]}],
                 _meta(seed, "turn_taking", i, rate, texts))


def _interrupt(v, rng, seed, i, rate, item) -> Draft:
    context, interrupt = item
    a, b = v.say(context, rate), v.say(interrupt, rate)
    first = np.concatenate([silence_s(LEAD_S), a, silence_s(rng.uniform(*ANSWER_GAP_RANGE_S))])
    at = len(first) / SAMPLE_RATE
    audio = np.concatenate([first, b, silence_s(INTERRUPT_TAIL_S)])
    return Draft("interrupt", f"piper-{i:02d}", audio,
                 [{"context": context, "interrupt": interrupt, "timestamp": [ts(at), ts(at + len(b) / SAMPLE_RATE)]}],
                 _meta(seed, "interrupt", i, rate, [context, interrupt]))


def _monologue(v, rng, seed, i, rate, texts) -> Draft:
    speech = _sentences(v, texts, rate, rng, MONOLOGUE_GAP_RANGE_S)
    audio = np.concatenate([silence_s(LEAD_S), speech, silence_s(1.0)])
    return Draft("backchannel", f"piper-{i:02d}", audio, [],
                 _meta(seed, "backchannel", i, rate, texts, listener=False))


def synthetic_drafts(seed: int, kinds, limit: int | None = None,
                     progress: Callable[[str], None] | None = None) -> Iterator[Draft]:
    """PER_KIND scenarios of each kind (at most ``limit``), in a fixed order for ``seed``."""
    rng = np.random.default_rng(seed)
    count = PER_KIND if limit is None else min(PER_KIND, limit)
    # Every choice is drawn up front, so one kind's choices do not depend on which kinds are built.
    plan = {kind: (rng.permutation(len(pool))[:PER_KIND][:count], rng.choice(RATES, size=PER_KIND)[:count])
            for kind, pool in (("pause", PAUSES), ("turn_taking", TURNS), ("interrupt", INTERRUPTS),
                               ("backchannel", MONOLOGUES))}
    makers = {"pause": (_pause, PAUSES), "turn_taking": (_turn, TURNS), "interrupt": (_interrupt, INTERRUPTS),
              "backchannel": (_monologue, MONOLOGUES)}
    overlap = [k for k in OVERLAP_KINDS if k in kinds]
    if not any(k in kinds for k in makers) and not overlap:
        return
    if progress:
        progress("loading the Piper voice for the synthetic scenarios")
    voices = _Voices(seed)
    for kind, (make, pool) in makers.items():
        if kind not in kinds:
            continue
        order, rates = plan[kind]
        kind_rng = np.random.default_rng([seed, list(makers).index(kind)])
        for i, (j, rate) in enumerate(zip(order, rates)):
            yield make(voices, kind_rng, seed, i, float(rate), pool[int(j)])
    if overlap:   # FDB v1.5's overlap kinds: their own seeded draws, after v1's (whose files stay the same)
        from .suite_overlap import synthetic_overlap_drafts
        yield from synthetic_overlap_drafts(voices, seed, overlap, limit)
