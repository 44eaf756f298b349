"""Real scenarios, cut from the shared data's labelled recordings.

The conversations are single-channel mixes, so "the user's channel" is a span where the chosen speaker
talks and nobody else does; wherever the other speaker would be heard, the scenario has silence.

Who speaks when comes from two label sets per recording:

- ``labels``, tight: the STM's timed utterances (with text) where there is one, plus RTTM segments the
  STM lacks (pyannote's backchannel at 18.15 s); where there is no STM (AMI), RTTM segments cut down
  to the speech Silero VAD finds inside them — those old RTTMs are padded and span whole pauses.
- ``reference``, the RTTM as given: padded by up to ~0.3 s a side here (the STM and the audio show
  it), so it only vetoes a span when it says the other speaker overlaps by more than ``REF_TOL_S``.

The asr/ clips have one speaker each: the whole clip (or its ``.segments.jsonl``) is the label.

Every folder in conversations/ is read (17 folders, 15 recordings: ``ami-pyannote-dev00``/``dev01`` are
AMI ES2003a/b's first 30 s again, so they are recognised by their audio and left out; see
``load_recordings``). Turn ends and pauses come from the RTTM (with Silero VAD, as above). At most
``MAX_PER_RECORDING`` pauses, turn ends and backchannel stretches per recording, spread over it, so the
4-minute phone call does not outweigh the 30-second excerpts; a turn needs ``MIN_TURN_CONTEXT_S`` of
clean context, a pause ``MIN_PAUSE_DROP_DB`` of quiet, and a scenario speech louder than
``MIN_PEAK_DB``. With the shared data as shipped that is **92 real scenarios** (33 pause, 26
turn-taking, 11 interruption, 22 backchannel; 11.7 min of input audio, was 55 and 7.3 min) from 10 of
the 15 conversations plus the asr/ clips. The other five give no usable span: trn01 (no speech Silero
finds), trn02 (one 0.7 s segment), trn09 (two speakers overlapping throughout), trn07 and tst00 (their
clean turns are lone words, or far-field speech under -40 dBFS). The bench runs in real time: ~13 min
per agent for the real part (the five CPU agents ~65 min), plus scoring. Each scenario's ``meta.json``
names its source ``recordings``, for scoring a model on recordings it was not fitted on. Interruptions
need transcribed utterances, so they come only from pyannote-sample and the asr/ clips, and are not
capped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..audio.frames import SAMPLE_RATE
from ..audio.io import read_user_audio
from ..models.vad import speech_spans
from ..turn.labels import same_recording
from .draft import FADE_S, Draft, cut, n_samples, silence_s, ts

PAD_S = 0.05           # real audio kept either side of a label, so no onset or release is clipped
TAIL_KEEP_S = 0.25     # room tone kept after the user's last word, before digital silence
TURN_SILENCE_S = 6.0   # silence after a turn end: time for the agent to answer (FDB's example has 8 s)
ANSWER_GAP_S = 4.0     # interrupt: silence after the first utterance, long enough for an agent to answer
INTERRUPT_TAIL_S = 5.0
MIN_PAUSE_S = 0.2      # a shorter gap is part of articulation, not a pause
MAX_PAUSE_S = 3.0      # a longer one is not a pause an agent should wait through
MIN_CONTINUATION_S = 0.3
MAX_CONTEXT_S = 12.0   # user speech kept before the event: enough context, short scenarios
BACKCHANNEL_MAX_S = 1.5  # a listener's segment shorter than this, inside the speaker's turn, is a backchannel
MIN_MONOLOGUE_S = 3.0
TURN_SPLIT_S = 2.0     # a monologue stretch ends at a silence longer than this
LABEL_TOL_S = 0.05     # other-speaker speech a span may hold, by the tight labels
REF_TOL_S = 0.5        # ... and by the padded RTTM
MIN_PIECE_S = 0.1      # RTTM-times-VAD slivers shorter than this are padding meeting the next speaker
MAX_PER_RECORDING = 5  # pauses (turn ends, backchannel stretches) per recording: the bench runs in real
                       # time, and the 4-min phone call alone offers 20 turn ends; kept ones are spread over it
MIN_PAUSE_DROP_DB = 12.0   # a pause lies this far below the speech around it; in some AMI mixes a short VAD
                           # gap is only ~9 dB down (another talker, room noise): not a pause
MIN_TURN_CONTEXT_S = 0.5   # user audio kept before a turn end, at least: a lone word between
                           # other talkers (0.1-0.4 s in the AMI meetings) says too little to answer
MIN_PEAK_DB = -40.0    # a scenario whose loudest 50 ms of speech is quieter is a far-field meeting talker
                       # (some AMI mixes), not what a voice agent hears: left out

# Clips that end on a complete sentence: their end is a turn end (not an observed turn change).
ENDS_ON_SENTENCE = {"jfk", "librispeech-2412-153948-0000", "ami-es2011a-headset-40s-46s"}
LICENCES = {
    "pyannote-sample": "MIT (pyannote-audio's sample; original corpus not stated)",
    "ami-es2003": "CC BY 4.0 (AMI Meeting Corpus)",
    "ami-pyannote": "CC BY 4.0 (AMI Meeting Corpus, via pyannote-audio's test data, MIT)",
    "phone-auto-repairs": "Apache-2.0 (aws-samples/amazon-transcribe-live-call-analytics)",
    "ami-es2011a": "CC BY 4.0 (AMI Meeting Corpus, via lhotse test fixtures, Apache-2.0)",
    "librispeech": "CC BY 4.0 (LibriSpeech, via lhotse test fixtures, Apache-2.0)",
    "ljspeech": "public domain (LJ Speech, via lhotse test fixtures, Apache-2.0)",
    "jfk": "public domain (via openai-whisper's test data, MIT)",
}


@dataclass(frozen=True)
class Seg:
    speaker: str
    start: float
    end: float
    text: str | None = None


@dataclass
class Recording:
    name: str                  # scenario name prefix, e.g. "pyannote-sample"
    file: str                  # path inside the data folder
    audio: np.ndarray
    labels: list[Seg]
    reference: list[Seg]
    speech: list[tuple[float, float]]   # Silero VAD segments
    licence: str
    label_files: str
    two_party: bool = True
    aliases: tuple[str, ...] = ()   # other folders holding the same recording (left out)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


# -- loading -------------------------------------------------------------------------------------

def _licence(name: str) -> str | None:
    return next((lic for prefix, lic in LICENCES.items() if name.startswith(prefix)), None)


def _rttm(path: Path) -> list[Seg]:
    segs = []
    for line in path.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            segs.append(Seg(f[7], float(f[3]), float(f[3]) + float(f[4])))
    return sorted(segs, key=lambda s: (s.start, s.end))


def _stm(path: Path, rttm: list[Seg]) -> list[Seg]:
    rows = [line.split(maxsplit=5) for line in path.read_text().splitlines() if line.strip()]
    utts = [Seg(r[2], float(r[3]), float(r[4]), r[5]) for r in rows]
    # STM names speakers by name, the RTTM by id: map each name to the id it overlaps most.
    names = {}
    for name in sorted({u.speaker for u in utts}):
        mine = [u for u in utts if u.speaker == name]
        def shared(spk: str) -> float:
            return sum(_overlap([(r.start, r.end) for r in rttm if r.speaker == spk], u.start, u.end) for u in mine)
        names[name] = max(sorted({r.speaker for r in rttm}), key=shared)
    return [Seg(names[u.speaker], u.start, u.end, u.text) for u in utts]


def _conversation(folder: Path, data: Path) -> Recording | None:
    wavs, rttms = sorted(folder.glob("*.wav")), sorted(folder.glob("*.rttm"))
    licence = _licence(folder.name)
    if len(wavs) != 1 or len(rttms) != 1 or licence is None:
        return None
    audio, _ = read_user_audio(wavs[0])
    speech = speech_spans(audio)
    reference = _rttm(rttms[0])
    stms = sorted(folder.glob("*.stm"))
    if stms:
        labels = _stm(stms[0], reference)
        # RTTM segments the STM does not cover (a backchannel nobody transcribed) are labels too.
        for r in reference:
            covered = _overlap([(u.start, u.end) for u in labels if u.speaker == r.speaker], r.start, r.end)
            if covered < 0.5 * (r.end - r.start):
                labels.append(r)
    else:
        labels = [Seg(r.speaker, max(r.start, s), min(r.end, e)) for r in reference for s, e in speech
                  if min(r.end, e) - max(r.start, s) >= MIN_PIECE_S]
    files = " + ".join(p.name for p in [*rttms, *stms])
    return Recording(folder.name, wavs[0].relative_to(data).as_posix(), audio,
                     sorted(labels, key=lambda s: (s.start, s.end)), reference, speech, licence, files)


def _clip(wav: Path, data: Path) -> Recording | None:
    licence = _licence(wav.stem)
    if licence is None:
        return None
    audio, _ = read_user_audio(wav)
    speech = speech_spans(audio)
    if not speech:
        return None
    segments, txt = wav.with_suffix(".segments.jsonl"), wav.with_suffix(".txt")
    # LJ Speech has one reader, so its clips are one speaker; every other clip is its own.
    speaker = "ljspeech" if wav.stem.startswith("ljspeech") else wav.stem
    if segments.exists():
        rows = [json.loads(line) for line in segments.read_text().splitlines() if line.strip()]
        labels = [Seg(speaker, r["start_in_clip"], r["end_in_clip"], r["text"]) for r in rows]
        files = segments.name
    else:
        text = txt.read_text().strip() if txt.exists() else None
        labels = [Seg(speaker, speech[0][0], speech[-1][1], text)]
        files = txt.name if txt.exists() else "Silero VAD"
    return Recording(wav.stem, wav.relative_to(data).as_posix(), audio, labels, [], speech, licence, files,
                     two_party=False)


def load_recordings(data: Path) -> list[Recording]:
    """Every usable conversation and clip, each recording once: the shared data ships AMI ES2003a/b's
    first 30 s twice (``ami-es2003?-first30s`` and ``ami-pyannote-dev00/01``, same RTTM, audio one LSB
    apart); the first folder by name is kept and names the other in ``aliases``."""
    recs: list[Recording] = []
    for d in sorted((data / "conversations").iterdir()):
        rec = _conversation(d, data) if d.is_dir() else None
        if rec is None:
            continue
        twin = next((r for r in recs if same_recording(r.audio, rec.audio)), None)
        if twin is not None:
            twin.aliases += (rec.name,)
            continue
        recs.append(rec)
    recs += [r for r in (_clip(w, data) for w in sorted((data / "asr").glob("*.wav"))) if r is not None]
    return recs


# -- span arithmetic -----------------------------------------------------------------------------

def _overlap(intervals, s: float, e: float) -> float:
    """Seconds of [s, e] covered by the union of ``intervals``."""
    clipped = sorted((max(a, s), min(b, e)) for a, b in intervals if min(b, e) > max(a, s))
    total, reach = 0.0, s
    for a, b in clipped:
        a = max(a, reach)
        if b > a:
            total += b - a
            reach = b
    return total


def _others(rec: Recording, speaker: str, segs: list[Seg]) -> list[tuple[float, float]]:
    return [(g.start, g.end) for g in segs if g.speaker != speaker]


def _outside(s: float, e: float, holes) -> list[tuple[float, float]]:
    """[s, e] minus the ``holes``."""
    pieces, t = [], s
    for a, b in sorted(holes):
        if a > t:
            pieces.append((t, min(a, e)))
        t = max(t, b)
    return [(a, b) for a, b in pieces + [(t, e)] if b > a]


def _leak(rec: Recording, speaker: str, s: float, e: float, holes=()) -> str | None:
    """Why [s, e] is not clean audio of ``speaker`` (None when it is); ``holes`` will be silenced."""
    pieces = _outside(s, e, holes)
    tight = sum(_overlap(_others(rec, speaker, rec.labels), a, b) for a, b in pieces)
    loose = sum(_overlap(_others(rec, speaker, rec.labels + rec.reference), a, b) for a, b in pieces)
    if tight > LABEL_TOL_S:
        return f"another speaker talks for {tight:.2f} s of it"
    if loose > REF_TOL_S:
        return f"the RTTM overlaps another speaker for {loose:.2f} s"
    return None


def _is_backchannel(rec: Recording, g: Seg) -> bool:
    return rec.two_party and g.end - g.start < BACKCHANNEL_MAX_S and any(
        o.speaker != g.speaker and o.start <= g.start and g.end <= o.end for o in rec.labels + rec.reference)


def _extent(rec: Recording, g: Seg) -> tuple[float, float]:
    """``g`` widened to the same speaker's RTTM segments it overlaps: where its audio may be."""
    refs = [r for r in rec.reference if r.speaker == g.speaker and min(r.end, g.end) > max(r.start, g.start)]
    return min([g.start] + [r.start for r in refs]), max([g.end] + [r.end for r in refs])


