"""Kyutai's Moshi: loading a checkpoint (``load.py``), many conversations batched on one loaded model
(``batch.py``), one batch per settings in the process (``pool.py``) and the tiny random checkpoint for
tests and CPU demos (``tiny.py``).

Importing this package imports neither torch nor moshi: they load with the first model.
"""

from .batch import Busy, FrameOut, MoshiBatch, Slot, StepFailed, auto_slots, per_slot_bytes, slots_for_memory
from .load import MoshiModel, load_moshi, random_full_size, reset_streaming, resolve_device
from .pool import adopt, batch_for, close_all
from .tiny import TINY_TEXT_VOCAB, make_tiny

__all__ = ["Busy", "FrameOut", "MoshiBatch", "MoshiModel", "Slot", "StepFailed", "adopt", "auto_slots", "batch_for",
           "close_all", "load_moshi", "per_slot_bytes", "random_full_size", "reset_streaming", "resolve_device",
           "slots_for_memory", "TINY_TEXT_VOCAB", "make_tiny"]
