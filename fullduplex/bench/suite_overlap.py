"""FDB v1.5's overlap scenarios: the user's turn, room for the agent's answer, then something overlapping it.

Every scenario has the same shape: the user's turn (a real utterance that asks or says something),
silence, and ``OVERLAP_AFTER_S`` (2.5 s) after the turn's last word the overlap starts, so an agent
that answers about 1 s after the turn is mid-answer; then ``TAIL_S`` of silence to let it finish or
respond. The overlap is one of four kinds (``<kind>.json`` names its span, see ``scenarios.py``):

- ``overlap_interrupt``: the same speaker's next transcribed utterance (the agent should stop and
  respond);
- ``overlap_backchannel``: a real listener token of the same speaker cut from a two-party recording:
  a clean segment of at most ``BC_MAX_S`` whose transcript (where there is one) is only backchannel words
  ("yeah", "mm-hm": ``engines.floor_policy.is_backchannel``); the user's turn is that speaker's latest
  clean turn before it. The agent should go on;
- ``overlap_side_talk``: the user talking to someone else, at their own level: a later transcribed
  utterance of the same speaker in the same recording that is a statement (its text does not end in
  "?", at least ``SIDE_MIN_WORDS`` words, not a backchannel), skipping the next utterance (that one is
  the interruption): no question to the agent. The agent should go on;
- ``overlap_background``: a different speaker from another recording (a clean turn of at least
  ``MIN_BACKGROUND_S``, at most ``BACKGROUND_MAX_S`` kept), band-limited to ``BAND_HZ`` (a TV or a
  phone on a speaker) and mixed ``BACKGROUND_DB`` (10, 15 or 20 dB, in turn) below the user's speech
  level (``speech_level_db``: 90th percentile of the 50 ms frame levels within 40 dB of the loudest).
  The agent should go on.

Real ones come from the recordings ``suite_real`` loads (interruptions, side talk and background need
transcribed turns: pyannote-sample and the asr/ clips; backchannels come from the two-party recordings),
at most ``MAX_PER_RECORDING`` per kind and user recording. Synthetic twins are spoken by the Piper voice
(``synthetic_overlap_drafts``); their background speaker is the same voice resampled 16 % lower in pitch
and tempo (one voice ships), band-limited and mixed the same way. Deterministic: no randomness in the real
part; the synthetic part is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..audio.frames import SAMPLE_RATE
from ..engines.floor_policy import is_backchannel
from . import suite_real as sr
from .draft import Draft, cut, faded, n_samples, silence_s, ts

OVERLAP_AFTER_S = 2.5     # the overlap starts this long after the user's turn ends (the agent is mid-answer)
TAIL_S = 6.0              # silence after the overlap: the agent finishes, or responds
MIN_TURN_S = 0.8          # a user turn shorter than this says too little to answer
MAX_TURN_S = 8.0
MAX_OVERLAP_S = 6.0       # an interruption or side remark longer than this is left out
BC_MAX_S = 1.0            # a backchannel token is at most this long
SIDE_MIN_WORDS = 3
MIN_BACKGROUND_S = 1.5
BACKGROUND_MAX_S = 4.0
BACKGROUND_DB = (10.0, 15.0, 20.0)   # below the user's speech level, cycled over the scenarios
BAND_HZ = (300.0, 3400.0)            # telephone/TV band
MAX_PER_RECORDING = sr.MAX_PER_RECORDING


@dataclass(frozen=True)
class Clip:
    """One clean span of one speaker: speech [start, end], cut with pads as [s, e]."""
    rec: sr.Recording
    speaker: str
    start: float
    end: float
    s: float
    e: float
    text: str | None

    @property
    def key(self) -> str:
        return self.speaker if self.speaker == "ljspeech" else f"{self.rec.name}/{self.speaker}"

    @property
    def length(self) -> float:
        return self.end - self.start

    def audio(self) -> np.ndarray:
        return cut(self.rec.audio, self.s, self.e)


# -- finding clips -------------------------------------------------------------------------------

def _clip(rec: sr.Recording, g: sr.Seg) -> Clip | None:
    """``g`` tightened and padded (``suite_real.clean_span``), or None when too short, when the span holds
    another speaker, or when it is too quiet."""
    s0, e0, s, e = sr.clean_span(rec, g)
    if e0 - s0 < sr.MIN_PIECE_S or e <= s or sr._leak(rec, g.speaker, s, e) is not None:
        return None
    if sr.peak_db(cut(rec.audio, s, e)) < sr.MIN_PEAK_DB:
        return None
    return Clip(rec, g.speaker, s0, e0, s, e, g.text)


def _clips(recs: list[sr.Recording]) -> list[Clip]:
    out = []
    for rec in recs:
        seen = set()
        for g in rec.labels:
            c = _clip(rec, g)
            if c is not None and (c.speaker, c.start) not in seen:
                seen.add((c.speaker, c.start))
                out.append(c)
    return out


def _words(text: str | None) -> int:
    return len((text or "").split())


def _is_turn(c: Clip) -> bool:
    """A turn that asks or says something: long enough, and (where transcribed) not a backchannel."""
    return MIN_TURN_S <= c.length <= MAX_TURN_S and (c.text is None or (_words(c.text) >= 2
                                                                        and not is_backchannel(c.text)))


def _is_statement(c: Clip) -> bool:
    text = (c.text or "").strip()
    return (bool(text) and not text.endswith("?") and _words(text) >= SIDE_MIN_WORDS
            and not is_backchannel(text) and c.length <= MAX_OVERLAP_S)


def _is_bc_token(c: Clip) -> bool:
    return c.rec.two_party and c.length <= BC_MAX_S and (c.text is None or is_backchannel(c.text))


# -- composing -----------------------------------------------------------------------------------

def compose(turn: np.ndarray, turn_span: tuple[float, float], over: np.ndarray, over_span: tuple[float, float],
            after_s: float = OVERLAP_AFTER_S, tail_s: float = TAIL_S):
    """turn audio, silence, the overlap's speech starting ``after_s`` after the turn's end, ``tail_s`` of
    silence. Spans are speech [start, end] inside each clip; returns (audio, turn span, overlap span)."""
    pad = max(n_samples(turn_span[1] + after_s - over_span[0]) - len(turn), 0)
    at = (len(turn) + pad) / SAMPLE_RATE
    audio = np.concatenate([turn, np.zeros(pad, np.float32), over, silence_s(tail_s)]).astype(np.float32)
    return audio, (turn_span[0], turn_span[1]), (at + over_span[0], at + over_span[1])


def annotation(text: str, turn_span, over_span, context: str | None, **extra) -> list[dict]:
    return [{"text": text, "timestamp": [ts(over_span[0]), ts(over_span[1])],
             "turn": [ts(turn_span[0]), ts(turn_span[1])], "context": context, **extra}]


def band_limit(audio: np.ndarray) -> np.ndarray:
    """A 4th-order Butterworth band-pass over ``BAND_HZ`` (causal, deterministic)."""
    from scipy.signal import butter, sosfilt
    sos = butter(4, BAND_HZ, btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, np.asarray(audio, np.float64)).astype(np.float32)


def speech_level_db(audio: np.ndarray) -> float:
    """The speech level: 90th percentile of the 50 ms frame levels within 40 dB of the loudest one (so
    it scales with the audio: silence and room tone do not count)."""
    frames = sr._frame_db(audio)
    loud = frames[frames > frames.max() - 40.0] if len(frames) else frames
    return float(np.percentile(loud, 90)) if len(loud) else -120.0


def background_mix(user_turn: np.ndarray, background: np.ndarray, below_db: float) -> np.ndarray:
    """``background`` band-limited and scaled to ``below_db`` under the user's speech level."""
    bg = band_limit(background)
    gain_db = speech_level_db(user_turn) - below_db - speech_level_db(bg)
    return faded(bg * np.float32(10 ** (gain_db / 20)))