def _turns(rec: Recording, split_s: float = float("inf")) -> list[list[Seg]]:
    """The speakers' turns: runs of one speaker's labels, not broken by the other's backchannels."""
    turns: list[list[Seg]] = []
    for g in rec.labels:
        if _is_backchannel(rec, g):
            continue
        if turns and turns[-1][0].speaker == g.speaker and g.start - max(x.end for x in turns[-1]) <= split_s:
            turns[-1].append(g)
        else:
            turns.append([g])
    return turns


def _prev_other_end(rec: Recording, speaker: str, t: float) -> float:
    return max([g.end for g in rec.labels if g.speaker != speaker and g.end <= t + LABEL_TOL_S] or [0.0])


def _next_other_start(rec: Recording, speaker: str, t: float) -> float:
    ends = [max(g.start, t) for g in rec.labels + rec.reference if g.speaker != speaker and g.end > t]
    return min(ends or [rec.duration])


def _context_start(rec: Recording, speaker: str, lo: float, event: float, end: float, holes=()):
    """The earliest utterance or speech onset of ``speaker`` in [lo, event) from which the span up to
    ``end`` is clean and at most MAX_CONTEXT_S before ``event``; returns (start, None) or (None, why)."""
    onsets = sorted({g.start for g in rec.labels if g.speaker == speaker} | {s for s, _ in rec.speech})
    why = "no onset of its speaker between the other speaker's last words and it"
    for onset in onsets:
        if not lo - 1e-6 <= onset < event or event - onset > MAX_CONTEXT_S:
            continue
        start = max(onset - PAD_S, _prev_other_end(rec, speaker, onset), 0.0)
        why = _leak(rec, speaker, start, end, holes)
        if why is None:
            return start, None
    return None, why


