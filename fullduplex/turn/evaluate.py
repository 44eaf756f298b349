"""`fullduplex turn eval`: turn detectors on real speech the model never saw, and on the VAP pairs.

Pause sets
- conversations: every pause >= 200 ms between Silero VAD speech segments of the real recordings in
  ``conversations/`` whose speakers the RTTM labels name on both sides: the same speaker goes on
  (hold) or the other one takes the turn (shift).
- vap: the VAP phrase pairs: the short phrase's end is a shift; the long phrase cut where the short
  one ends, followed by a pause (drawn per clip from the training distribution, seeded, or a fixed
  ``hold_pause_s``), is a hold. Our model is scored by cross-validation
  over phrase groups (a model trained without that phrase's clips).
- monologue (holds only): pauses >= 200 ms inside the single-speaker clips of ``asr/`` (Silero VAD)
  and ``vad/ten-vad-testset`` (hand labels): the speaker always goes on.

Each detector gets the audio up to now and says "done" at some silence duration (its fire time):
- silence T: fires at T.
- Smart Turn v3.2 as Pipecat runs it: once, at 0.2 s of silence; done if P > 0.5 (answer ready
  after its compute time), else the 3 s fallback.
- ours (threshold): P(done) on a 20 ms grid from 0.2 s (Smart Turn's answer joins once it is
  computed); done at the model's training threshold, or the 2 s fallback.
- the agent's floor rule: the same P(done) curve replayed through ``turn/floor.py`` — the schedule and
  the rule (silence >= 0.2 s + 1.6 s * (1 - P)^2) the duplex and predictive conversations run live, so
  this row is when the agent would take the floor (with instant models; ``tests/test_floor_replay.py``
  checks that the live conversation decides the same on every dev pause).

Scores (``scoring.py``): false cut-offs, shifts detected within ``window_s`` (1 s), balanced accuracy,
mean delay over the shifts (compute time and fallbacks included), and separation (does it fire
earlier on shifts than on holds; 0.5 for any silence threshold), each with a 90 % bootstrap interval.
"""

from __future__ import annotations

import hashlib
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
from ..config import DuplexConfig
from .dataset import DataConfig, default_shared_dir
from .event_signals import compute_signals
from .floor import FloorRule
from .features import SMART_TURN_AT_S, pause_signals
from .gbm import Trees
from .labels import Pause, conversation_pauses, read_audio, vad_segments
from .scoring import auc, score, score_with_ci
from .train import (DEFAULT_CACHE, MAX_SILENCE_S, TrainConfig, choose_threshold, fire_times, fit_trees,
                    out_of_fold_curves, probability_curves, training_events)
from .vap import render_vap, vap_rows

SR = SAMPLE_RATE
SILENCE_THRESHOLDS = (0.3, 0.5, 0.7, 1.0)
SMART_TURN_FALLBACK_S = 3.0
EVAL_VERSION = 1


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


def monologue_pauses(shared: Path, min_pause_s: float = 0.2) -> tuple[list[Pause], dict[str, np.ndarray]]:
    pauses, audio = [], {}
    for wav in sorted((shared / "asr").glob("*.wav")):
        a = read_audio(wav)
        audio[wav.stem] = a
        segs = vad_segments(a)
        for k in range(len(segs) - 1):
            gap = segs[k + 1][0] - segs[k][1]
            if gap >= min_pause_s:
                pauses.append(Pause("monologue", wav.stem, segs[k][1], gap, False, max(segs[0][0], segs[k][1] - 8), wav.stem))
    for scv in sorted((shared / "vad" / "ten-vad-testset").glob("*.scv")):
        wav = scv.with_suffix(".wav")
        if not wav.exists():
            continue
        fields = scv.read_text().strip().split(",")[1:]
        spans = [(float(fields[i]), float(fields[i + 1])) for i in range(0, len(fields) - 2, 3) if fields[i + 2] == "1"]
        a = read_audio(wav)
        audio[wav.stem] = a
        for k in range(len(spans) - 1):
            gap = spans[k + 1][0] - spans[k][1]
            if gap >= min_pause_s and spans[k][1] - spans[k][0] > 0.3:
                pauses.append(Pause("monologue", wav.stem, spans[k][1], gap, False, max(spans[0][0], spans[k][1] - 8), wav.stem))
    return pauses, audio


