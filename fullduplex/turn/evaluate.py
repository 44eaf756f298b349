"""`fullduplex turn eval`: turn detectors on real speech, each scored on recordings it was not fitted on.

Pause sets
- conversations: every labelled pause >= 200 ms of the real recordings in ``conversations/``
  (``labels.py``: the other speaker takes the turn = shift; the speaker goes on = hold, or
  backchannel when a listener said "mm-hm" in between: a hold for these scores). Recordings that
  repeat another are left out, and so are pauses the RTTM cannot label honestly (counted).
- monologue (holds only): pauses inside real single-speaker clips (``real.py``).
- vap: the VAP phrase pairs (synthetic speech): the short phrase's end is a shift; the long phrase cut
  there plus a pause is a hold; our model is cross-validated over phrase groups.

Our model on the real sets is always *left one recording out* (``real.loro_curves``): each recording's
pauses get the P(done) curves of the committed model's recipe (its features, trees and real-pause
weight) retrained without that recording. Each detector says "done" at some silence (its fire time):
- silence T: fires at T.
- Smart Turn v3.2 as Pipecat runs it: once, at 0.2 s of silence; done if P > 0.5 (answer ready
  after its compute time), else the 3 s fallback.
- ours, threshold: P(done) on a 20 ms grid from 0.2 s; done at the model's threshold or its fallback.
- ours, the agent's floor rule: the same curve replayed through ``turn/floor.py`` (the schedule and
  the rule the duplex and predictive conversations run live) with ``DuplexConfig``'s waits; and with
  the waits chosen on the other recordings (``tuning.nested``: the honest score of fitted waits).

Scores (``scoring.py``): false cut-offs, shifts detected within ``window_s`` (1 s), balanced accuracy,
mean delay over the shifts (fallbacks included), and separation (does it fire earlier on shifts than on
holds; 0.5 for any silence threshold), each with a 90 % bootstrap interval; and each detector's
trade-off, the way LiveKit's eot-bench reports it: false cut-offs at 0.3 / 0.5 / 0.8 s of mean delay,
mean delay at 5 % and 10 % false cut-offs.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..audio.frames import SAMPLE_RATE
from ..errors import UserError
from .clips import build_clips
from .dataset import DataConfig, default_shared_dir
from .event_signals import compute_signals
from .features import SMART_TURN_AT_S
from .floor import FloorRule
from .gbm import GbmParams, Trees
from .labels import Pause
from .real import conversation_set, fold_of, loro_curves, monologue_pauses, pause_set_signals
from .scoring import auc, score, score_with_ci, tradeoff
from .train import (DEFAULT_CACHE, MAX_SILENCE_S, fire_times, fit_trees, probability_curves, training_events)
from .tuning import nested, replay, rule_fires
from .vap import render_vap, vap_rows

SR = SAMPLE_RATE
SILENCE_THRESHOLDS = (0.3, 0.5, 0.7, 1.0)
SMART_TURN_FALLBACK_S = 3.0


def vap_pauses(shared: Path, hold_pause_s: float | None, seed: int = 0) -> tuple[list[Pause], dict[str, np.ndarray]]:
    pauses, audio = [], {}
    cfg = DataConfig(seed=seed, augment=False)
    for j, row in enumerate(vap_rows(shared)):
        clip, events = render_vap(row, j, cfg, pause_s=hold_pause_s, augment_it=False)
        e = events[0]
        name = row["name"]
        audio[name] = clip
        gap = e.pause_s if not e.done else math.inf
        pauses.append(Pause("vap", name, e.end_s, gap, e.done, e.turn_start_s, row["phrase"]))
    return pauses, audio


# ----------------------------------------------------------------------------------------------------
# Detectors and scores

def smart_turn_fire(pauses: list[Pause], latency_s: float) -> np.ndarray:
    return np.array([SMART_TURN_AT_S + latency_s if p.signals["smart_turn"] > 0.5 else SMART_TURN_FALLBACK_S
                     for p in pauses])


def vap_folds(pauses: list[Pause], holdout: tuple[str, ...], folds: int = 3) -> list[tuple[str, ...]]:
    """Phrase-group folds: the groups the shipped model never saw first, the others split in turn."""
    rest = [g for g in sorted({p.group for p in pauses}) if g not in holdout]
    out = [tuple(holdout)] if holdout else []
    k = folds - len(out)
    out += [tuple(rest[i::k]) for i in range(k)]
    return [f for f in out if f]


def vap_cross_validated_curves(trees_for: Callable[[tuple[str, ...]], Trees], pauses: list[Pause], latency_s: float,
                               holdout: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """P(done) curves on the VAP pauses, each from a model trained without the pause's phrase group."""
    curves, grid = None, None
    for held in vap_folds(pauses, holdout):
        idx = [i for i, p in enumerate(pauses) if p.group in held]
        grid, c = probability_curves(trees_for(held), [pauses[i] for i in idx], latency_s=latency_s)
        if curves is None:
            curves = np.zeros((len(pauses), len(grid)))
        curves[idx] = c
    return grid, curves