def _silence(audio: np.ndarray, s: float, e: float) -> None:
    """Zero [s, e] in place, with FADE_S ramps outside it so the hole does not click."""
    lo, hi, n = n_samples(s), n_samples(e), n_samples(FADE_S)
    if hi <= lo:
        return
    audio[lo:hi] = 0.0
    a = max(lo - n, 0)
    audio[a:lo] *= np.linspace(1.0, 0.0, lo - a, dtype=np.float32)
    b = min(hi + n, len(audio))
    audio[hi:b] *= np.linspace(0.0, 1.0, b - hi, dtype=np.float32)


def _meta(rec: Recording, spans: str, speaker: str | None, **extra) -> dict:
    """``recordings``: the source recording(s) by name, so a model can be scored on recordings it was not
    fitted on (``same_recording_as``: other data folders holding the same audio)."""
    who = f", speaker {speaker}" if speaker and rec.two_party else ""
    alias = {"same_recording_as": list(rec.aliases)} if rec.aliases else {}
    return {"source": "real", "origin": f"{rec.file} {spans}{who}; labels {rec.label_files}",
            "licence": rec.licence, "recordings": [rec.name], **alias, **extra}


def _text_in(rec: Recording, speaker: str, s: float, e: float) -> str | None:
    texts = [g.text for g in rec.labels if g.speaker == speaker and g.text and s - 0.1 <= g.start and g.end <= e + 0.1]
    return " ".join(texts) or None


