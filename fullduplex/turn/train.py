"""`fullduplex turn train`: rebuild a turn model from synthesised speech and the VAP phrase pairs (the
default: the recipe of the committed ``turn.json``), from real recordings (``--learn-from real``: the
shared conversations and monologue pauses, or your own with ``--conversations``; the recipe of
``turn-real.json``), or both.

Which is better is measured, and the two measurements disagree (docs/turn/report.md): left one
recording out, the model trained on real pauses separates real turn ends from holds at 0.67 [0.58,
0.76] where the synthetic one scores 0.47 [0.37, 0.58] (synthesised prosody transfers backwards); but
run live on the real dev bench it answers later (its P(done) at real turn ends is low, so it waits
longer), so the live default stays the synthetic model until that is understood.

1. Synthesise the turns and compute their signals (``clips.py``, ``event_signals.py``); label the real
   pauses and compute theirs (``labels.py``, ``real.py``). All cached under ``--cache``. Mixed, a
   real pause weighs ``real_weight`` synthetic ones.
2. Expand every pause into rows, one per silence duration the predictor may be asked about
   (0.2-2 s): a turn end gives "done" at every duration; a hold of length P gives "not done" for the
   durations shorter than P (after that the speaker was talking again). Rows are weighted by the
   stretch of time they stand for, so the model estimates P(done | signals, still silent after s).
3. Fit the gradient-boosted trees (``gbm.py``).
4. Pick the operating threshold on out-of-fold predictions (folds by turn or recording, so a pause is
   never scored by a model that saw it): the lowest threshold whose false cut-off rate on the
   training holds stays within ``target_cutoff``.
5. Write one JSON file: trees, features, threshold, versions and the training summary.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UserError
from .clips import build_clips
from .dataset import DataConfig, Event
from .event_signals import compute_signals
from .features import (DECISION_START_S, DEFAULT_GROUPS, MONOTONE, SMART_TURN_AT_S, SMART_TURN_LATENCY_S,
                       feature_names, vector)
from .gbm import GbmParams, Trees, fit
from .model import DEFAULT_MODEL, MODEL_FORMAT

MODEL_VERSION = "1.0"
DEFAULT_CACHE = Path("build") / "turn-data"

# Silence durations a training row stands for (s); the first two come before Smart Turn's answer.
ROW_DELTAS = (0.2, 0.24, 0.26, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.4, 1.7, 2.0)
STEP_S = 0.02                 # decision grid of the simulations (one 20 ms frame)
MAX_SILENCE_S = 2.0           # fallback: done after this much silence whatever the model says (the longest allowed)
FALLBACKS_S = (1.0, 1.2, 1.5, 2.0)  # fallbacks the operating point may choose from
# VAP phrase groups the shipped model never sees: the test suite and `turn eval` score it on them.
VAP_HELD_OUT = ("basketball", "experiment", "psychology")
# How many synthetic pauses one real pause weighs when both are used (1, 3 and 10 measured the same:
# `turn eval --ablation`).
REAL_WEIGHT = 3.0


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = DataConfig()
    groups: tuple[str, ...] = DEFAULT_GROUPS
    gbm: GbmParams = GbmParams()
    target_cutoff: float = 0.10    # false cut-offs allowed on the training holds when picking the threshold
    folds: int = 3
    vap_holdout: tuple[str, ...] = VAP_HELD_OUT
    synthetic: bool = True         # learn from synthesised speech and the VAP pairs (the committed live model)
    real: bool = False             # learn from real recordings (the shared ones, or ``conversations``): turn-real.json
    conversations: str | None = None   # your own labelled conversations instead of the shared ones
    real_weight: float = REAL_WEIGHT

    @classmethod
    def small(cls, seed: int = 0) -> "TrainConfig":
        """A few seconds end to end: espeak-ng voices only, script transcripts, no Smart Turn, no VAP."""
        return cls(data=DataConfig(n_items=40, seed=seed, piper_share=0.0, vap=False, transcripts="script",
                                   smart_turn=False, augment=True),
                   groups=("silence", "prosody", "text"), gbm=GbmParams(n_trees=40, seed=seed), folds=2)


def _row_weights(deltas: tuple[float, ...]) -> np.ndarray:
    d = np.asarray(deltas)
    edges = np.concatenate([[d[0]], (d[1:] + d[:-1]) / 2, [d[-1] + (d[-1] - d[-2]) / 2]])
    return np.diff(edges)


def make_rows(events: list[Event], names: list[str], deltas: tuple[float, ...] = ROW_DELTAS,
              latency_s: float = SMART_TURN_LATENCY_S,
              event_weights: list[float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One row per (pause, silence duration); ``event_weights`` scales each pause's rows (real speech
    counts for more than the synthetic bulk: ``TrainConfig.real_weight``)."""
    weights = _row_weights(deltas)
    X, y, w, idx = [], [], [], []
    for i, e in enumerate(events):
        scale = 1.0 if event_weights is None else event_weights[i]
        for delta, wt in zip(deltas, weights):
            if not e.done and delta >= e.pause_s:
                break
            X.append(vector(e.signals, delta, names, latency_s))
            y.append(1.0 if e.done else 0.0)
            w.append(wt * scale)
            idx.append(i)
    y, w = np.asarray(y), np.asarray(w)
    if 0 < y.sum() < len(y):   # both classes carry the same total weight: probabilities stay in a usable range
        w = np.where(y == 1, w * 0.5 / w[y == 1].sum(), w * 0.5 / w[y == 0].sum()) * len(y)
    return np.asarray(X, float), y, w, np.asarray(idx)