# ----------------------------------------------------------------------------------------------------
# Signals for the evaluation pauses (cached: Moonshine and Smart Turn are the slow part)

def _until(audio: np.ndarray, t: float) -> np.ndarray:
    return audio[:int(round(t * SR))]


def eval_signals(pauses: list[Pause], audio: dict[str, np.ndarray], cache: Path, llm: bool,
                 progress: Callable[[str], None]) -> dict:
    """Fill ``p.signals``; return the measured per-call costs (ms)."""
    key = hashlib.sha1(json.dumps([EVAL_VERSION, llm, SMART_TURN_AT_S] +
                                  [[p.set, p.source, round(p.end_s, 4), round(p.turn_start_s, 4)] for p in pauses]
                                  ).encode()).hexdigest()[:10]
    path = cache / f"eval-signals-{key}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        for p, s in zip(pauses, saved["signals"]):
            p.signals = {k: (float("nan") if v is None else v) for k, v in s.items()}
        return saved["costs"]
    from ..config import SttConfig
    from ..models.stt import load_stt
    from ..models.smart_turn import SmartTurn
    from .signals import prosody
    stt = load_stt(SttConfig())
    smart = SmartTurn()
    lm = None
    if llm:
        from ..models.llm_eou import LlmEndOfUtterance
        lm = LlmEndOfUtterance()
    costs = {"smart_turn_ms": [], "prosody_ms": [], "stt_ms": [], "llm_ms": []}
    t0 = time.time()
    for i, p in enumerate(pauses):
        a = audio[p.source]
        until_end = _until(a, p.end_s)
        t = time.perf_counter()
        transcript = stt.transcribe(until_end[int(max(p.turn_start_s - 0.1, 0) * SR):]).text
        costs["stt_ms"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        st = smart.probability(_until(a, p.end_s + SMART_TURN_AT_S))
        costs["smart_turn_ms"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        prosody(until_end)
        costs["prosody_ms"].append((time.perf_counter() - t) * 1000)
        lp = float("nan")
        if lm is not None:
            t = time.perf_counter()
            lp = lm.probability(transcript)
            costs["llm_ms"].append((time.perf_counter() - t) * 1000)
        p.signals = pause_signals(until_end, transcript, st, lp)
        p.signals["transcript"] = transcript
        if (i + 1) % 50 == 0:
            progress(f"signals for {i + 1}/{len(pauses)} evaluation pauses ({time.time() - t0:.0f} s)")
    summary = {k: (float(np.median(v)) if v else None) for k, v in costs.items()}
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"costs": summary, "signals": [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in p.signals.items()} for p in pauses]}))
    return summary


# ----------------------------------------------------------------------------------------------------
# Detectors and scores

def smart_turn_fire(pauses: list[Pause], latency_s: float) -> np.ndarray:
    return np.array([SMART_TURN_AT_S + latency_s if p.signals["smart_turn"] > 0.5 else SMART_TURN_FALLBACK_S
                     for p in pauses])


def model_fire(trees: Trees, threshold: float, pauses: list[Pause], latency_s: float,
               max_silence_s: float = MAX_SILENCE_S) -> np.ndarray:
    grid, curves = probability_curves(trees, pauses, latency_s=latency_s)
    return fire_times(curves, grid, threshold, max_silence_s)


def floor_rule_fire(grid: np.ndarray, curves: np.ndarray, rule: FloorRule | None = None) -> np.ndarray:
    """When the agent's floor rule takes the floor in each pause, given its P(done)-by-silence curve."""
    rule = rule or FloorRule(DuplexConfig())
    return np.array([rule.replay(lambda s, c=curve: float(np.interp(s, grid, c))) for curve in curves])


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


