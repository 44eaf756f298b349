"""Reading user audio strictly, and writing files so a failure never leaves half a file.

``read_user_audio`` accepts any rate and channel count soundfile can read, converts to the
conversation format (mono float32 at 16 kHz) and says what it converted. Anything it cannot use
becomes a ``UserError`` naming the file and what to do.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from ..errors import UserError
from .frames import SAMPLE_RATE
from .resample import resample

MIN_INPUT_RATE = 8_000  # below this there is no intelligible speech to listen to


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    duration: float
    channel_used: int | None  # None: channels were mixed down

    def conversion_note(self) -> str | None:
        notes = []
        if self.channels > 1:
            notes.append(f"mixed {self.channels} channels to mono" if self.channel_used is None
                         else f"used channel {self.channel_used} of {self.channels}")
        if self.sample_rate != SAMPLE_RATE:
            notes.append(f"resampled {self.sample_rate} Hz to {SAMPLE_RATE} Hz")
        return "; ".join(notes) or None


def _check_wav_not_truncated(path: Path, raw: bytes) -> None:
    """libsndfile quietly reads a cut-off WAV as a shorter one; we say it is damaged instead."""
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        if chunk_id == b"data":
            have = len(raw) - pos - 8
            # 0 and 0xFFFFFFFF are the sizes streaming writers leave when they cannot seek back.
            if size not in (0, 0xFFFFFFFF) and have < size:
                raise UserError(
                    f"{path}: the WAV is truncated (its header promises {size} bytes of audio, the file "
                    f"holds {have}); re-export or re-record it")
            return
        pos += 8 + size + (size & 1)


def read_user_audio(path: str | os.PathLike, channel: int | None = None) -> tuple[np.ndarray, AudioInfo]:
    """Read ``path`` as the user's stream: mono float32 at 16 kHz.

    ``channel`` picks one channel of a multi-channel file (0-based); by default channels are mixed.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give an audio file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    if not raw:
        raise UserError(f"{path} is empty (0 bytes); give a WAV/FLAC/OGG recording")
    _check_wav_not_truncated(path, raw)
    try:
        data, rate = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise UserError(f"{path} is not a readable audio file ({e}); give a WAV/FLAC/OGG recording") from None
    if data.shape[0] == 0:
        raise UserError(f"{path} holds no audio samples; give a recording with speech in it")
    if rate < MIN_INPUT_RATE:
        raise UserError(f"{path} is sampled at {rate} Hz, too low for speech; give at least {MIN_INPUT_RATE} Hz")
    n_channels = data.shape[1]
    if channel is not None and not 0 <= channel < n_channels:
        raise UserError(f"{path} has {n_channels} channel(s); --channel must be 0..{n_channels - 1}, not {channel}")
    mono = data[:, channel] if channel is not None else data.mean(axis=1)
    mono = resample(np.ascontiguousarray(mono, dtype=np.float32), rate, SAMPLE_RATE)
    used = channel if n_channels > 1 else 0
    info = AudioInfo(str(path), rate, n_channels, data.shape[0] / rate, used)
    return np.clip(mono, -1.0, 1.0), info


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_wav(path: str | os.PathLike, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV atomically; ``audio`` is (n,) mono or (n, channels)."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
