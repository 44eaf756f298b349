"""The VAP phrase pairs (``eot/vap-phrases`` in the shared data) as turns: "Are you a student?" vs
"Are you a student | here at this university?", the long one cut at the short phrase's end with a
pause inserted, laid out as the synthesised turns are (``synth.py``).
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio.frames import SAMPLE_RATE
from ..audio.resample import resample
from ..errors import UserError
from .augment import augment
from .dataset import DataConfig, Event
from .synth import TAIL_S, sample_pause, silence

SR = SAMPLE_RATE


def vap_rows(shared_dir: Path) -> list[dict]:
    folder = shared_dir / "eot" / "vap-phrases"
    table = folder / "phrases.csv"
    if not table.exists():
        raise UserError(f"the VAP phrase pairs are not at {folder}; pass --no-vap or the shared data folder")
    rows = list(csv.DictReader(table.open()))
    for r in rows:
        r["path"] = str(folder / "audio" / Path(r["audio_path"]).name)
        r["ends_list"] = ast.literal_eval(r["ends"])
    return rows


def render_vap(row: dict, index: int, cfg: DataConfig, pause_s: float | None = None,
               augment_it: bool | None = None) -> tuple[np.ndarray, list[Event]]:
    """A VAP clip as a turn: short -> done at its end; long -> a hold at the short phrase's end
    (a pause inserted there), then done at its end."""
    rng = np.random.default_rng([cfg.seed, 2, index])
    audio, rate = sf.read(row["path"], dtype="float32")
    audio = resample(audio if audio.ndim == 1 else audio.mean(axis=1), rate, SR)
    end = float(row["ends_list"][-1])
    lead = 0.3
    words = row["text"]
    if row["long_short"] == "short":
        pieces = [silence(lead), audio[:int(end * SR)], silence(TAIL_S)]
        events = [Event(-1, lead + end, True, None, lead, words, "vap", row["phrase"])]
    else:
        scp = float(row["scp"])
        pause = sample_pause(rng) if pause_s is None else pause_s
        first = audio[:int(scp * SR)]
        rest = audio[int(scp * SR):int(end * SR)]
        short_text = " ".join(ast.literal_eval(row["words"])[:len([e for e in row["ends_list"] if e <= scp + 1e-6])])
        pieces = [silence(lead), first, silence(pause), rest, silence(TAIL_S)]
        t_hold = lead + len(first) / SR
        events = [Event(-1, t_hold, False, pause, lead, short_text, "vap", row["phrase"]),
                  Event(-1, t_hold + pause + len(rest) / SR, True, None, lead, words, "vap", row["phrase"])]
    clip = np.concatenate(pieces)
    do_aug = cfg.augment if augment_it is None else augment_it
    return (augment(clip, rng) if do_aug else clip), events
