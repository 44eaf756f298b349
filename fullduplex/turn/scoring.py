"""Scores of a turn detector on labelled pauses, and how sure we can be of them.

A detector is reduced to one number per pause: its fire time (the silence after which it says
"done", assuming the silence went on). From those:
- false cut-offs: holds where it fired before the speaker went on;
- shifts detected: shifts where it fired within ``window_s``;
- balanced accuracy: the mean of (shifts detected) and (1 - false cut-offs);
- mean delay: mean fire time over the shifts (fallbacks included);
- separation: P(it fires earlier on a random shift than on a random hold), an AUC: 0.5 for any
  fixed silence threshold, whatever the threshold. This is the one number that says whether a
  detector knows anything about turn ends beyond how long the silence has lasted.

The real sets are small (tens of pauses), so each score comes with a stratified bootstrap interval:
shifts and holds resampled separately, with replacement.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_N = 2000
CI = 0.90


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties half."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg)))


def _scores(fire_shift: np.ndarray, fire_hold: np.ndarray, gap_hold: np.ndarray, window_s: float) -> dict:
    fco = float(np.mean(fire_hold < gap_hold - 1e-9)) if len(fire_hold) else float("nan")
    tpr = float(np.mean(fire_shift <= window_s + 1e-9)) if len(fire_shift) else float("nan")
    return {
        "balanced_accuracy": (tpr + 1 - fco) / 2 if len(fire_hold) and len(fire_shift) else float("nan"),
        "false_cutoffs": fco, "cutoffs_n": int(np.sum(fire_hold < gap_hold - 1e-9)), "holds": len(fire_hold),
        "shift_detected": tpr, "shifts": len(fire_shift),
        "mean_delay_s": float(np.mean(fire_shift)) if len(fire_shift) else float("nan"),
        "separation": auc(-fire_shift, -fire_hold),
    }


def _split(fire: np.ndarray, pauses) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    done = np.array([p.done for p in pauses], bool)
    gaps = np.array([p.gap_s for p in pauses], float)
    fire = np.asarray(fire, float)
    return fire[done], fire[~done], gaps[~done]


def score(fire: np.ndarray, pauses, window_s: float) -> dict:
    return _scores(*_split(fire, pauses), window_s)


def score_with_ci(fire: np.ndarray, pauses, window_s: float, n: int = BOOTSTRAP_N, seed: int = 0) -> dict:
    """``score`` plus ``ci``: {metric: (low, high)} at the ``CI`` level, from a stratified bootstrap."""
    shift, hold, gap = _split(fire, pauses)
    out = _scores(shift, hold, gap, window_s)
    rng = np.random.default_rng(seed)
    draws = {k: [] for k in ("balanced_accuracy", "false_cutoffs", "mean_delay_s", "separation")}
    for _ in range(n):
        si = rng.integers(0, len(shift), len(shift)) if len(shift) else np.zeros(0, int)
        hi = rng.integers(0, len(hold), len(hold)) if len(hold) else np.zeros(0, int)
        s = _scores(shift[si], hold[hi], gap[hi], window_s)
        for k in draws:
            draws[k].append(s[k])
    lo, hi = (1 - CI) / 2, 1 - (1 - CI) / 2
    out["ci"] = {k: (None if np.all(np.isnan(v)) else tuple(float(x) for x in np.nanquantile(v, [lo, hi])))
                 for k, v in draws.items()}
    return out


# ----------------------------------------------------------------------------------------------------
# A detector's trade-off, the way LiveKit's eot-bench reports it: sweep its setting (a silence, a
# threshold, the floor rule's waits), then read false cut-offs at a fixed delay and delay at a fixed
# rate of false cut-offs. Read on the scored pauses themselves, like an ROC curve: it describes the
# detector's curve, it does not pick a setting.

DELAYS_S = (0.3, 0.5, 0.8)
CUTOFF_RATES = (0.05, 0.10)


def operating_points(fires: list[np.ndarray], pauses) -> list[tuple[float, float]]:
    """(false cut-offs, mean delay over the shifts) for each setting's fire times."""
    out = []
    for fire in fires:
        shift, hold, gap = _split(fire, pauses)
        out.append((float(np.mean(hold < gap - 1e-9)) if len(hold) else float("nan"),
                    float(np.mean(shift)) if len(shift) else float("nan")))
    return out


def tradeoff(fires: list[np.ndarray], pauses) -> dict:
    """False cut-offs at each of ``DELAYS_S`` (the fewest among settings no slower on average) and the
    mean delay at each of ``CUTOFF_RATES`` (the shortest among settings cutting off no more often);
    None where no setting reaches it."""
    points = operating_points(fires, pauses)
    at_delay = {d: min((f for f, dl in points if dl <= d + 1e-9), default=None) for d in DELAYS_S}
    at_rate = {c: min((dl for f, dl in points if f <= c + 1e-9), default=None) for c in CUTOFF_RATES}
    return {"cutoffs_at_delay": {str(d): v for d, v in at_delay.items()},
            "delay_at_cutoffs": {str(c): v for c, v in at_rate.items()}}