def _clip_span(c: Clip) -> tuple[float, float]:
    return c.start - c.s, c.end - c.s


def _spans_text(c: Clip) -> str:
    return f"{c.s:.2f}-{c.e:.2f} s"


# -- real ----------------------------------------------------------------------------------------

def _by_key(clips: list[Clip]) -> dict[str, list[Clip]]:
    out: dict[str, list[Clip]] = {}
    for c in clips:
        out.setdefault(c.key, []).append(c)
    return out


def _draft(kind: str, turn: Clip, over: Clip, text: str, over_audio=None, recordings=None, **extra) -> Draft:
    audio, t_span, o_span = compose(turn.audio(), _clip_span(turn),
                                    over.audio() if over_audio is None else over_audio, _clip_span(over))
    same = over.rec is turn.rec
    name = (f"{turn.rec.name}-{turn.start:06.2f}-{over.start:06.2f}" if same
            else f"{turn.rec.name}-{turn.start:06.2f}_{over.rec.name}-{over.start:06.2f}")
    origin = (f"{_spans_text(turn)}, silence, {'' if same else over.rec.file + ' '}{_spans_text(over)} "
              f"({kind.removeprefix('overlap_').replace('_', ' ')}) {OVERLAP_AFTER_S:g} s after the turn's end, "
              f"{TAIL_S:g} s of silence")
    level = extra.pop("level_db", None)
    item_extra = {"level_db": level} if level is not None else {}
    meta = sr._meta(turn.rec, origin, turn.speaker, recordings=recordings or [turn.rec.name],
                    user_recording=turn.rec.name, **extra)
    return Draft(kind, name, audio, annotation(text, t_span, o_span, turn.text, **item_extra), meta)


