"""Building a training set's clips (synthesised turns, the VAP phrase pairs, the user's own labelled
conversations) and caching them under ``cache_dir``, keyed by ``DataConfig.clips_key``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from .dataset import DataConfig, Dataset, Event, default_shared_dir
from .synth import render_item
from .vap import render_vap, vap_rows
from .voices import Voices


def build_clips(cfg: DataConfig, cache_dir: Path, progress: Callable[[str], None] = lambda m: None) -> Dataset:
    path = Path(cache_dir) / f"clips-{cfg.clips_key()}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        offsets = z["offsets"]
        flat = z["audio"].astype(np.float32) / 32767
        clips = [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        events = [Event(**e) for e in json.loads(str(z["events"]))]
        return Dataset(clips, events)
    voices = Voices(cfg.seed)
    clips, events = [], []
    t0 = time.time()
    for i in range(cfg.n_items):
        audio, evs = render_item(i, cfg, voices)
        for e in evs:
            e.clip = len(clips)
        clips.append(audio)
        events += evs
        if (i + 1) % 100 == 0:
            progress(f"synthesised {i + 1}/{cfg.n_items} turns ({time.time() - t0:.0f} s)")
    if cfg.vap:
        shared = Path(cfg.shared_dir) if cfg.shared_dir else default_shared_dir()
        for j, row in enumerate(vap_rows(shared)):
            if row["phrase"] in cfg.vap_exclude:
                continue
            audio, evs = render_vap(row, j, cfg)
            for e in evs:
                e.clip = len(clips)
            clips.append(audio)
            events += evs
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [len(c) for c in clips])
    flat = np.concatenate(clips) if clips else np.zeros(0, np.float32)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(tmp, audio=np.round(np.clip(flat, -1, 1) * 32767).astype(np.int16), offsets=offsets,
                        events=json.dumps([{k: v for k, v in asdict(e).items() if k != "signals"} for e in events]))
    tmp.replace(path)
    progress(f"synthesised {len(clips)} clips, {len(events)} pauses -> {path}")
    return build_clips(cfg, cache_dir)   # reload: the cached int16 audio is what every later step sees