def probability_curves(trees: Trees, events: list[Event], horizon_s: float = 3.0,
                       latency_s: float = SMART_TURN_LATENCY_S) -> tuple[np.ndarray, np.ndarray]:
    """P(done) for every event on the decision grid: (grid seconds, array events x grid)."""
    grid = np.round(np.arange(DECISION_START_S, horizon_s + 1e-9, STEP_S), 4)
    X = np.asarray([vector(e.signals, d, trees.features, latency_s) for e in events for d in grid], float)
    return grid, trees.predict(X).reshape(len(events), len(grid))


def fire_times(curves: np.ndarray, grid: np.ndarray, threshold: float, max_silence_s: float = MAX_SILENCE_S) -> np.ndarray:
    """First grid time the decision says done (threshold crossed, or the silence fallback)."""
    fires = (curves >= threshold) | (grid[None, :] >= max_silence_s - 1e-9)
    first = np.where(fires.any(axis=1), fires.argmax(axis=1), len(grid) - 1)
    return grid[first]


def cutoffs_and_delay(fire: np.ndarray, events: list[Event]) -> tuple[float, float]:
    holds = [i for i, e in enumerate(events) if not e.done]
    dones = [i for i, e in enumerate(events) if e.done]
    fco = float(np.mean([fire[i] < events[i].pause_s for i in holds])) if holds else float("nan")
    delay = float(np.mean(fire[dones])) if dones else float("nan")
    return fco, delay


def training_events(events: list[Event], vap_holdout: tuple[str, ...]) -> list[Event]:
    return [e for e in events if not (e.source == "vap" and e.group in vap_holdout)]


def fit_trees(events: list[Event], groups: tuple[str, ...], params: GbmParams,
              event_weights: list[float] | None = None) -> Trees:
    names = feature_names(groups)
    X, y, w, _ = make_rows(events, names, event_weights=event_weights)
    return fit(X, y, names, params, weight=w, monotone=MONOTONE)