def _cap(drafts: Iterator[Draft], kind: str, skipped: list[str]) -> Iterator[Draft]:
    """At most MAX_PER_RECORDING per user recording, spread over it."""
    groups: dict[str, list[Draft]] = {}
    for d in drafts:
        groups.setdefault(d.meta["user_recording"], []).append(d)
    for rec, group in groups.items():
        kept = sr._spread(group, MAX_PER_RECORDING)
        if len(kept) < len(group):
            skipped.append(f"{rec} {kind}: {len(group)} candidates, kept {len(kept)} spread over the recording")
        yield from kept


def _interrupts(keys: dict[str, list[Clip]]) -> Iterator[Draft]:
    for key in sorted(keys):
        utts = [c for c in keys[key] if c.text]
        for a, b in zip(utts, utts[1:]):
            if _is_turn(a) and _is_turn(b) and b.length <= MAX_OVERLAP_S:
                yield _draft("overlap_interrupt", a, b, b.text, recordings=sorted({a.rec.name, b.rec.name}))


def _side_talk(keys: dict[str, list[Clip]]) -> Iterator[Draft]:
    for key in sorted(keys):
        utts = [c for c in keys[key] if c.text]
        for i, a in enumerate(utts):
            if not _is_turn(a):
                continue
            side = next((b for b in utts[i + 2:] if b.rec is a.rec and _is_statement(b)), None)
            if side is not None:
                yield _draft("overlap_side_talk", a, side, side.text, side_talk_rule="a later statement of the same "
                             "speaker (not ending in '?', not a backchannel, not the next utterance)")


def _backchannels(keys: dict[str, list[Clip]]) -> Iterator[Draft]:
    for key in sorted(keys):
        clips = keys[key]
        for bc in (c for c in clips if _is_bc_token(c)):
            turns = [c for c in clips if _is_turn(c) and c.rec is bc.rec]
            before = [c for c in turns if c.end <= bc.start]
            turn = before[-1] if before else next((c for c in turns if c.start >= bc.end), None)
            if turn is not None:
                yield _draft("overlap_backchannel", turn, bc, bc.text or "[BACKCHANNEL]")


def _backgrounds(keys: dict[str, list[Clip]], clips: list[Clip]) -> Iterator[Draft]:
    pool = sorted((c for c in clips if _is_turn(c) and c.length >= MIN_BACKGROUND_S),
                  key=lambda c: (c.rec.name, c.start))
    turns = [c for key in sorted(keys) for c in keys[key] if c.text and _is_turn(c)]
    for k, turn in enumerate(turns):
        if not pool:
            return
        j = (7 * k + 3) % len(pool)
        for step in range(len(pool)):
            bg = pool[(j + step) % len(pool)]
            if bg.rec is not turn.rec and bg.key != turn.key:
                break
        else:
            continue
        below = BACKGROUND_DB[k % len(BACKGROUND_DB)]
        kept = Clip(bg.rec, bg.speaker, bg.start, min(bg.end, bg.start + BACKGROUND_MAX_S), bg.s,
                    min(bg.e, bg.start + BACKGROUND_MAX_S), bg.text)
        mixed = background_mix(turn.audio(), kept.audio(), below)
        yield _draft("overlap_background", turn, kept, kept.text if kept.end == bg.end and kept.text else "[BACKGROUND]",
                     over_audio=mixed, recordings=sorted({turn.rec.name, bg.rec.name}), level_db=below,
                     licence=f"{turn.rec.licence}; background speech: {bg.rec.licence}",
                     background=f"{bg.rec.file} {kept.s:.2f}-{kept.e:.2f} s, speaker {bg.speaker}, band-limited "
                                f"{BAND_HZ[0]:g}-{BAND_HZ[1]:g} Hz, {below:g} dB below the user")


def real_overlap_drafts(recs: list[sr.Recording], kinds, skipped: list[str]) -> Iterator[Draft]:
    """The real overlap scenarios of ``kinds``, in a fixed order."""
    wanted = [k for k in ("overlap_interrupt", "overlap_backchannel", "overlap_side_talk", "overlap_background")
              if k in kinds]
    if not wanted:
        return
    clips = _clips(recs)
    keys = _by_key(clips)
    makers = {"overlap_interrupt": lambda: _interrupts(keys), "overlap_backchannel": lambda: _backchannels(keys),
              "overlap_side_talk": lambda: _side_talk(keys), "overlap_background": lambda: _backgrounds(keys, clips)}
    for kind in wanted:
        yield from _cap(makers[kind](), kind, skipped)


