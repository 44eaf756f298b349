"""Opus packets, both ways, on libopus through ctypes: the server's and the client's audio codec.

Why not sphn's Opus (the first wave's): its encoder holds Python's GIL while it encodes and runs at the
highest complexity, 14 ms of CPU per second of audio. At twelve calls the server's threads queued for
the GIL behind it (a quarter of all GIL time, ``py-spy --gil``; issue 17). ctypes lets the GIL go around
every foreign call, and libopus at complexity 5 encodes the agent's speech in 2.5-3 ms per second (sphn: 15).
Letting the GIL go is what matters, not only the cheaper setting: the same libopus loaded so that it
holds the GIL (``ctypes.PyDLL``) left 12 calls 0.9-7.9 % of frames late against 0.3-0.8 % (3 runs each).

The library is the libopus that PyAV's wheel bundles (``av``: faster-whisper's dependency, so every
install has it), else the system's (``libopus0``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

APPLICATION = {"voip": 2048, "audio": 2049}   # OPUS_APPLICATION_*
SET_BITRATE, SET_VBR, SET_COMPLEXITY, GET_LOOKAHEAD = 4002, 4006, 4010, 4027   # opus_encoder_ctl requests
MAX_PACKET = 4000            # bytes: libopus's own advice for one packet's buffer
OGG_RATE = 48_000            # Ogg/Opus counts samples (pre-skip, granule positions) at 48 kHz


@dataclass(frozen=True)
class OpusSettings:
    complexity: int = 5      # 0-10: 10 costs 3-4x the CPU of 5 (9-10 against 2.5-3 ms per s of speech) and keeps the
                             # 0-8 kHz spectrum 0.6-1 dB closer to the input (benchmarks/opus_codec.py)
    bitrate: int = 24_000    # bits/s for 24 kHz mono speech: ~29 kbit/s on the wire with the pages, as sphn's stream
    application: str = "audio"   # "voip" costs 3-4x the CPU at 24 kHz and came no closer to the input
    frame_ms: int = 40       # one packet (and one Ogg page) per 40 ms, as sphn's stream: 28 bytes of page each

    def __post_init__(self) -> None:
        if not 0 <= self.complexity <= 10:
            raise ValueError(f"Opus complexity is 0-10, not {self.complexity}")
        if self.application not in APPLICATION:
            raise ValueError(f"Opus application: {' or '.join(APPLICATION)}, not {self.application!r}")
        if self.frame_ms not in (10, 20, 40, 60):
            raise ValueError(f"Opus frames of 10, 20, 40 or 60 ms, not {self.frame_ms}")


def _candidates() -> list[str]:
    found = []
    spec = importlib.util.find_spec("av")   # found, not imported: PyAV would load all of FFmpeg
    if spec is not None and spec.origin:
        here = Path(spec.origin).resolve().parent
        for folder in (here.parent / "av.libs", here / ".dylibs", here.parent / "av.dylibs"):
            found += sorted(str(p) for p in folder.glob("libopus*"))
    system = ctypes.util.find_library("opus")
    return found + ([system] if system else [])


@functools.cache
def libopus() -> ctypes.CDLL:
    """libopus, its functions typed; a UserError that says what to install where none is found."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError:
            continue
    else:
        raise UserError("no libopus found for the server's audio: `pip install av` (it bundles one) or install "
                        "the system's (Debian: apt install libopus0)")
    vp, i, err = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)
    for name, restype, argtypes in (
            ("opus_encoder_create", vp, [i, i, i, err]), ("opus_encoder_destroy", None, [vp]),
            ("opus_encode_float", i, [vp, vp, i, vp, i]),
            ("opus_decoder_create", vp, [i, i, err]), ("opus_decoder_destroy", None, [vp]),
            ("opus_decode_float", i, [vp, ctypes.c_char_p, i, vp, i, i]),
            ("opus_strerror", ctypes.c_char_p, [i])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib        # opus_encoder_ctl is variadic: called with explicit ctypes arguments


class OpusError(RuntimeError):
    pass


def _check(code: int, what: str) -> int:
    if code < 0:
        raise OpusError(f"{what}: {libopus().opus_strerror(code).decode()}")
    return code


class OpusEncoder:
    """One mono stream: ``encode(frame)`` -> one packet, a frame being exactly ``frame_samples`` floats."""

    def __init__(self, rate: int, settings: OpusSettings = OpusSettings()) -> None:
        lib, err = libopus(), ctypes.c_int()
        self._lib, self.rate = lib, rate
        self.frame_samples = rate * settings.frame_ms // 1000
        self._enc = lib.opus_encoder_create(rate, 1, APPLICATION[settings.application], ctypes.byref(err))
        _check(err.value, f"Opus encoder at {rate} Hz")
        # Constant bitrate: silence costs the bytes speech does (3.7 KB/s with the pages, 0.3 ms more CPU per
        # s), so a queue's bytes say how many seconds it holds. With VBR, silence was 0.85 KB/s and the
        # session, which reads its output backlog as bytes / bytes per s so far, took a short burst of
        # speech after silence for a second's backlog and dropped it (session.py ``_send_audio``).
        for request, value in ((SET_COMPLEXITY, settings.complexity), (SET_BITRATE, settings.bitrate), (SET_VBR, 0)):
            _check(lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), ctypes.c_int(request), ctypes.c_int(value)),
                   "Opus encoder setting")
        lookahead = ctypes.c_int()
        _check(lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), ctypes.c_int(GET_LOOKAHEAD), ctypes.byref(lookahead)),
               "Opus encoder lookahead")
        self.lookahead = lookahead.value            # samples at ``rate`` the decoder's output starts late by
        self._out = (ctypes.c_ubyte * MAX_PACKET)()

    def encode(self, frame: np.ndarray) -> bytes:
        frame = np.ascontiguousarray(frame, np.float32)
        if frame.shape != (self.frame_samples,):
            raise ValueError(f"an Opus frame is {self.frame_samples} samples, not {frame.shape}")
        n = _check(self._lib.opus_encode_float(self._enc, frame.ctypes.data, self.frame_samples, self._out, MAX_PACKET),
                   "Opus encode")
        return ctypes.string_at(self._out, n)     # (slicing the ctypes array would build a list of ints)

    def __del__(self) -> None:
        if getattr(self, "_enc", None):
            self._lib.opus_encoder_destroy(self._enc)
            self._enc = None


class OpusDecoder:
    """One mono stream: ``decode(packet)`` -> the float samples it holds (any frame size Opus allows)."""

    MAX_FRAME_S = 0.12       # the longest packet Opus defines

    def __init__(self, rate: int) -> None:
        lib, err = libopus(), ctypes.c_int()
        self._lib, self.rate = lib, rate
        self._dec = lib.opus_decoder_create(rate, 1, ctypes.byref(err))
        _check(err.value, f"Opus decoder at {rate} Hz")
        self._pcm = np.zeros(int(rate * self.MAX_FRAME_S), np.float32)

    def decode(self, packet: bytes) -> np.ndarray:
        n = _check(self._lib.opus_decode_float(self._dec, packet, len(packet), self._pcm.ctypes.data,
                                               len(self._pcm), 0), "Opus decode")
        return self._pcm[:n].copy()

    def __del__(self) -> None:
        if getattr(self, "_dec", None):
            self._lib.opus_decoder_destroy(self._dec)
            self._dec = None
