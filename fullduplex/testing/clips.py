"""Reference clips with their transcripts: a folder of 16 kHz mono WAVs, each with ``<stem>.txt`` or
``<stem>.segments.jsonl`` (the repository's ``tests/data``), for tests and speed benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..audio.io import read_user_audio


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