# -- the four kinds ------------------------------------------------------------------------------

def _pauses(rec: Recording, skipped: list[str]) -> Iterator[Draft]:
    """One pause per scenario, as in FDB: the context starts after the speaker's previous pause and the
    continuation ends before the next one. (FDB's TOR counts a turn anywhere in the output, so a context
    holding an earlier, longer pause would score that pause instead, once per later scenario.)"""
    def only(s: float, e: float) -> set[str]:
        return {g.speaker for g in rec.labels if min(g.end, e) > max(g.start, s)}

    after_pause = [s1 for (_, e0), (s1, _) in zip(rec.speech, rec.speech[1:]) if s1 - e0 >= MIN_PAUSE_S]
    for (_, g0), (g1, _) in zip(rec.speech, rec.speech[1:]):
        if not MIN_PAUSE_S <= g1 - g0 <= MAX_PAUSE_S:
            continue
        before, after = only(g0 - 0.2, g0), only(g1, g1 + 0.2)
        if len(before) != 1 or before != after:
            continue  # a gap between two speakers is a turn change, not a pause
        speaker = before.pop()
        where = f"{rec.name} pause at {g0:.2f}-{g1:.2f} s"
        if _overlap(_others(rec, speaker, rec.labels + rec.reference), g0, g1) > 0:
            skipped.append(f"{where}: another speaker is labelled in it")
            continue
        # The continuation runs to the end of the next speech segment long enough to be one.
        later = [e for s, e in rec.speech if s >= g1]
        v2_end = next((e for e in later if e - g1 >= MIN_CONTINUATION_S), later[-1])
        end = min(v2_end + PAD_S, _next_other_start(rec, speaker, g1), rec.duration)
        if end - g1 < MIN_CONTINUATION_S:
            skipped.append(f"{where}: under {MIN_CONTINUATION_S:g} s of speech follows it before another speaker")
            continue
        lo = max([_prev_other_end(rec, speaker, g0)] + [s for s in after_pause if s <= g0])
        start, why = _context_start(rec, speaker, lo, g0, end)
        if start is None:
            skipped.append(f"{where}: {why}")
            continue
        audio = cut(rec.audio, start, end)
        drop = _pause_drop_db(audio, g0 - start, g1 - start)
        if drop < MIN_PAUSE_DROP_DB:
            skipped.append(f"{where}: only {drop:.0f} dB below the speech around it (a far-field gap, not silence)")
            continue
        # Silero on the cut (no state from before it) can split quiet speech the whole-file pass did not:
        # an earlier pause in the context would be scored in place of the labelled one.
        spans = speech_spans(audio)
        earlier = [b[0] - a[1] for a, b in zip(spans, spans[1:]) if b[0] <= g0 - start + 0.05]
        if any(gap >= MIN_PAUSE_S for gap in earlier):
            skipped.append(f"{where}: VAD on the cut hears an earlier pause of {max(earlier):.2f} s")
            continue
        yield Draft("pause", f"{rec.name}-{g0:06.2f}", audio,
                    [{"text": "[PAUSE]", "timestamp": [ts(g0 - start), ts(g1 - start)]}],
                    _meta(rec, f"{start:.2f}-{end:.2f} s", speaker, transcript=_text_in(rec, speaker, start, end)))