def vap_cross_validated(trees_for: Callable[[tuple[str, ...]], Trees], threshold: float, pauses: list[Pause],
                        latency_s: float, holdout: tuple[str, ...], max_silence_s: float = MAX_SILENCE_S) -> np.ndarray:
    grid, curves = vap_cross_validated_curves(trees_for, pauses, latency_s, holdout)
    return fire_times(curves, grid, threshold, max_silence_s)


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


ABLATIONS = (
    ("all: silence+prosody+text+smart turn", ("silence", "prosody", "text", "smart_turn")),
    ("- smart turn (fast model)", ("silence", "prosody", "text")),
    ("- prosody", ("silence", "text", "smart_turn")),
    ("- text", ("silence", "prosody", "smart_turn")),
    ("silence + smart turn", ("silence", "smart_turn")),
    ("silence + prosody", ("silence", "prosody")),
    ("silence + text", ("silence", "text")),
)


def run_eval(cfg: EvalConfig, progress: Callable[[str], None] = lambda m: None) -> dict:
    from .model import TurnPredictor

    shared = Path(cfg.shared_dir) if cfg.shared_dir else default_shared_dir()
    conversations = Path(cfg.conversations) if cfg.conversations else shared / "conversations"
    if not cfg.conversations and not conversations.is_dir():
        raise UserError(f"no conversations at {conversations}; pass --data with the shared data folder")
    cache = Path(cfg.cache_dir)
    predictor = TurnPredictor.load(cfg.model)
    spec = predictor.spec
    sets: dict[str, list[Pause]] = {}
    audio: dict[str, np.ndarray] = {}
    for name, loader in (("conversations", lambda: conversation_pauses(conversations)),
                         ("vap", lambda: vap_pauses(shared, cfg.hold_pause_s)),
                         ("monologue", lambda: monologue_pauses(shared))):
        ps, au = loader()
        sets[name] = ps
        audio.update(au)
    sets["conversations"], left_out = split_seen(sets["conversations"], spec)
    if left_out:
        progress(f"left out the conversations the model was trained on: {', '.join(left_out)}")
    every = [p for ps in sets.values() for p in ps]
    progress(f"{len(sets['conversations'])} conversation pauses "
             f"({sum(p.done for p in sets['conversations'])} shifts), {len(sets['vap'])} VAP clips, "
             f"{len(sets['monologue'])} monologue holds; computing signals ...")
    costs = eval_signals(every, audio, cache, cfg.llm, progress)
    st_latency = costs["smart_turn_ms"] / 1000
    costs["predict_ms"] = _time_predictor(predictor, sets["conversations"], audio)

    # Training data, for the cross-validated VAP numbers and the ablation.
    tcfg = TrainConfig(data=DataConfig(**{k: (tuple(v) if isinstance(v, list) else v)
                                          for k, v in spec["training"]["data"].items()}),
                       groups=tuple(spec["groups"]))
    from .gbm import GbmParams
    holdout = tuple(spec["training"].get("vap_holdout", ()))
    tcfg = replace(tcfg, gbm=GbmParams(**spec["training"]["gbm"]), vap_holdout=holdout)
    train_data = build_clips(tcfg.data, cache, progress)
    compute_signals(train_data, replace(tcfg.data, llm=True) if cfg.llm else tcfg.data, cache, progress)
    train_events = train_data.events

    def trainer(groups, shipped=None):
        def fit_without(held):
            if shipped is not None and set(held) == set(holdout):
                return shipped          # the shipped model never saw these phrase groups
            skip = set(held) | set(holdout)
            return fit_trees([e for e in train_events if not (e.source == "vap" and e.group in skip)], groups, tcfg.gbm)
        return fit_without

    results = {"sets": {}, "costs": costs, "model": predictor.describe(), "window_s": cfg.window_s, "left_out": left_out,
               "conversations": str(conversations),
               "hold_pause_s": cfg.hold_pause_s, "smart_turn_latency_s": st_latency}
    for set_name, ps in sets.items():
        rows = {}
        for t in SILENCE_THRESHOLDS:
            rows[f"silence {int(t * 1000)} ms"] = score_with_ci(np.full(len(ps), t), ps, cfg.window_s)
        rows["Smart Turn v3.2 (Pipecat: 0.2 s, else 3 s)"] = score_with_ci(smart_turn_fire(ps, st_latency), ps,
                                                                          cfg.window_s)
        if set_name == "vap":
            grid, curves = vap_cross_validated_curves(trainer(tuple(spec["groups"]), predictor.trees), ps,
                                                      st_latency, holdout)
            label = f"ours v{predictor.version} (cross-validated by phrase)"
        else:
            grid, curves = probability_curves(predictor.trees, ps, latency_s=st_latency)
            label = f"ours v{predictor.version}"
        rows[f"{label}, threshold {predictor.threshold:.2f}"] = score_with_ci(
            fire_times(curves, grid, predictor.threshold, predictor.max_silence_s), ps, cfg.window_s)
        rows[f"{label}, the agent's floor rule"] = score_with_ci(floor_rule_fire(grid, curves), ps, cfg.window_s)
        results["sets"][set_name] = rows
    held_vap = [p for p in sets["vap"] if p.group in holdout]
    results["vap_heldout_auc"] = vap_separation(predictor.trees, held_vap, latency_s=st_latency) if held_vap else None
    real = sets["conversations"] + sets["monologue"]
    results["tradeoff"] = _tradeoff(predictor, real, probability_curves(predictor.trees, real, latency_s=st_latency),
                                    cfg.window_s)
    results["tradeoff_vap"] = _tradeoff(predictor, sets["vap"], vap_cross_validated_curves(
        trainer(tuple(spec["groups"]), predictor.trees), sets["vap"], st_latency, holdout), cfg.window_s)
    if cfg.ablation:
        results["ablation"] = _ablation(training_events(train_events, holdout), tcfg, sets, st_latency, cfg,
                                        trainer, holdout, progress)
    return results


