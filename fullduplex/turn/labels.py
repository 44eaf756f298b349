"""Real pauses with labels: who spoke before and after each pause of a recorded conversation.

A conversation is a folder holding one mono WAV and one RTTM (who speaks when). Silero VAD finds the
pauses >= 200 ms between speech segments; the RTTM names the speaker on each side: the same speaker
goes on (a hold) or the other one takes the turn (a shift). ``turn eval`` scores detectors on the
shared conversations this way, and ``turn train --conversations`` learns from a user's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio.frames import SAMPLE_RATE as SR
from ..errors import UserError


@dataclass
class Pause:
    set: str
    source: str               # recording / clip name
    end_s: float              # speech stopped
    gap_s: float              # silence until anyone spoke again (holds: the pause length)
    done: bool                # shift (the other speaker took the turn) or the VAP short phrase's end
    turn_start_s: float
    group: str = ""
    signals: dict = field(default_factory=dict)

    @property
    def pause_s(self) -> float:   # the training Event's name for the hold length
        return self.gap_s


def read_audio(path: Path) -> np.ndarray:
    from ..audio.io import read_user_audio
    return read_user_audio(path)[0]


def vad_segments(audio: np.ndarray) -> list[tuple[float, float]]:
    from ..config import VadConfig
    from ..models.vad import SileroVad, SpeechSegmenter
    seg = SpeechSegmenter(VadConfig())
    vad = SileroVad()
    spans, start = [], None
    for edge in seg.push(vad.push(audio)):
        if edge.kind == "speech_start":
            start = edge.t
        elif start is not None:
            spans.append((start, edge.t))
            start = None
    if start is not None:
        spans.append((start, len(audio) / SR))
    return spans


def conversation_dirs(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` that hold a conversation (a .wav and an .rttm)."""
    if not Path(folder).is_dir():
        raise UserError(f"no conversations at {folder}: expected a folder with one sub-folder per conversation "
                        "(a .wav and an .rttm each)")
    return [c for c in sorted(p for p in Path(folder).iterdir() if p.is_dir())
            if any(c.glob("*.wav")) and any(c.glob("*.rttm"))]


def _read_rttm(path: Path) -> list[tuple[float, float, str]]:
    out = []
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            out.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return out


def _speaker(labels, a: float, b: float) -> str | None:
    best, best_overlap = None, 0.0
    for s, e, spk in labels:
        ov = min(b, e) - max(a, s)
        if ov > best_overlap + 1e-9:
            best, best_overlap = spk, ov
    return best


def conversation_pauses(folder: Path, min_pause_s: float = 0.2) -> tuple[list[Pause], dict[str, np.ndarray]]:
    """Every labelled pause of the conversations in ``folder`` (one sub-folder each: a .wav and an .rttm)."""
    pauses, audio = [], {}
    for conv in conversation_dirs(folder):
        wavs, rttms = sorted(conv.glob("*.wav")), sorted(conv.glob("*.rttm"))
        a = read_audio(wavs[0])
        audio[conv.name] = a
        labels = _read_rttm(rttms[0])
        segs = vad_segments(a)
        speakers = [_speaker(labels, max(s, e - 0.5), e) for s, e in segs]
        turn_start = segs[0][0] if segs else 0.0
        for k in range(len(segs) - 1):
            end, nxt = segs[k][1], segs[k + 1][0]
            before, after = speakers[k], _speaker(labels, nxt, min(nxt + 0.5, segs[k + 1][1]))
            if k > 0 and speakers[k] != speakers[k - 1]:
                turn_start = segs[k][0]
            if nxt - end < min_pause_s or before is None or after is None:
                continue
            pauses.append(Pause("conversations", conv.name, end, nxt - end, before != after,
                                max(turn_start, end - 8.0), conv.name))
    return pauses, audio