def vap_separation(trees: Trees, pauses: list[Pause], at_s: float = 0.3, latency_s: float = 0.06) -> float:
    from .features import vector
    p = trees.predict(np.array([vector(x.signals, at_s, trees.features, latency_s) for x in pauses]))
    done = np.array([x.done for x in pauses])
    return auc(p[done], p[~done])


# ----------------------------------------------------------------------------------------------------
# The whole evaluation

@dataclass
class EvalConfig:
    model: str | None = None
    shared_dir: str | None = None
    cache_dir: str = str(DEFAULT_CACHE)
    window_s: float = 1.0
    hold_pause_s: float | None = None   # None: each long phrase gets a pause drawn as in training (median 0.55 s)
    ablation: bool = False
    llm: bool = False
    conversations: str | None = None     # labelled conversations to score on instead of the shared ones


ALL = ("silence", "prosody", "text", "smart_turn")
# (label, feature groups, training data: "real" | "synthetic" | a real pause's weight beside the synthetic ones)
ABLATIONS = (
    ("all signals", ALL, "real"),
    ("- smart turn (the fast model)", ("silence", "prosody", "text"), "real"),
    ("- prosody", ("silence", "text", "smart_turn"), "real"),
    ("- text", ("silence", "prosody", "smart_turn"), "real"),
    ("silence + smart turn", ("silence", "smart_turn"), "real"),
    ("silence + prosody", ("silence", "prosody"), "real"),
    ("silence + text", ("silence", "text"), "real"),
    ("all signals, synthetic pauses only", ALL, "synthetic"),
    ("all signals, synthetic + real (a real pause = 1)", ALL, 1.0),
    ("all signals, synthetic + real (a real pause = 3)", ALL, 3.0),
    ("all signals, synthetic + real (a real pause = 10)", ALL, 10.0),
)


@dataclass
class Recipe:
    """How the committed model was trained: what ``loro_curves`` repeats without each recording."""
    groups: tuple[str, ...]
    gbm: GbmParams
    synthetic: bool               # learnt from the synthesised pauses
    real_weight: float            # a real pause's weight (0: no real pause)
    threshold: float = 0.5
    max_silence_s: float = MAX_SILENCE_S

    @classmethod
    def of(cls, spec: dict) -> "Recipe":
        t = spec["training"]
        return cls(tuple(spec["groups"]), GbmParams(**t["gbm"]), bool(t.get("synthetic", True)),
                   float(t.get("real_weight", 0.0)), float(spec["threshold"]), float(spec["max_silence_s"]))

    @property
    def label(self) -> str:
        if not self.real_weight:
            return "synthetic pauses only"
        return "real pauses only" if not self.synthetic else f"synthetic + real (a real pause = {self.real_weight:g})"