def split_seen(pauses: list[Pause], spec: dict) -> tuple[list[Pause], list[str]]:
    """Drop the pauses of conversations the model was trained on (``turn train --conversations``)."""
    seen = set(spec.get("training", {}).get("conversations", []))
    return [p for p in pauses if p.source not in seen], sorted(seen & {p.source for p in pauses})


def _time_predictor(predictor, pauses: list[Pause], audio: dict[str, np.ndarray]) -> dict:
    """Per-decision cost of TurnPredictor.predict on the real pauses: first call of a pause (signals),
    later calls (cached), and Smart Turn's one call."""
    first, later, smart = [], [], []
    for p in pauses[:20]:
        a = audio[p.source]
        predictor.reset()
        for k, silence in enumerate((0.1, 0.2, 0.22, 0.24, 0.3)):
            tail = _until(a, p.end_s + silence)[-int(10 * SR):]
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


def _tradeoff(predictor, pauses: list[Pause], grid_curves, window_s: float) -> dict:
    """Ours over thresholds (its own fallback) vs silence over durations."""
    grid, curves = grid_curves
    ours = []
    for thr in np.round(np.arange(0.05, 0.96, 0.05), 2):
        s = score(fire_times(curves, grid, thr, predictor.max_silence_s), pauses, window_s)
        ours.append({"threshold": float(thr), "false_cutoffs": s["false_cutoffs"], "mean_delay_s": s["mean_delay_s"]})
    silence = []
    for t in np.round(np.arange(0.2, 2.01, 0.1), 2):
        s = score(np.full(len(pauses), t), pauses, window_s)
        silence.append({"silence_s": float(t), "false_cutoffs": s["false_cutoffs"], "mean_delay_s": s["mean_delay_s"]})
    return {"ours": ours, "silence": silence}


