"""One ``MoshiBatch`` per process and per (source, device, dtype, sampling, slots, seed): the model is
loaded once and every conversation with those settings takes a slot of the same batch.
"""

from __future__ import annotations

import threading

from ...config import MoshiConfig
from ...errors import UserError
from .batch import MoshiBatch, auto_slots
from .load import MoshiModel, load_moshi, resolve_device, resolve_dtype, sampling_params, source_name

_batches: dict[tuple, MoshiBatch] = {}
_adopted: dict[tuple, MoshiModel] = {}
_failed: dict[tuple, UserError] = {}   # a checkpoint that failed to load fails at once next time (bench: per scenario)
_lock = threading.Lock()               # held while loading: concurrent first calls (bench jobs) load once


def _key(cfg: MoshiConfig) -> tuple:
    device = resolve_device(cfg.device)
    return (source_name(cfg), str(device), str(resolve_dtype(cfg.dtype, device)), tuple(sampling_params(cfg).items()),
            cfg.slots, cfg.seed)


def batch_for(cfg: MoshiConfig) -> MoshiBatch:
    """The batch every conversation with ``cfg``'s settings joins: loaded, warmed and stepping."""
    if cfg.slots < 0:
        raise UserError(f"--moshi-slots must be 0 (automatic) or more, not {cfg.slots}")
    key = _key(cfg)
    with _lock:
        if key in _batches:
            return _batches[key]
        if key in _failed:
            raise _failed[key]
        try:
            model = _adopted.pop(key, None) or load_moshi(cfg)
        except UserError as e:
            _failed[key] = e
            raise
        slots = cfg.slots or auto_slots(model)
        batch = MoshiBatch(model, slots, sampling_params(cfg), seed=cfg.seed)
        _batches[key] = batch
        return batch


def adopt(model: MoshiModel, cfg: MoshiConfig) -> None:
    """Use a model loaded elsewhere (a benchmark's random full-size one) for ``cfg``: the next
    ``batch_for(cfg)`` streams on it instead of loading."""
    with _lock:
        _adopted[_key(cfg)] = model


def close_all() -> None:
    """Stop every batch's stepping thread and forget them (benchmarks between batch sizes, tests)."""
    with _lock:
        batches = list(_batches.values())
        _batches.clear()
    for batch in batches:
        batch.close()
