"""Shared fixtures: real clips, the shared evaluation data, and one model stack per test session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fullduplex.config import Config
from fullduplex.engines import ModelStack

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_clip(name: str) -> np.ndarray:
    audio, rate = sf.read(DATA / name, dtype="float32")
    assert rate == 16000
    return audio


def reference_text(stem: str) -> str:
    txt = DATA / f"{stem}.txt"
    if txt.exists():
        return txt.read_text().strip()
    rows = [json.loads(line) for line in (DATA / f"{stem}.segments.jsonl").read_text().splitlines() if line.strip()]
    return " ".join(r["text"] for r in rows)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared evaluation data is not at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def models() -> ModelStack:
    """The embedded model stack, loaded once for every test that needs real models."""
    stack = ModelStack(Config())
    stack.load_all()
    return stack
