"""Kyutai's Moshi: loading a checkpoint (``load.py``), pooling loaded models between sessions
(``pool.py``) and the tiny random checkpoint for tests and CPU demos (``tiny.py``).

Importing this package imports neither torch nor moshi: they load with the first model.
"""

from .load import MoshiModel, load_moshi, random_full_size, reset_streaming, resolve_device
from .pool import acquire, adopt, release
from .tiny import TINY_TEXT_VOCAB, make_tiny

__all__ = ["MoshiModel", "adopt", "load_moshi", "random_full_size", "reset_streaming", "resolve_device",
           "acquire", "release", "TINY_TEXT_VOCAB", "make_tiny"]