# -- synthetic -----------------------------------------------------------------------------------

SYN_PER_KIND = 8
SYN_BACKCHANNELS = ["Mm-hm.", "Uh-huh.", "Yeah.", "Okay.", "Right.", "I see.", "Mm.", "Sure."]
SYN_SIDE_TALK = [
    "Just leave the bags by the door, thanks.", "Yes, I'll be down in five minutes.",
    "No, the blue one, next to the window.", "Sorry, I'm on the phone right now.",
    "Put the kettle on, I'll be right there.", "Tell him I'll call him back later.",
    "It's in the top drawer, on the left.", "Okay, go ahead and start without me.",
]
SYN_BACKGROUND = [
    "And in other news, the city council has approved plans for a new bridge.",
    "Tonight will be cloudy, with light rain moving in from the west.",
    "The home team scored twice in the last ten minutes of the match.",
    "Prices at the pump rose again this week, for the third week running.",
    "Scientists say the new telescope will be ready by next spring.",
    "Traffic is heavy on the ring road this evening, so allow extra time.",
    "The museum reopens on Saturday after two years of repairs.",
    "Shares in the company fell sharply after the announcement.",
]
OTHER_VOICE_FACTOR = 0.84   # the background voice: Piper's, resampled to 84 % pitch and tempo


def other_voice(audio: np.ndarray) -> np.ndarray:
    """A lower, slower voice from the same one: read the samples at OTHER_VOICE_FACTOR speed."""
    n = int(len(audio) / OTHER_VOICE_FACTOR)
    return np.interp(np.arange(n) * OTHER_VOICE_FACTOR, np.arange(len(audio)), audio).astype(np.float32)


def synthetic_overlap_drafts(voices, seed: int, kinds, limit: int | None = None) -> Iterator[Draft]:
    """SYN_PER_KIND scenarios of each overlap kind in ``kinds`` (at most ``limit``), for ``seed``."""
    from . import suite_synthetic as syn

    count = SYN_PER_KIND if limit is None else min(SYN_PER_KIND, limit)
    order = ("overlap_interrupt", "overlap_backchannel", "overlap_side_talk", "overlap_background")
    for kind_i, kind in enumerate(order):
        if kind not in kinds:
            continue
        rng = np.random.default_rng([seed, 100 + kind_i])   # v1's kinds keep their own draws
        turns = rng.permutation(len(syn.TURNS))
        lines = rng.permutation(SYN_PER_KIND)
        inter = rng.permutation(len(syn.INTERRUPTS))
        rates = rng.choice(syn.RATES, size=SYN_PER_KIND)
        for i in range(count):
            rate = float(rates[i])
            if kind == "overlap_interrupt":
                context, text = syn.INTERRUPTS[int(inter[i])]
                turn = voices.say(context, rate)
            else:
                context = " ".join(syn.TURNS[int(turns[i])])
                turn = syn._sentences(voices, syn.TURNS[int(turns[i])], rate, rng, syn.SENTENCE_GAP_RANGE_S)
                text = {"overlap_backchannel": SYN_BACKCHANNELS, "overlap_side_talk": SYN_SIDE_TALK,
                        "overlap_background": SYN_BACKGROUND}[kind][int(lines[i])]
            turn = np.concatenate([silence_s(syn.LEAD_S), turn])
            over = voices.say(text, rate)
            extra, label = {}, text
            if kind == "overlap_background":
                below = BACKGROUND_DB[i % len(BACKGROUND_DB)]
                over = background_mix(turn, other_voice(over), below)
                extra = {"level_db": below}
            audio, t_span, o_span = compose(turn, (syn.LEAD_S, len(turn) / SAMPLE_RATE), over,
                                            (0.0, len(over) / SAMPLE_RATE))
            meta = syn._meta(seed, kind, i, rate, [context, f"<{OVERLAP_AFTER_S:g} s after the turn>", text],
                             **({"background": f"Piper voice resampled to {OTHER_VOICE_FACTOR:g}x pitch and tempo, "
                                               f"band-limited {BAND_HZ[0]:g}-{BAND_HZ[1]:g} Hz, {extra['level_db']:g} "
                                               f"dB below the user"} if extra else {}))
            yield Draft(kind, f"piper-{i:02d}", audio, annotation(label, t_span, o_span, context, **extra), meta)