def recipe_curves(recipe: Recipe, synthetic: list, real: list[Pause], latency_s: float, trees: Trees | None = None,
                  progress: Callable[[str], None] = lambda m: None) -> tuple[np.ndarray, np.ndarray]:
    """Every real pause's P(done) curve from the recipe trained without its recording. A recipe without
    real pauses never saw any recording: one model (``trees``, if given, is that model) serves all."""
    if recipe.real_weight <= 0:
        trees = trees or fit_trees(synthetic, recipe.groups, recipe.gbm)
        return probability_curves(trees, real, latency_s=latency_s)
    return loro_curves(synthetic if recipe.synthetic else [], real, recipe.groups, recipe.gbm, recipe.real_weight,
                       latency_s, progress)


def run_eval(cfg: EvalConfig, progress: Callable[[str], None] = lambda m: None) -> dict:
    from .model import TurnPredictor

    shared = Path(cfg.shared_dir) if cfg.shared_dir else default_shared_dir()
    conversations = Path(cfg.conversations) if cfg.conversations else shared / "conversations"
    if not cfg.conversations and not conversations.is_dir():
        raise UserError(f"no conversations at {conversations}; pass --data with the shared data folder")
    cache = Path(cfg.cache_dir)
    predictor = TurnPredictor.load(cfg.model)
    spec = predictor.spec
    recipe = Recipe.of(spec)
    conv, mono = conversation_set(conversations), monologue_pauses(shared)
    vap, vap_audio = vap_pauses(shared, cfg.hold_pause_s)
    sets = {"conversations": conv.pauses, "vap": vap, "monologue": mono.pauses}
    progress(f"real conversation pauses: {conv.counts.describe()}; {len(mono.pauses)} monologue holds, "
             f"{len(vap)} VAP clips; computing signals ...")
    costs = pause_set_signals(conv.pauses, conv.audio, cache, cfg.llm, progress)
    for ps, au in ((mono.pauses, mono.audio), (vap, vap_audio)):
        pause_set_signals(ps, au, cache, cfg.llm, progress)
    st_latency = costs["smart_turn_ms"] / 1000
    costs["predict_ms"] = _time_predictor(predictor, conv.pauses, conv.audio)

    # The synthetic training data: for a recipe that learns from it, and for the ablation.
    holdout = tuple(spec["training"].get("vap_holdout", ()))
    train_events, synthetic = [], []
    if recipe.synthetic or cfg.ablation:
        known = DataConfig.__dataclass_fields__
        data = DataConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in spec["training"]["data"].items()
                             if k in known})
        train_data = build_clips(data, cache, progress)
        compute_signals(train_data, replace(data, llm=True) if cfg.llm else data, cache, progress)
        train_events = train_data.events
        synthetic = training_events(train_events, holdout)
    real = conv.pauses + mono.pauses
    grid, curves = recipe_curves(recipe, synthetic, real, st_latency, predictor.trees, progress)
    folds = [fold_of(p) for p in real]
    fires = rule_fires(grid, curves)
    nested_fire, chosen = nested(fires, real, folds)

    def vap_trainer(groups, shipped=None):
        def fit_without(held):
            if shipped is not None and (set(held) == set(holdout) and not recipe.real_weight or not recipe.synthetic):
                return shipped          # the shipped model never saw these phrase groups
            skip = set(held) | set(holdout)
            events = [e for e in train_events if not (e.source == "vap" and e.group in skip)]
            w = recipe.real_weight
            return fit_trees(events + (real if w else []), groups, recipe.gbm,
                             [1.0] * len(events) + ([w] * len(real) if w else []))
        return fit_without

    label = f"ours v{predictor.version}" + (" (left one recording out)" if recipe.real_weight > 0 else "")
    results = {"sets": {}, "costs": costs, "model": predictor.describe(), "window_s": cfg.window_s,
               "conversations": str(conversations), "counts": conv.counts.describe(),
               "recordings": sorted(conv.audio), "hold_pause_s": cfg.hold_pause_s, "smart_turn_latency_s": st_latency,
               "recipe": {"groups": list(recipe.groups), "real_weight": recipe.real_weight, "data": recipe.label},
               "nested_waits": {k: list(v) for k, v in chosen.items()}}
    for set_name, ps in sets.items():
        rows = {}
        for t in SILENCE_THRESHOLDS:
            rows[f"silence {int(t * 1000)} ms"] = score_with_ci(np.full(len(ps), t), ps, cfg.window_s)
        rows["Smart Turn v3.2 (Pipecat: 0.2 s, else 3 s)"] = score_with_ci(smart_turn_fire(ps, st_latency), ps,
                                                                          cfg.window_s)
        if set_name == "vap":
            g, c = vap_cross_validated_curves(vap_trainer(recipe.groups, predictor.trees), ps, st_latency, holdout)
            name = f"ours v{predictor.version}" + (" (cross-validated by phrase)" if recipe.synthetic else "")
            rows[f"{name}, threshold {recipe.threshold:.2f}"] = score_with_ci(
                fire_times(c, g, recipe.threshold, recipe.max_silence_s), ps, cfg.window_s)
            rows[f"{name}, the agent's floor rule"] = score_with_ci(replay(g, c, FloorRule()), ps, cfg.window_s)
        else:
            idx = [i for i, p in enumerate(real) if p.set == set_name]
            c = curves[idx]
            rows[f"{label}, threshold {recipe.threshold:.2f}"] = score_with_ci(
                fire_times(c, grid, recipe.threshold, recipe.max_silence_s), ps, cfg.window_s)
            rows[f"{label}, the agent's floor rule (DuplexConfig)"] = score_with_ci(
                replay(grid, c, FloorRule()), ps, cfg.window_s)
            rows[f"{label}, floor rule with waits chosen on the other recordings"] = score_with_ci(
                nested_fire[idx], ps, cfg.window_s)
        results["sets"][set_name] = rows
    idx = [i for i, p in enumerate(real) if p.set == "conversations"]
    results["tradeoff"] = _tradeoffs(conv.pauses, grid, curves[idx], fires[:, idx], st_latency)
    held_vap = [p for p in vap if p.group in holdout or not recipe.synthetic]
    results["vap_heldout_auc"] = (vap_separation(predictor.trees, held_vap, latency_s=st_latency)
                                  if held_vap and not (recipe.synthetic and recipe.real_weight) else None)
    if cfg.ablation:
        results["ablation"] = _ablation(synthetic, real, recipe, st_latency, cfg, progress)
    return results


