"""One pool of loaded Moshi models per process, per (source, device, dtype, sampling).

A streaming session owns a model while it runs (Moshi keeps its streaming state inside its modules);
the next session with the same settings reuses it instead of loading the weights again.
"""

from __future__ import annotations

import threading

from ...config import MoshiConfig
from ...errors import UserError
from .load import MoshiModel, load_moshi, resolve_device, resolve_dtype, sampling_params, source_name

_pool: dict[tuple, list[MoshiModel]] = {}
_failed: dict[tuple, UserError] = {}   # a checkpoint that failed to load fails at once next time (bench: per scenario)
_pool_lock = threading.Lock()


def _key(cfg: MoshiConfig) -> tuple:
    device = resolve_device(cfg.device)
    return (source_name(cfg), str(device), str(resolve_dtype(cfg.dtype, device)), tuple(sampling_params(cfg).items()))


def acquire(cfg: MoshiConfig) -> MoshiModel:
    """A loaded model for one streaming session: a free pooled one, else a new one (loaded now)."""
    key = _key(cfg)
    with _pool_lock:
        for model in _pool.get(key, []):
            if not model.in_use:
                model.in_use = True
                return model
        if key in _failed:
            raise _failed[key]
    try:
        model = load_moshi(cfg)
    except UserError as e:
        with _pool_lock:
            _failed[key] = e
        raise
    model.in_use = True
    with _pool_lock:
        _pool.setdefault(model.key, []).append(model)
    return model


def release(model: MoshiModel) -> None:
    with _pool_lock:
        model.in_use = False


def adopt(model: MoshiModel, cfg: MoshiConfig) -> None:
    """Put a model loaded elsewhere (a benchmark's random full-size one) in the pool, free, as the model
    for ``cfg``: the next ``acquire(cfg)`` takes it instead of loading."""
    model.in_use = False
    key = _key(cfg)
    with _pool_lock:
        _pool.setdefault(key, []).append(model)
