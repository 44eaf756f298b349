"""``fullduplex talk``: an agent on this machine's microphone and speakers (PortAudio, via sounddevice).

The microphone is the clock: every 20 ms block it delivers becomes one user frame, stepped on this
thread (never in the audio callbacks). Agent audio goes to the speakers through a bounded buffer;
PortAudio callbacks only copy. Use headphones, or the agent hears itself: there is no echo canceller
here (the browser client has the browser's).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..audio.clock import RealClock
from ..audio.frames import SAMPLE_RATE, frame_samples, pop_samples, seconds
from ..audio.resample import StreamResampler
from ..config import Config
from ..engines import ModelStack, make_agent
from ..engines.base import Session
from ..errors import UserError
from ..events import Event
from .record import SessionRecording
from .session import ForwardingEventLog

MAX_SPEAKER_S = 1.0     # agent audio waiting for the speakers beyond this is dropped


def load_sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as e:   # the Python package is there, the PortAudio library is not
        raise UserError(f"talk needs the PortAudio library ({e}): install it (Debian: apt-get install "
                        "libportaudio2), or use `fullduplex serve` and a browser") from None
    except ImportError:
        raise UserError("talk needs the Python package 'sounddevice': pip install 'fullduplex[server]'") from None
    return sounddevice


def pick_devices(sd: Any, input_device: str | int | None, output_device: str | int | None) -> tuple[dict, dict]:
    """The input and output device PortAudio would use, or a ``UserError`` saying there is none."""
    found = []
    for kind, wanted in (("input", input_device), ("output", output_device)):
        try:
            info = sd.query_devices(wanted, kind=kind) if wanted is not None else sd.query_devices(kind=kind)
        except Exception as e:   # PortAudioError / ValueError: no such device, or none at all
            listed = ""
            try:
                listed = str(sd.query_devices()).strip()
            except Exception:
                pass
            raise UserError(
                f"no audio {kind} device{'' if wanted is None else f' {wanted!r}'} ({e}); "
                + (f"devices PortAudio sees:\n{listed}\n" if listed else "PortAudio sees no audio device at all; ")
                + f"connect a {'microphone' if kind == 'input' else 'speaker or headphones'}, pick one with "
                  f"--{kind}-device, or talk through a browser with `fullduplex serve`") from None
        found.append(dict(info))
    return found[0], found[1]


class _Speaker:
    """Agent audio for the output callback: a bounded buffer, silence when empty."""

    def __init__(self, rate: int) -> None:
        self._lock = threading.Lock()
        self._buf: deque[np.ndarray] = deque()
        self._n = 0
        self.max = int(MAX_SPEAKER_S * rate)
        self.dropped = 0

    def push(self, pcm: np.ndarray) -> None:
        with self._lock:
            self._buf.append(pcm)
            self._n += len(pcm)
            while self._n > self.max and self._buf:
                self._n -= len(old := self._buf.popleft())
                self.dropped += len(old)

    def pull(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        with self._lock:
            self._n -= pop_samples(self._buf, out)
        return out


def talk(agent_name: str, cfg: Config, input_device: str | int | None = None, output_device: str | int | None = None,
         record_dir: str | None = None, seconds_limit: float | None = None, sd: Any = None,
         show: Callable[[str], None] = print, stop: threading.Event | None = None) -> dict:
    """Talk until Ctrl-C (or ``seconds_limit``, or ``stop``); returns the session's counters."""
    sd = sd or load_sounddevice()
    dev_in, dev_out = pick_devices(sd, input_device, output_device)
    rate_in, rate_out = int(dev_in["default_samplerate"]), int(dev_out["default_samplerate"])
    models = ModelStack(cfg)
    agent = make_agent(agent_name, models, cfg)
    show(f"loading agent '{agent_name}' ...")
    agent.prepare()
    n = frame_samples(cfg.runtime.frame_ms)
    mic: queue.Queue[np.ndarray] = queue.Queue(maxsize=50)     # 1 s of 20 ms blocks
    speaker = _Speaker(rate_out)
    counters = {"frames": 0, "mic_dropped_blocks": 0, "speaker_dropped_s": 0.0, "late_frames": 0}

    def on_input(indata, _frames, _time, _status) -> None:
        try:
            mic.put_nowait(indata[:, 0].copy())
        except queue.Full:
            counters["mic_dropped_blocks"] += 1

    def on_output(outdata, frames, _time, _status) -> None:
        outdata[:, 0] = speaker.pull(frames)

    clock = RealClock()
    events = ForwardingEventLog()
    recording = None
    if record_dir:
        recording = SessionRecording(Path(record_dir) / time.strftime("talk-%Y%m%d-%H%M%S"))
    down, up = StreamResampler(rate_in, SAMPLE_RATE), StreamResampler(SAMPLE_RATE, rate_out)
    pending = np.zeros(0, np.float32)
    playing = np.zeros(n, np.float32)     # recorded one frame after step() returns it, as runtime/runner.py does
    stop = stop or threading.Event()
    agent.start(Session(clock=clock, events=events, frame_samples=n))
    turn_ends: dict[int, float] = {}
    show(f"talking to '{agent_name}' on {dev_in['name']} -> {dev_out['name']} (Ctrl-C to stop; headphones "
         "avoid the agent hearing itself)")
    try:
        with sd.InputStream(samplerate=rate_in, channels=1, dtype="float32", blocksize=rate_in // 50,
                            device=dev_in.get("index", input_device), callback=on_input), \
             sd.OutputStream(samplerate=rate_out, channels=1, dtype="float32", blocksize=rate_out // 50,
                             device=dev_out.get("index", output_device), callback=on_output):
            clock.restart()
            while not stop.is_set():
                if seconds_limit is not None and seconds(counters["frames"] * n) >= seconds_limit:
                    break
                try:
                    block = mic.get(timeout=0.5)
                except queue.Empty:
                    continue
                pending = np.concatenate([pending, down.push(block)])
                while len(pending) >= n:
                    frame, pending = pending[:n], pending[n:]
                    t = seconds(counters["frames"] * n)
                    if clock.now() > t + seconds(n) + 0.1:    # heard 100 ms after the microphone delivered it
                        counters["late_frames"] += 1
                    out = agent.step(frame, t)
                    counters["frames"] += 1
                    speaker.push(up.push(out))
                    if recording:
                        recording.add(frame, playing)
                    playing = out
                    fresh = events.take_fresh()
                    if recording:
                        recording.add_events(fresh)
                    for e in fresh:
                        _show_event(e, turn_ends, show)
    except KeyboardInterrupt:
        pass
    finally:
        agent.close()
        counters["speaker_dropped_s"] = round(speaker.dropped / rate_out, 3)
        if recording:
            recording.close({"agent": agent_name, "mode": "talk", **counters})
            show(f"recorded {recording.folder}")
    return counters


def _show_event(e: Event, turn_ends: dict[int, float], show: Callable[[str], None]) -> None:
    if e.kind == "stt.final" and e.data.get("text"):
        show(f"  you:   {e.data['text']}")
    elif e.kind == "playback.piece" and e.data.get("text"):
        show(f"  agent: {e.data['text']}")
    elif e.kind == "turn.end" and e.turn is not None:
        turn_ends[e.turn] = float(e.data.get("speech_end", e.t))
    elif e.kind == "playback.start" and e.turn in turn_ends:
        show(f"  (answered {e.t - turn_ends[e.turn]:.2f} s after you stopped speaking)")
    elif e.kind == "error":
        show(f"  error: {e.data.get('message')}")