def out_of_fold_curves(events: list[Event], groups: tuple[str, ...], params: GbmParams, folds: int,
                       seed: int = 0, event_weights: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    group_ids = sorted({e.group for e in events})
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(group_ids, rng.permutation(len(group_ids)) % folds))
    curves, grid = None, None
    for k in range(folds):
        train_idx = [i for i, e in enumerate(events) if fold_of[e.group] != k]
        test_idx = [i for i, e in enumerate(events) if fold_of[e.group] == k]
        trees = fit_trees([events[i] for i in train_idx], groups, params,
                          None if event_weights is None else [event_weights[i] for i in train_idx])
        grid, c = probability_curves(trees, [events[i] for i in test_idx])
        if curves is None:
            curves = np.zeros((len(events), len(grid)))
        curves[test_idx] = c
    return grid, curves


def choose_threshold(grid: np.ndarray, curves: np.ndarray, events: list[Event],
                     target_cutoff: float) -> tuple[float, float, list[dict]]:
    """The operating point (threshold, silence fallback) with the shortest mean delay on turn ends
    whose false cut-off rate on holds stays within ``target_cutoff`` (out-of-fold predictions)."""
    table = []
    for fallback in FALLBACKS_S:
        for thr in np.round(np.arange(0.05, 0.995, 0.01), 2):
            fco, delay = cutoffs_and_delay(fire_times(curves, grid, thr, fallback), events)
            table.append({"threshold": float(thr), "max_silence_s": fallback, "false_cutoffs": fco,
                          "mean_delay_s": delay})
    ok = [r for r in table if r["false_cutoffs"] <= target_cutoff]
    best = min(ok, key=lambda r: (r["mean_delay_s"], -r["max_silence_s"], r["threshold"])) if ok else \
        min(table, key=lambda r: (r["false_cutoffs"], r["mean_delay_s"]))
    return best["threshold"], best["max_silence_s"], table


def real_training_pauses(cfg: TrainConfig, cache_dir: Path, progress: Callable[[str], None]) -> list:
    """The real pauses to learn from, with their signals: your conversations (``cfg.conversations``), or
    the shared conversations and monologue pauses."""
    from .dataset import default_shared_dir
    from .real import conversation_set, monologue_pauses, pause_set_signals
    shared = Path(cfg.data.shared_dir) if cfg.data.shared_dir else default_shared_dir()
    folder = Path(cfg.conversations) if cfg.conversations else shared / "conversations"
    sets = [conversation_set(folder)]
    if not sets[0].audio:
        raise UserError(f"{folder}: no conversation folders (each needs a .wav and an .rttm)")
    if not sets[0].pauses:
        raise UserError(f"{folder}: no pause of 200 ms or more with a labelled speaker on both sides")
    if not cfg.conversations:
        sets.append(monologue_pauses(shared))
    for s in sets:
        pause_set_signals(s.pauses, s.audio, cache_dir, progress=progress)
    progress(f"real pauses: {sets[0].counts.describe()}")
    return [p for s in sets for p in s.pauses]


def model_spec(trees: Trees, threshold: float, max_silence_s: float, cfg: TrainConfig, summary: dict) -> dict:
    return {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "groups": list(cfg.groups),
        "threshold": threshold,
        "max_silence_s": max_silence_s,
        "decision_start_s": DECISION_START_S,
        "smart_turn_at_s": SMART_TURN_AT_S,
        "smart_turn_latency_s": SMART_TURN_LATENCY_S,
        "training": summary,
        "trees": trees.to_dict(),
    }


