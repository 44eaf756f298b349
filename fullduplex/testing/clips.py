"""Reference clips with their transcripts: a folder of 16 kHz mono WAVs, each with ``<stem>.txt`` or
``<stem>.segments.jsonl`` (the repository's ``tests/data``), for tests and speed benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..audio.io import read_user_audio
from ..config import DuplexConfig, VadConfig

FRAME = 320   # the agent's 20 ms frame


def read_clip(folder: Path, name: str) -> np.ndarray:
    return read_user_audio(Path(folder) / name)[0]


def reference_text(folder: Path, stem: str) -> str:
    """The clip's transcript: ``<stem>.txt``, or the texts of ``<stem>.segments.jsonl`` joined."""
    txt = Path(folder) / f"{stem}.txt"
    if txt.exists():
        return txt.read_text().strip()
    rows = [json.loads(line) for line in (Path(folder) / f"{stem}.segments.jsonl").read_text().splitlines()
            if line.strip()]
    return " ".join(r["text"] for r in rows)


def pause_asks(clip: np.ndarray) -> set[int]:
    """The frames at which the duplex agent would ask its ear for the words: ``ask_after_s`` into each
    pause, by the project's VAD (Silero + segmenter) run on 20 ms frames as the agent runs it."""
    from ..models.vad import SileroVad, SpeechSegmenter
    vad, seg = SileroVad(), SpeechSegmenter(VadConfig())
    ask_after, asks, spoke = DuplexConfig().ask_after_s, set(), False
    for i in range(len(clip) // FRAME):
        seg.push(vad.push(clip[i * FRAME:(i + 1) * FRAME]))
        if seg.silence_s == 0:
            spoke = True
        elif spoke and (i + 1) * FRAME / 16000 - seg.last_speech_end >= ask_after - 1e-9:
            asks.add(i)
            spoke = False
    return asks