def _time_predictor(predictor, pauses: list[Pause], audio: dict[str, np.ndarray]) -> dict:
    """Per-decision cost of TurnPredictor.predict on the real pauses: first call of a pause (signals),
    later calls (cached), and Smart Turn's one call."""
    first, later, smart = [], [], []
    for p in pauses[:20]:
        a = audio[p.source]
        predictor.reset()
        for k, silence in enumerate((0.1, 0.2, 0.22, 0.24, 0.3)):
            tail = a[:int(round((p.end_s + silence) * SR))][-int(10 * SR):]
            t = time.perf_counter()
            predictor.predict(tail, p.signals.get("transcript", ""), silence)
            dt = (time.perf_counter() - t) * 1000
            if k == 0:
                first.append(dt)
            elif silence == 0.2 and predictor.uses_smart_turn:
                smart.append(dt)
            else:
                later.append(dt)
    med = lambda v: float(np.median(v)) if v else None
    return {"first_call_ms": med(first), "cached_call_ms": med(later), "call_with_smart_turn_ms": med(smart)}


def _tradeoffs(pauses: list[Pause], grid: np.ndarray, curves: np.ndarray, rule_fires_: np.ndarray,
               st_latency: float) -> dict:
    """Each detector family over its setting: false cut-offs at fixed delays, delay at fixed cut-off rates."""
    n = len(pauses)
    st = np.array([p.signals["smart_turn"] for p in pauses])
    thresholds = np.round(np.arange(0.05, 0.96, 0.05), 2)
    families = {
        "silence (0.2-2 s)": [np.full(n, t) for t in np.round(np.arange(0.2, 2.01, 0.05), 2)],
        "Smart Turn v3.2 (threshold x fallback)": [np.where(st > thr, SMART_TURN_AT_S + st_latency, fb)
                                                   for thr in thresholds for fb in (1.0, 2.0, 3.0)],
        "ours, threshold x fallback": [fire_times(curves, grid, thr, fb) for thr in thresholds for fb in (1.0, 1.5, 2.0)],
        "ours, floor rule waits": list(rule_fires_),
    }
    return {name: tradeoff(fires, pauses) for name, fires in families.items()}