def _frame_db(audio: np.ndarray, frame: int = 800) -> np.ndarray:
    """RMS level of each whole 50 ms frame, dBFS (floored at -120 dB)."""
    n = len(audio) // frame
    rms = np.sqrt(np.mean(np.asarray(audio[:n * frame], np.float64).reshape(n, frame) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-6))


def _pause_drop_db(audio: np.ndarray, s: float, e: float) -> float:
    """How far the pause [s, e] lies below the speech around it: the 90th percentile of the other 50 ms
    frames' levels minus the pause's RMS level, in dB."""
    a, b = n_samples(s), n_samples(e)
    frames = _frame_db(np.concatenate([audio[:a], audio[b:]]))
    if len(frames) == 0 or b <= a:
        return 0.0
    pause = 20 * np.log10(max(float(np.sqrt(np.mean(audio[a:b].astype(np.float64) ** 2))), 1e-6))
    return float(np.percentile(frames, 90)) - pause


def _turn_takings(rec: Recording, skipped: list[str]) -> Iterator[Draft]:
    turns = _turns(rec)
    ends = [(a, b[0]) for a, b in zip(turns, turns[1:])]
    if rec.name in ENDS_ON_SENTENCE:
        ends.append((turns[-1], None))
    for turn, nxt in ends:
        speaker = turn[0].speaker
        turn_end = max(g.end for g in turn) if nxt is None else min(max(g.end for g in turn), nxt.start)
        taken = turn_end if nxt is None else max(turn_end, nxt.start)   # when the real listener spoke
        keep = min(turn_end + TAIL_KEEP_S, _next_other_start(rec, speaker, turn_end), rec.duration)
        start, why = _context_start(rec, speaker, turn[0].start, turn_end, keep)
        if start is None:
            skipped.append(f"{rec.name} turn end at {turn_end:.2f} s: {why}")
            continue
        if turn_end - start < MIN_TURN_CONTEXT_S:
            skipped.append(f"{rec.name} turn end at {turn_end:.2f} s: only {turn_end - start:.2f} s of the turn is "
                           f"clean (MIN_TURN_CONTEXT_S)")
            continue
        audio = np.concatenate([cut(rec.audio, start, keep), silence_s(TURN_SILENCE_S)])
        evidence = "clip ends on a complete sentence (no observed turn change)" if nxt is None else \
            f"the other speaker took the turn at {nxt.start:.2f} s"
        yield Draft("turn_taking", f"{rec.name}-{turn_end:06.2f}", audio,
                    [{"text": "[TURN-TAKING]", "timestamp": [ts(turn_end - start), ts(taken - start)]}],
                    _meta(rec, f"{start:.2f}-{keep:.2f} s, then {TURN_SILENCE_S:g} s of silence", speaker,
                          transcript=_text_in(rec, speaker, start, keep), turn_end=evidence))


