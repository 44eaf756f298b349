"""A training set for the turn model: what it is built from, its labelled pauses, its clips.

``DataConfig`` says what to build and gives the keys of the two caches (the clips, and the signals
computed on them): everything is deterministic given the seed, so a key names one build. Each
*event* is one pause: the time speech stopped, whether the turn was done, and for a hold how long
the pause lasted. The clips come from ``clips.build_clips``; the events' signals from
``event_signals.compute_signals``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..audio.frames import SAMPLE_RATE
from .features import SMART_TURN_AT_S

SR = SAMPLE_RATE
DATA_VERSION = 4  # bump when synthesis changes: it is part of every cache key


def default_shared_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass(frozen=True)
class DataConfig:
    n_items: int = 800              # scripted turns
    seed: int = 0
    piper_share: float = 0.55       # the rest is espeak-ng
    vap: bool = True                # add the VAP phrase pairs
    vap_exclude: tuple[str, ...] = ()  # VAP phrase groups left out (cross-validation folds)
    transcripts: str = "moonshine"  # "moonshine": what the recogniser hears; "script": the text as written
    smart_turn: bool = True
    llm: bool = False
    augment: bool = True
    shared_dir: str | None = None

    def clips_key(self) -> str:
        d = {k: v for k, v in asdict(self).items() if k in ("n_items", "seed", "piper_share", "vap", "vap_exclude", "augment")}
        d["version"] = DATA_VERSION
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def signals_key(self) -> str:
        d = {"clips": self.clips_key(), "transcripts": self.transcripts, "smart_turn": self.smart_turn,
             "llm": self.llm, "at": SMART_TURN_AT_S}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Event:
    clip: int
    end_s: float               # where speech stopped (clip time)
    done: bool                 # the turn ended here
    pause_s: float | None      # a hold: how long the speaker paused before going on
    turn_start_s: float
    script: str                # the words spoken so far, as written
    source: str                # piper | espeak | vap
    group: str                 # item id, or the VAP phrase group
    signals: dict = field(default_factory=dict)


@dataclass
class Dataset:
    clips: list[np.ndarray]
    events: list[Event]

    def audio_until(self, event: Event, extra_s: float = 0.0) -> np.ndarray:
        """Clip audio up to the event's speech end plus ``extra_s`` of the following pause
        (padded with the clip's own trailing noise where the clip ends)."""
        clip = self.clips[event.clip]
        stop = int(round((event.end_s + extra_s) * SR))
        if stop <= len(clip):
            return clip[:stop]
        tail = clip[-int(0.3 * SR):]
        reps = int(np.ceil((stop - len(clip)) / len(tail)))
        return np.concatenate([clip, np.tile(tail, reps)])[:stop]