def _ablation(synthetic: list, real: list[Pause], recipe: Recipe, latency_s: float, cfg: EvalConfig,
              progress) -> list[dict]:
    """Each variant's recipe left one recording out, the floor rule's waits nested the same way."""
    variants = list(ABLATIONS)
    if cfg.llm:
        variants += [("+ LLM end-of-utterance", ALL + ("llm",), "real"), ("silence + LLM", ("silence", "llm"), "real")]
    folds = [fold_of(p) for p in real]
    conv = [i for i, p in enumerate(real) if p.set == "conversations"]
    mono = [i for i, p in enumerate(real) if p.set == "monologue"]
    out = []
    for label, groups, data in variants:
        progress(f"ablation: {label} ...")
        r = replace(recipe, groups=groups, synthetic=data != "real",
                    real_weight={"real": 1.0, "synthetic": 0.0}.get(data, data))
        lat = latency_s if "smart_turn" in groups else 0.0
        grid, curves = recipe_curves(r, synthetic, real, lat)
        fire, _ = nested(rule_fires(grid, curves), real, folds)
        at_03 = curves[conv, int(np.argmin(np.abs(grid - 0.3)))]
        cps = [real[i] for i in conv]
        row = {"variant": label, "groups": list(groups), "data": r.label,
               "conversations": score_with_ci(fire[conv], cps, cfg.window_s),
               "p_auc_at_0.3s": auc(at_03[[p.done for p in cps]], at_03[[not p.done for p in cps]]),
               "monologue": score(fire[mono], [real[i] for i in mono], cfg.window_s)}
        out.append(row)
    return out


# ----------------------------------------------------------------------------------------------------
# Report

def _pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f} %"


