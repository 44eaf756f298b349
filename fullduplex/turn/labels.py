"""Real pauses with labels: what happened after each pause of a recorded conversation.

A conversation is a folder holding one mono WAV and one RTTM (who speaks when). Silero VAD finds the
pauses >= 200 ms between speech segments (what the agent's VAD would see); the RTTM says who spoke
on each side and what happened in between:

- **shift**: another speaker took the turn: the answer belongs here.
- **hold**: the same speaker went on.
- **backchannel**: a listener said something short ("mm-hm", <= ``BACKCHANNEL_MAX_S``) in the pause
  or just after it, and the speaker went on within ``RESUME_WITHIN_S``: for the turn model a hold (the
  speaker kept the floor; ``gap_s`` is until they resumed), for the agent a place to acknowledge.

Some pauses cannot be labelled honestly and are left out, each case counted (``PauseCounts``):
no RTTM label on one side (sparse labels: some AMI excerpts label one speaker only), two speakers
labelled at the pause's edge (overlapping talk), a long stretch of labelled speech inside what the VAD
heard as silence, and the gap right after a listener's backchannel (the floor holder resuming is not
a turn end nor a hold of the listener's).
``turn eval`` scores detectors on the shared conversations this way; ``turn train --conversations``
learns from a user's own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..models.vad import speech_spans

BACKCHANNEL_MAX_S = 1.0   # a listener's "mm-hm", "yeah", "right": people's backchannels are shorter than this
RESUME_WITHIN_S = 1.0     # ... and the speaker goes on this soon after it (else the listener took the turn)
EDGE_S = 0.5              # the stretch of speech either side of a pause whose labelled speaker names the side
OVERLAP_EDGE_S = 0.2      # two speakers both labelled for 0.1 s of the last 0.2 s: overlapping talk at the edge
# Labels and the VAD disagree by a few hundred ms at onsets (the VAD needs ~0.1-0.3 s to confirm speech):
# talk labelled inside a silence counts only between 0.1 s after the pause begins and 0.3 s before it ends.
INSIDE_MARGINS_S = (0.1, 0.3)
LABELS = ("shift", "hold", "backchannel")
SAME_AUDIO_TOL = 1e-3     # two files this close sample by sample are one recording shipped twice


@dataclass
class Pause:
    set: str
    source: str               # recording / clip name
    end_s: float              # speech stopped
    gap_s: float              # silence until the speaker went on (holds, backchannels) or anyone spoke (shifts)
    done: bool                # shift (the other speaker took the turn) or the VAP short phrase's end
    turn_start_s: float
    group: str = ""
    signals: dict = field(default_factory=dict)
    label: str = ""           # shift | hold | backchannel ("" for sets not cut from an RTTM)
    speaker: str = ""         # who paused
    listener_s: float | None = None   # backchannels: when the listener's sound began, seconds into the pause

    @property
    def pause_s(self) -> float:   # the training Event's name for the hold length
        return self.gap_s


@dataclass
class PauseCounts:
    """What the labelling kept and left out, per reason (``turn eval`` prints it)."""
    kept: Counter = field(default_factory=Counter)      # label -> n
    skipped: Counter = field(default_factory=Counter)   # reason -> n
    duplicates: dict = field(default_factory=dict)      # a recording left out -> the one it repeats

    def add(self, other: "PauseCounts") -> None:
        self.kept.update(other.kept)
        self.skipped.update(other.skipped)

    def describe(self) -> str:
        kept = ", ".join(f"{self.kept[k]} {k}s" for k in LABELS)
        left = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        dup = "".join(f"; {a} repeats {b} (left out)" for a, b in self.duplicates.items())
        return f"{kept}; pauses left out: {left}{dup}"


def read_audio(path: Path) -> np.ndarray:
    from ..audio.io import read_user_audio
    return read_user_audio(path)[0]


def conversation_dirs(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` that hold a conversation (a .wav and an .rttm)."""
    if not Path(folder).is_dir():
        raise UserError(f"no conversations at {folder}: expected a folder with one sub-folder per conversation "
                        "(a .wav and an .rttm each)")
    return [c for c in sorted(p for p in Path(folder).iterdir() if p.is_dir())
            if any(c.glob("*.wav")) and any(c.glob("*.rttm"))]


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, speaker) for each SPEAKER line, in time order."""
    out = []
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            out.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return sorted(out)


def _speakers_in(labels, a: float, b: float, min_s: float = 0.05) -> dict[str, float]:
    """Labelled speech of each speaker inside [a, b] (s), those with at least ``min_s``."""
    out: dict[str, float] = {}
    for s, e, spk in labels:
        ov = min(b, e) - max(a, s)
        if ov >= min_s:
            out[spk] = out.get(spk, 0.0) + ov
    return out


def _main_speaker(labels, a: float, b: float) -> str | None:
    talk = _speakers_in(labels, a, b)
    return max(talk, key=talk.get) if talk else None


def _resumes(labels, speaker: str, after: float) -> float | None:
    """When ``speaker`` next starts talking after ``after`` (or is still talking then: ``after``)."""
    times = [max(s, after) for s, e, spk in labels if spk == speaker and e > after + 0.05]
    return min(times) if times else None


def label_pauses(labels: list[tuple[float, float, str]], segments: list[tuple[float, float]], source: str = "",
                 min_pause_s: float = 0.2, duration_s: float | None = None) -> tuple[list[Pause], PauseCounts]:
    """Label each pause >= ``min_pause_s`` between VAD ``segments`` from the RTTM ``labels``."""
    counts = PauseCounts()
    pauses: list[Pause] = []
    turn_start = segments[0][0] if segments else 0.0
    floor_holder = None          # who holds the floor: backchannels do not take it
    after_backchannel = False    # the previous gap ended in a listener's backchannel
    for k in range(len(segments) - 1):
        (s0, end), (nxt, e1) = segments[k], segments[k + 1]
        gap = nxt - end
        before = _main_speaker(labels, max(s0, end - EDGE_S), end)
        after = _main_speaker(labels, nxt, min(nxt + EDGE_S, e1))
        was_bc, after_backchannel = after_backchannel, False
        if before is not None and before != floor_holder and not was_bc:
            floor_holder, turn_start = before, s0
        if gap < min_pause_s:
            continue
        if before is None or after is None:
            counts.skipped["without a labelled speaker on one side"] += 1
            continue
        if was_bc:
            counts.skipped["ending a listener's backchannel"] += 1
            continue
        if len(_speakers_in(labels, end - OVERLAP_EDGE_S, end, min_s=0.1)) > 1:
            counts.skipped["with overlapping talk at the pause"] += 1
            continue
        inside = {spk: d for spk, d in _speakers_in(labels, end + INSIDE_MARGINS_S[0], nxt - INSIDE_MARGINS_S[1],
                                                     min_s=0.1).items() if spk != before}
        listener, listener_at = None, None
        if inside:                                     # labelled speech the VAD did not hear as such
            spk = max(inside, key=inside.get)
            seg = next((s, e) for s, e, x in labels if x == spk and min(nxt, e) - max(end, s) >= 0.05)
            if seg[1] - seg[0] > BACKCHANNEL_MAX_S:
                counts.skipped["with labelled talk inside the silence"] += 1
                continue
            listener, listener_at = spk, seg[0]
        elif after != before:
            seg = next((s, e) for s, e, x in labels if x == after and e > nxt and s < nxt + EDGE_S)
            if seg[1] - seg[0] <= BACKCHANNEL_MAX_S:
                listener, listener_at = after, seg[0]
        label = "shift" if after != before else "hold"
        gap_s = gap
        if listener is not None:
            listener_end = next(e for s, e, x in labels if x == listener and s == listener_at)
            back = _resumes(labels, before, end + 0.05)
            if back is not None and back <= listener_end + RESUME_WITHIN_S:
                label, gap_s = "backchannel", max(back - end, gap)
                after_backchannel = after != before       # the next gap (listener -> speaker) is not a pause of anyone's
            elif after == before:
                label = "hold"
        counts.kept[label] += 1
        pauses.append(Pause("conversations", source, end, gap_s, label == "shift", max(turn_start, end - 8.0), source,
                            label=label, speaker=before,
                            listener_s=None if label != "backchannel" else max(0.0, listener_at - end)))
    return pauses, counts


def same_recording(a: np.ndarray, b: np.ndarray) -> bool:
    """One recording shipped twice (the shared AMI ES2003a/b excerpts are pyannote's dev00/dev01 again,
    re-encoded one LSB apart): it would sit on both sides of a leave-one-recording-out split."""
    return len(a) == len(b) and float(np.max(np.abs(a - b), initial=0.0)) < SAME_AUDIO_TOL


def conversation_pauses(folder: Path, min_pause_s: float = 0.2,
                        counts: PauseCounts | None = None) -> tuple[list[Pause], dict[str, np.ndarray]]:
    """Every labelled pause of the conversations in ``folder`` (one sub-folder each: a .wav and an .rttm).
    ``counts``, if given, receives what was kept and left out."""
    pauses, audio = [], {}
    counts = counts if counts is not None else PauseCounts()
    for conv in conversation_dirs(folder):
        a = read_audio(sorted(conv.glob("*.wav"))[0])
        twin = next((name for name, b in audio.items() if same_recording(a, b)), None)
        if twin is not None:          # keep the first by name
            counts.duplicates[conv.name] = twin
            continue
        labels = read_rttm(sorted(conv.glob("*.rttm"))[0])
        audio[conv.name] = a
        ps, c = label_pauses(labels, speech_spans(a), conv.name, min_pause_s)
        pauses += ps
        counts.add(c)
    return pauses, audio