def clean_span(rec: Recording, g: Seg) -> tuple[float, float, float, float]:
    """``g`` tightened to VAD speech (s0, e0) and cut with pads (s, e) that stop at any neighbouring
    label: the next utterance may follow within 40 ms."""
    inside = [(s, e) for s, e in rec.speech if min(e, g.end) > max(s, g.start)]
    s0 = max(g.start, inside[0][0]) if inside else g.start
    e0 = min(g.end, inside[-1][1]) if inside else g.end
    s = max([s0 - PAD_S, _prev_other_end(rec, g.speaker, s0), 0.0] + [x.end for x in rec.labels if x.end <= s0])
    e = min([e0 + PAD_S, _next_other_start(rec, g.speaker, e0), rec.duration]
            + [x.start for x in rec.labels if x.start >= e0])
    return s0, e0, s, e


def _utterances(rec: Recording, skipped: list[str]) -> list[tuple[Recording, Seg, float, float]]:
    """Transcribed utterances that are clean audio of their speaker, tightened to VAD speech."""
    out = []
    for g in rec.labels:
        if not g.text or _is_backchannel(rec, g):
            continue
        s0, e0, s, e = clean_span(rec, g)
        why = _leak(rec, g.speaker, s, e)
        if why:
            skipped.append(f"{rec.name} utterance {g.text!r} at {g.start:.2f} s: {why}")
        else:
            out.append((rec, Seg(g.speaker, s0, e0, g.text), s, e))
    return out


def _interrupts(recs: list[Recording], skipped: list[str]) -> Iterator[Draft]:
    """A user's utterance, silence for the agent's answer, then the same user's next utterance."""
    by_speaker: dict[str, list] = {}
    for rec in recs:
        for u in _utterances(rec, skipped):
            key = u[1].speaker if u[1].speaker == "ljspeech" else f"{rec.name}/{u[1].speaker}"
            by_speaker.setdefault(key, []).append(u)
    for key in sorted(by_speaker):
        for (r1, u1, s1, e1), (r2, u2, s2, e2) in zip(by_speaker[key], by_speaker[key][1:]):
            first = np.concatenate([cut(r1.audio, s1, e1), silence_s(ANSWER_GAP_S)])
            at = len(first) / SAMPLE_RATE
            audio = np.concatenate([first, cut(r2.audio, s2, e2), silence_s(INTERRUPT_TAIL_S)])
            name = (f"{r1.name}-{u1.start:06.2f}-{u2.start:06.2f}" if r1 is r2 else f"{r1.name}_{r2.name}")
            spans = (f"{s1:.2f}-{e1:.2f} s, {ANSWER_GAP_S:g} s of silence, "
                     + (f"{s2:.2f}-{e2:.2f} s" if r1 is r2 else f"then {r2.file} {s2:.2f}-{e2:.2f} s")
                     + f", {INTERRUPT_TAIL_S:g} s of silence")
            yield Draft("interrupt", name, audio,
                        [{"context": u1.text, "interrupt": u2.text,
                          "timestamp": [ts(at + u2.start - s2), ts(at + u2.end - s2)]}],
                        _meta(r1, spans, u1.speaker, recordings=sorted({r1.name, r2.name})))


