"""``fullduplex simulate``: one agent, one recording, in real time, written in the FDB layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.frames import SAMPLE_RATE, silence
from ..audio.io import AudioInfo, read_user_audio
from ..config import Config
from ..engines import ModelStack, make_agent
from .latency import TurnLatency, breakdown
from .runner import RunResult, run_agent


@dataclass
class Simulation:
    info: AudioInfo
    tail_s: float
    result: RunResult
    turns: list[TurnLatency]
    paths: dict[str, Path]


def with_tail(audio: np.ndarray, tail_s: float) -> np.ndarray:
    return np.concatenate([audio, silence(int(round(tail_s * SAMPLE_RATE)))]) if tail_s > 0 else audio


def simulate(cfg: Config, agent_name: str, input_path: str | Path, out_dir: str | Path,
             channel: int | None = None, models: ModelStack | None = None, progress: bool = False) -> Simulation:
    audio, info = read_user_audio(input_path, channel)       # bad input fails before anything loads
    if cfg.moshi.slots == 0:   # one call: a batch of one (automatic slots would size it for a server)
        cfg = cfg.with_(moshi={"slots": 1})
    models = models or ModelStack(cfg)
    agent = make_agent(agent_name, models, cfg)
    user = with_tail(audio, cfg.runtime.tail_s)
    result = run_agent(agent, user, progress=progress)
    paths = result.recorder.write(out_dir, result.events)
    return Simulation(info, cfg.runtime.tail_s, result, breakdown(result.events), paths)