def fit_model(cfg: TrainConfig, data_cfg: DataConfig, synthetic: list, real: list,
              progress: Callable[[str], None] = lambda m: None) -> tuple[dict, dict]:
    """Fit the trees and choose the operating point: (the model's spec, the chosen point's scores)."""
    events = synthetic + real
    weights = [1.0] * len(synthetic) + [cfg.real_weight] * len(real)
    progress(f"{len(events)} pauses ({len(real)} real; {sum(e.done for e in events)} turn ends, "
             f"{sum(not e.done for e in events)} holds); fitting {cfg.folds} out-of-fold models for the threshold ...")
    grid, curves = out_of_fold_curves(events, cfg.groups, cfg.gbm, cfg.folds, data_cfg.seed, weights)
    threshold, fallback, table = choose_threshold(grid, curves, events, cfg.target_cutoff)
    trees = fit_trees(events, cfg.groups, cfg.gbm, weights)
    chosen = next(r for r in table if r["threshold"] == threshold and r["max_silence_s"] == fallback)
    summary = {
        "data": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(data_cfg).items() if k != "shared_dir"},
        "gbm": asdict(cfg.gbm),
        "pauses": len(events), "turn_ends": sum(e.done for e in events), "holds": sum(not e.done for e in events),
        "target_cutoff": cfg.target_cutoff,
        "vap_holdout": list(cfg.vap_holdout),
        "synthetic": bool(synthetic),
        "real_weight": (cfg.real_weight if synthetic else 1.0) if real else 0.0,
        "real_pauses": len(real),
        "conversations": sorted({p.source for p in real if p.set == "conversations"}),
        "monologue_clips": sorted({p.source for p in real if p.set == "monologue"}),
        "out_of_fold": {"false_cutoffs": round(chosen["false_cutoffs"], 4),
                        "mean_delay_s": round(chosen["mean_delay_s"], 4)},
    }
    return model_spec(trees, threshold, fallback, cfg, summary), chosen


def _write(spec: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(json.dumps(spec, separators=(",", ":")))
    tmp.replace(out)


def train(cfg: TrainConfig = TrainConfig(), out: str | Path = DEFAULT_MODEL, cache_dir: str | Path = DEFAULT_CACHE,
          progress: Callable[[str], None] = lambda m: None, leave_one_out: str | Path | None = None) -> dict:
    """Train and write the model to ``out``. ``leave_one_out``: also write, into that folder, one model
    per real recording trained without it (monologue clips: per fold) and ``index.json`` (recording ->
    model file), for ``fullduplex bench run --turn-models``: each real scenario then meets a model that
    never heard its recording."""
    from .real import fold_of, without
    t0 = time.time()
    cache_dir = Path(cache_dir)
    data_cfg = cfg.data
    if "smart_turn" in cfg.groups and not data_cfg.smart_turn:
        data_cfg = replace(data_cfg, smart_turn=True)
    if "llm" in cfg.groups and not data_cfg.llm:
        data_cfg = replace(data_cfg, llm=True)
    if not (cfg.synthetic or cfg.real):
        raise UserError("nothing to learn from: use real recordings, synthetic speech or both")
    if leave_one_out and not cfg.real:
        raise UserError("leaving each recording out needs real recordings to learn from")
    synthetic = []
    if cfg.synthetic:
        data = build_clips(data_cfg, cache_dir, progress)
        compute_signals(data, data_cfg, cache_dir, progress)
        synthetic = training_events(data.events, cfg.vap_holdout)
    real = real_training_pauses(cfg, cache_dir, progress) if cfg.real else []
    spec, chosen = fit_model(cfg, data_cfg, synthetic, real, progress)
    out = Path(out)
    _write(spec, out)
    progress(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB): threshold {spec['threshold']:.2f}, fallback "
             f"{spec['max_silence_s']:.1f} s; out-of-fold false cut-offs {chosen['false_cutoffs']:.1%}, mean delay "
             f"{chosen['mean_delay_s']:.2f} s on the training data; {time.time() - t0:.0f} s")
    if leave_one_out:
        folder, index = Path(leave_one_out), {}
        folds = sorted({fold_of(p) for p in real})
        for k, held in enumerate(folds):
            held_spec, _ = fit_model(cfg, data_cfg, synthetic, without(real, held))
            held_spec["training"]["left_out"] = sorted({p.source for p in real if fold_of(p) == held})
            _write(held_spec, folder / f"{held}.json")
            index.update({name: f"{held}.json" for name in held_spec["training"]["left_out"]})
            progress(f"leave one out: {k + 1}/{len(folds)}: {folder / (held + '.json')} (without {held})")
        _write(index, folder / "index.json")
    return spec