def _num(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _ci(interval, pct: bool = False) -> str:
    if not interval or interval[0] is None or math.isnan(interval[0]):
        return ""
    lo, hi = interval
    if abs(hi - lo) < 1e-9:
        return ""
    return f" [{100 * lo:.0f}, {100 * hi:.0f}]" if pct else f" [{lo:.2f}, {hi:.2f}]"


def format_report(results: dict) -> str:
    lines = [f"Model: {results['model']}",
             f"Our model on the real sets: the recipe above (features {', '.join(results['recipe']['groups'])}; "
             f"{results['recipe']['data']}) retrained without each recording in turn, so no recording is scored "
             "by a model or a setting fitted to it.",
             f"A shift counts as detected when the detector fires within {results['window_s']:.1f} s; "
             "VAP holds are the long phrase cut at the short phrase's end plus a pause "
             + ("drawn per clip (log-normal, median 0.55 s, seeded)." if results["hold_pause_s"] is None
                else f"of {results['hold_pause_s']:.1f} s."), "",
             f"Recordings: {', '.join(results['recordings'])}.", f"Pauses: {results['counts']}.", ""]
    titles = {"conversations": f"Real conversations in {results.get('conversations', 'conversations/')} "
                               "(pauses >= 200 ms; RTTM speakers; backchannels count as holds)",
              "vap": "VAP phrase pairs (synthetic speech; short = turn ends, long = turn continues)",
              "monologue": "Real monologue pauses (holds only)"}
    for set_name, rows in results["sets"].items():
        any_row = next(iter(rows.values()))
        lines.append(f"### {titles.get(set_name, set_name)}: {any_row['shifts']} shifts, {any_row['holds']} holds")
        lines.append("")
        lines.append("| detector | balanced accuracy | false cut-offs | shifts detected | mean delay (s) "
                     "| separation (AUC) |")
        lines.append("|---|---|---|---|---|---|")
        for name, s in rows.items():
            ci = s.get("ci", {})
            lines.append(f"| {name} | {_pct(s['balanced_accuracy'])}{_ci(ci.get('balanced_accuracy'), True)} "
                         f"| {_pct(s['false_cutoffs'])} ({s['cutoffs_n']}/{s['holds']}){_ci(ci.get('false_cutoffs'), True)} "
                         f"| {_pct(s['shift_detected'])} | {_num(s['mean_delay_s'])}{_ci(ci.get('mean_delay_s'))} "
                         f"| {_num(s['separation'])}{_ci(ci.get('separation'))} |")
        lines.append("")
        lines.append("[a, b]: 90 % bootstrap interval (shifts and holds resampled separately).")
        lines.append("")
    waits = results.get("nested_waits", {})
    if waits:
        lines.append("Waits chosen on the other recordings (min silence, max extra): " + "; ".join(
            f"{k} {v[0]:g}+{v[1]:g}" for k, v in sorted(waits.items())) + ".")
        lines.append("")
    if results.get("tradeoff"):
        lines += ["### Trade-off on the real conversations (each detector over its setting, as LiveKit's eot-bench "
                  "reports)", "", "| detector | false cut-offs at 0.3 / 0.5 / 0.8 s mean delay | mean delay at 5 % / 10 % "
                  "false cut-offs |", "|---|---|---|"]
        for name, t in results["tradeoff"].items():
            cut = " / ".join(_pct(v) for v in t["cutoffs_at_delay"].values())
            dl = " / ".join("—" if v is None else f"{v:.2f} s" for v in t["delay_at_cutoffs"].values())
            lines.append(f"| {name} | {cut} | {dl} |")
        lines += ["", "Read on the scored pauses themselves, like an ROC curve: it describes each detector's curve; "
                  "it does not choose a setting.", ""]
    if results.get("vap_heldout_auc") is not None:
        lines.append(f"VAP phrase groups the shipped model never saw: P(done) at 0.3 s of silence ranks a short phrase's "
                     f"end above a long phrase's cut point in {results['vap_heldout_auc']:.0%} of pairs (AUC; chance 50 %).")
        lines.append("")
    c = results["costs"]
    lines.append("Costs (median, this machine): Smart Turn {:.0f} ms a call; prosody {:.1f} ms; Moonshine transcript "
                 "{:.0f} ms; TurnPredictor.predict: first call of a pause {:.1f} ms, cached call {:.2f} ms, call "
                 "that runs Smart Turn {}.".format(
                     c["smart_turn_ms"], c["prosody_ms"], c["stt_ms"], c["predict_ms"]["first_call_ms"],
                     c["predict_ms"]["cached_call_ms"],
                     "—" if c["predict_ms"]["call_with_smart_turn_ms"] is None
                     else f"{c['predict_ms']['call_with_smart_turn_ms']:.0f} ms")
                 + (f" LLM end-of-utterance {c['llm_ms']:.0f} ms." if c.get("llm_ms") else ""))
    if "ablation" in results:
        lines += ["", "### Ablation: which signal and which data carry the real-speech result", "",
                  "Each variant retrained without each recording in turn; the floor rule's waits chosen on the other "
                  "recordings. Conversations: separation of the floor rule's fire times, its false cut-offs and mean "
                  "delay; P AUC: P(done) at 0.3 s of silence, shifts vs holds.", "",
                  "| variant | training data | separation | false cut-offs | mean delay (s) | P AUC at 0.3 s "
                  "| monologue cut-offs |", "|---|---|---|---|---|---|---|"]
        for r in results["ablation"]:
            s = r["conversations"]
            lines.append(f"| {r['variant']} | {r['data']} | {_num(s['separation'])}{_ci(s['ci'].get('separation'))} "
                         f"| {_pct(s['false_cutoffs'])} | {_num(s['mean_delay_s'])} | {_num(r['p_auc_at_0.3s'])} "
                         f"| {_pct(r['monologue']['false_cutoffs'])} |")
    return "\n".join(lines)


def write_report(results: dict, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def clean(o):
        if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    (out / "report.json").write_text(json.dumps(clean(results), indent=1))
    (out / "report.md").write_text(format_report(results) + "\n")
    return out / "report.md"
