"""Shared fixtures: real clips, the shared evaluation data, and one model stack per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fullduplex.config import Config
from fullduplex.testing import clips
from fullduplex.engines import ModelStack

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_clip(name: str) -> np.ndarray:
    return clips.read_clip(DATA, name)


def reference_text(stem: str) -> str:
    return clips.reference_text(DATA, stem)


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
