"""The signals of every pause of a training set (prosody, recogniser transcript, Smart Turn, optionally
the LLM), computed once and cached under ``cache_dir``, keyed by ``DataConfig.signals_key``: they are
what training and the ablation reuse.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..audio.frames import SAMPLE_RATE
from ..errors import UserError
from .dataset import DataConfig, Dataset
from .features import SMART_TURN_AT_S, pause_signals

SR = SAMPLE_RATE


def _json_safe(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _from_json(d: dict) -> dict:
    return {k: (float("nan") if v is None else v) for k, v in d.items()}


def compute_signals(data: Dataset, cfg: DataConfig, cache_dir: Path,
                    progress: Callable[[str], None] = lambda m: None) -> Dataset:
    path = Path(cache_dir) / f"signals-{cfg.signals_key()}.json"
    if path.exists():
        rows = json.loads(path.read_text())
        if len(rows) == len(data.events):
            for e, s in zip(data.events, rows):
                e.signals = _from_json(s["signals"])
                e.signals["transcript"] = s["transcript"]
            return data
    if cfg.llm:
        # The LLM reads only the transcript: add it to the signals computed without it.
        base = replace(cfg, llm=False)
        compute_signals(data, base, cache_dir, progress)
        from ..models.llm_eou import LlmEndOfUtterance
        llm = LlmEndOfUtterance()
        rows = []
        for e in data.events:
            e.signals["llm_eou"] = llm.probability(e.signals["transcript"])
            rows.append({"transcript": e.signals["transcript"],
                         "signals": _json_safe({k: v for k, v in e.signals.items() if k != "transcript"})})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(rows))
        tmp.replace(path)
        return data
    if cfg.transcripts not in ("moonshine", "script"):
        raise UserError(f"unknown transcript source {cfg.transcripts!r}; choose moonshine or script")
    stt = smart = None
    if cfg.transcripts == "moonshine" or any(e.source == "real" for e in data.events):   # real speech has no script
        from ..config import SttConfig
        from ..models.stt import load_stt
        stt = load_stt(SttConfig())
    if cfg.smart_turn:
        from ..models.smart_turn import SmartTurn
        smart = SmartTurn()
    rows = []
    t0 = time.time()
    for i, e in enumerate(data.events):
        until_end = data.audio_until(e)
        if cfg.transcripts == "moonshine" or e.source == "real":
            transcript = stt.transcribe(until_end[int(max(e.turn_start_s - 0.1, 0) * SR):]).text
        else:
            transcript = e.script
        st = smart.probability(data.audio_until(e, SMART_TURN_AT_S)) if smart else float("nan")
        e.signals = pause_signals(until_end, transcript, st)
        e.signals["transcript"] = transcript
        rows.append({"transcript": transcript,
                     "signals": _json_safe({k: v for k, v in e.signals.items() if k != "transcript"})})
        if (i + 1) % 200 == 0:
            progress(f"signals for {i + 1}/{len(data.events)} pauses ({time.time() - t0:.0f} s)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(rows))
    tmp.replace(path)
    return data