def _ablation(train_events, tcfg: TrainConfig, sets, latency_s: float, cfg: EvalConfig, trainer, holdout,
              progress) -> list[dict]:
    variants = list(ABLATIONS)
    if cfg.llm:
        variants += [("+ LLM end-of-utterance", ("silence", "prosody", "text", "smart_turn", "llm")),
                     ("silence + LLM", ("silence", "llm"))]
    out = []
    for label, groups in variants:
        progress(f"ablation: {label} ...")
        grid, curves = out_of_fold_curves(train_events, groups, tcfg.gbm, tcfg.folds, tcfg.data.seed)
        threshold, fallback, _ = choose_threshold(grid, curves, train_events, tcfg.target_cutoff)
        trees = fit_trees(train_events, groups, tcfg.gbm)
        lat = latency_s if "smart_turn" in groups else 0.0
        row = {"variant": label, "groups": list(groups), "threshold": threshold, "max_silence_s": fallback}
        for set_name, ps in sets.items():
            if set_name == "vap":
                fire = vap_cross_validated(trainer(groups, trees), threshold, ps, lat, holdout, fallback)
            else:
                fire = model_fire(trees, threshold, ps, lat, fallback)
            row[set_name] = score(fire, ps, cfg.window_s)
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
             f"A shift counts as detected when the detector fires within {results['window_s']:.1f} s; "
             "VAP holds are the long phrase cut at the short phrase's end plus a pause "
             + ("drawn per clip (log-normal, median 0.55 s, seeded)." if results["hold_pause_s"] is None
                else f"of {results['hold_pause_s']:.1f} s."), ""]
    if results.get("left_out"):
        lines += [f"Left out (the model was trained on them): {', '.join(results['left_out'])}.", ""]
    titles = {"conversations": f"Real conversations in {results.get('conversations', 'conversations/')} "
                               "(pauses >= 200 ms; RTTM speakers)",
              "vap": "VAP phrase pairs (short = turn ends, long = turn continues)",
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
        lines += ["", "### Ablation (each variant retrained on the same data; threshold chosen the same way)", "",
                  "| variant | conversations: BA / cut-offs / delay / separation | VAP (cross-validated): BA / cut-offs "
                  "/ delay / separation | monologue cut-offs |", "|---|---|---|---|"]
        for r in results["ablation"]:
            cells = []
            for set_name in ("conversations", "vap"):
                s = r[set_name]
                cells.append(f"{_pct(s['balanced_accuracy'])} / {_pct(s['false_cutoffs'])} / {s['mean_delay_s']:.2f} s"
                             f" / {_num(s['separation'])}")
            lines.append(f"| {r['variant']} (P >= {r['threshold']:.2f}, fallback {r['max_silence_s']:.1f} s) | {cells[0]} | {cells[1]} | "
                         f"{_pct(r['monologue']['false_cutoffs'])} |")
    for key, title in (("tradeoff", "real pauses (conversation shifts and holds + monologue holds)"),
                       ("tradeoff_vap", "VAP pairs (ours cross-validated by phrase)")):
        t = results.get(key)
        if not t:
            continue
        lines += ["", f"### Trade-off on the {title}: ours over its threshold vs a silence threshold", "",
                  "| ours: P >= | false cut-offs | mean delay (s) | | silence (s) | false cut-offs | mean delay (s) |",
                  "|---|---|---|---|---|---|---|"]
        for a, b in zip(t["ours"], t["silence"][:len(t["ours"])]):
            lines.append(f"| {a['threshold']:.2f} | {_pct(a['false_cutoffs'])} | {a['mean_delay_s']:.2f} | | "
                         f"{b['silence_s']:.1f} | {_pct(b['false_cutoffs'])} | {b['mean_delay_s']:.2f} |")
    return "\n".join(lines)


def write_report(results: dict, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def clean(o):
        if isinstance(o, float) and math.isnan(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    (out / "report.json").write_text(json.dumps(clean(results), indent=1))
    (out / "report.md").write_text(format_report(results) + "\n")
    return out / "report.md"