def _backchannels(rec: Recording, skipped: list[str]) -> Iterator[Draft]:
    """A stretch of one speaker with the listener's backchannels silenced and listed."""
    if not rec.two_party:
        s, e = 0.0, rec.duration
        if rec.speech[-1][1] - rec.speech[0][0] >= MIN_MONOLOGUE_S:
            yield Draft("backchannel", rec.name, cut(rec.audio, s, e), [],
                        _meta(rec, "whole clip", None, listener=False,
                              transcript=_text_in(rec, rec.labels[0].speaker, s, e)))
        return
    for turn in _turns(rec, split_s=TURN_SPLIT_S):
        speaker, t0, t1 = turn[0].speaker, turn[0].start, max(g.end for g in turn)
        bcs = [g for g in rec.labels if g.speaker != speaker and _is_backchannel(rec, g) and t0 < g.start < t1]
        holes = [_extent(rec, b) for b in bcs]  # silenced over their widest extent: their audio must go
        # Candidate ends: the speaker's label and speech ends, and where another speaker cuts in.
        ends = sorted({g.end for g in turn} | {e for _, e in rec.speech if t0 < e <= t1}
                      | {g.start for g in rec.labels if g.speaker != speaker and t0 < g.start < t1 and g not in bcs},
                      reverse=True)
        found = None
        for end_t in ends:
            e = min(end_t + PAD_S, _next_other_start(rec, speaker, end_t), rec.duration)
            start, _ = _context_start(rec, speaker, t0, e - MIN_MONOLOGUE_S + 1e-6, e, holes)
            if start is not None and e - start >= MIN_MONOLOGUE_S:
                found = (start, e)
                break
        if found is None:
            if t1 - t0 >= MIN_MONOLOGUE_S:
                skipped.append(f"{rec.name} monologue {t0:.2f}-{t1:.2f} s: no clean stretch of {MIN_MONOLOGUE_S:g} s")
            continue
        s, e = found
        audio = cut(rec.audio, s, e)
        for a, b in holes:
            _silence(audio, max(a, s) - s, min(b, e) - s)
        kept = [b for b in bcs if s <= b.start and b.end <= e]
        yield Draft("backchannel", f"{rec.name}-{s:06.2f}", audio,
                    [{"text": "[BACKCHANNEL]", "timestamp": [ts(b.start - s), ts(b.end - s)]} for b in kept],
                    _meta(rec, f"{s:.2f}-{e:.2f} s" + (", the listener's backchannels silenced" if kept else ""),
                          speaker, listener=True, transcript=_text_in(rec, speaker, s, e)))


def _spread(drafts: list[Draft], k: int) -> list[Draft]:
    """At most ``k`` of ``drafts`` (in time order), evenly spaced: the whole recording, not its start."""
    if len(drafts) <= k:
        return drafts
    return [drafts[i] for i in sorted({int(round(x)) for x in np.linspace(0, len(drafts) - 1, k)})]


def peak_db(audio: np.ndarray) -> float:
    """The loudest 50 ms frame's RMS level, dBFS."""
    frames = _frame_db(audio)
    return float(frames.max()) if len(frames) else -120.0


def _capped(drafts: Iterator[Draft], kind: str, skipped: list[str]) -> Iterator[Draft]:
    groups: dict[tuple[str, ...], list[Draft]] = {}
    for d in drafts:
        level = peak_db(d.audio)
        if level < MIN_PEAK_DB:
            skipped.append(f"{'+'.join(d.meta['recordings'])} {kind} {d.name}: speech peaks at {level:.0f} dBFS "
                           f"(a far-field talker; under {MIN_PEAK_DB:g})")
            continue
        groups.setdefault(tuple(d.meta["recordings"]), []).append(d)
    for rec, group in groups.items():
        kept = _spread(group, MAX_PER_RECORDING)
        if len(kept) < len(group):
            skipped.append(f"{'+'.join(rec)} {kind}: {len(group)} candidates, kept {len(kept)} spread over the "
                           f"recording (MAX_PER_RECORDING)")
        yield from kept


def real_drafts(data: Path, kinds, skipped: list[str]) -> Iterator[Draft]:
    """Every real scenario the data supports, kind by kind, at most MAX_PER_RECORDING pauses, turn ends
    and backchannel stretches per recording; candidates left out go to ``skipped``."""
    recs = load_recordings(data)
    makers = {"pause": _pauses, "turn_taking": _turn_takings, "backchannel": _backchannels}
    for kind in ("pause", "turn_taking", "interrupt", "backchannel"):
        if kind not in kinds:
            continue
        if kind == "interrupt":   # not capped: only the transcribed recordings give them, 11 in all
            yield from _interrupts(recs, skipped)
        else:
            for rec in recs:
                yield from _capped(makers[kind](rec, skipped), kind, skipped)
    from .suite_overlap import real_overlap_drafts   # FDB v1.5's overlap kinds (their own module)
    yield from real_overlap_drafts(recs, kinds, skipped)
