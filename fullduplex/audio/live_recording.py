"""Recording a live session as it happens, so that a crash loses at most the last flush.

A session folder holds:
- ``conversation.wav``: stereo 16-bit PCM at 16 kHz, user left, agent right. Audio is appended once
  per ``flush_s`` and synced, and only then does the header's length grow to cover it: the header
  never promises more than the file holds, so a killed server leaves a valid, slightly shorter WAV;
- ``timeline.jsonl``: every event, whole lines appended with one ``write`` per flush;
- ``session.json``: written (atomically) when the session ends cleanly: its statistics and why it ended.

Disk work happens in one writer thread per recording; the audio path only hands over buffers through
a bounded queue (a full queue drops the chunk and counts it, it never blocks the agent).
"""

from __future__ import annotations

import json
import os
import queue
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .frames import SAMPLE_RATE
from .io import write_text
from ..events import Event

CHANNELS, WIDTH = 2, 2


def wav_header(data_bytes: int, rate: int = SAMPLE_RATE) -> bytes:
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, CHANNELS, rate,
                       rate * CHANNELS * WIDTH, CHANNELS * WIDTH, 8 * WIDTH, b"data", data_bytes)


class SessionRecording:
    def __init__(self, folder: str | Path, flush_s: float = 1.0, depth: int = 16) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=False)
        self.flush_samples = max(1, int(flush_s * SAMPLE_RATE))
        self._wav = os.open(self.folder / "conversation.wav", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(self._wav, wav_header(0))
        self._timeline = os.open(self.folder / "timeline.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL,
                                 0o644)
        self.data_bytes = 0
        self.dropped_chunks = 0
        self.max_depth = 0
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._lines: list[str] = []
        self._queue: queue.Queue[tuple[bytes, str] | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._write_loop, name="fullduplex-record", daemon=True)
        self._thread.start()
        self._closed = False

    # -- the audio path (the session thread) ---------------------------------------------------------
    def add(self, user: np.ndarray, agent: np.ndarray) -> None:
        pcm = np.clip(np.stack([user, agent], axis=1), -1.0, 1.0)
        self._pending.append((pcm * 32767.0).astype("<i2"))
        self._pending_n += len(pcm)
        if self._pending_n >= self.flush_samples:
            self._hand_over()

    def add_events(self, events: list[Event]) -> None:
        self._lines.extend(json.dumps(e.to_json()) + "\n" for e in events)

    def _hand_over(self) -> None:
        audio = np.concatenate(self._pending).tobytes() if self._pending else b""
        lines = "".join(self._lines)
        self._pending, self._pending_n, self._lines = [], 0, []
        try:
            self._queue.put_nowait((audio, lines))
        except queue.Full:
            self.dropped_chunks += 1
        self.max_depth = max(self.max_depth, self._queue.qsize())

    # -- the writer thread ---------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            audio, lines = item
            if audio:
                os.write(self._wav, audio)      # 1. the samples ...
                os.fdatasync(self._wav)
                self.data_bytes += len(audio)
                os.pwrite(self._wav, struct.pack("<I", 36 + self.data_bytes), 4)   # 2. ... then the lengths
                os.pwrite(self._wav, struct.pack("<I", self.data_bytes), 40)
            if lines:
                os.write(self._timeline, lines.encode("utf-8"))

    def close(self, info: dict[str, Any] | None = None) -> None:
        """Flush what is pending, finish the files and write ``session.json``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._hand_over()
        self._queue.put(None)
        self._thread.join(30)
        for fd in (self._wav, self._timeline):
            os.fsync(fd)
            os.close(fd)
        info = dict(info or {})
        info.update(audio_s=round(self.data_bytes / (CHANNELS * WIDTH * SAMPLE_RATE), 3),
                    dropped_record_chunks=self.dropped_chunks)
        write_text(self.folder / "session.json", json.dumps(info, indent=1, default=str))
