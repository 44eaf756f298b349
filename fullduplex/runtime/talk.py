"""``fullduplex talk``: an agent on this machine's microphone and speakers (PortAudio, via sounddevice).

The microphone paces the loop: ``runtime.drive`` reads each 20 ms frame from it (``Microphone``, a
source that waits for the device) and steps the conversation on this thread, never in the audio
callbacks. Agent audio goes to the speakers through a bounded buffer (``Speakers``, the sink);
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
from ..audio.frames import SAMPLE_RATE, pop_samples, seconds
from ..audio.resample import StreamResampler
from ..audio.live_recording import SessionRecording
from ..config import Config
from ..engines import ModelStack, make_agent
from ..errors import UserError
from ..events import Event, ForwardingEventLog
from .drive import DriveStats, drive

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


class _SpeakerBuffer:
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


class Microphone:
    """Source: 16 kHz frames from the device's blocks (a bounded queue filled by the input callback)."""

    def __init__(self, rate: int, stop: threading.Event, limit_s: float | None) -> None:
        self.blocks: queue.Queue[np.ndarray] = queue.Queue(maxsize=50)     # 1 s of 20 ms blocks
        self.dropped_blocks = 0
        self._down = StreamResampler(rate, SAMPLE_RATE)
        self._pending = np.zeros(0, np.float32)
        self._stop = stop
        self._left = None if limit_s is None else int(limit_s * SAMPLE_RATE)

    def callback(self, indata, _frames, _time, _status) -> None:
        try:
            self.blocks.put_nowait(indata[:, 0].copy())
        except queue.Full:
            self.dropped_blocks += 1

    def read(self, n: int) -> np.ndarray | None:
        while len(self._pending) < n:
            if self._stop.is_set() or (self._left is not None and self._left <= 0):
                return None
            try:
                block = self.blocks.get(timeout=0.5)
            except queue.Empty:
                continue
            self._pending = np.concatenate([self._pending, self._down.push(block)])
        frame, self._pending = self._pending[:n], self._pending[n:]
        if self._left is not None:
            self._left -= n
        return frame

    def discard(self, n: int) -> None:
        self._pending = self._pending[n:]


class Speakers:
    """Sink: the agent's frames to the output device; the recording and the console see both streams."""

    def __init__(self, rate: int, events: ForwardingEventLog, recording: SessionRecording | None,
                 show: Callable[[str], None]) -> None:
        self.buffer = _SpeakerBuffer(rate)
        self._up = StreamResampler(SAMPLE_RATE, rate)
        self._events, self._recording, self._show = events, recording, show
        self._turn_ends: dict[int, float] = {}

    def callback(self, outdata, frames, _time, _status) -> None:
        outdata[:, 0] = self.buffer.pull(frames)

    def frame(self, t: float, user: np.ndarray, playing: np.ndarray, out: np.ndarray) -> None:
        self.buffer.push(self._up.push(out))
        fresh = self._events.take_fresh()
        if self._recording:
            self._recording.add(user, playing)
            self._recording.add_events(fresh)
        for e in fresh:
            _show_event(e, self._turn_ends, self._show)

    def gap(self, n: int) -> None:
        pass


def talk(agent_name: str, cfg: Config, input_device: str | int | None = None, output_device: str | int | None = None,
         record_dir: str | None = None, seconds_limit: float | None = None, sd: Any = None,
         show: Callable[[str], None] = print, stop: threading.Event | None = None) -> dict:
    """Talk until Ctrl-C (or ``seconds_limit``, or ``stop``); returns the session's counters."""
    sd = sd or load_sounddevice()
    dev_in, dev_out = pick_devices(sd, input_device, output_device)
    rate_in, rate_out = int(dev_in["default_samplerate"]), int(dev_out["default_samplerate"])
    if cfg.moshi.slots == 0:   # one call: a batch of one (automatic slots would size it for a server)
        cfg = cfg.with_(moshi={"slots": 1})
    agent = make_agent(agent_name, ModelStack(cfg), cfg)
    show(f"loading agent '{agent_name}' ...")
    agent.prepare()
    events = ForwardingEventLog()
    clock = RealClock()
    conversation = agent.conversation(clock=clock, events=events)
    mic_frame = conversation.frame_samples
    recording = None
    if record_dir:
        recording = SessionRecording(Path(record_dir) / time.strftime("talk-%Y%m%d-%H%M%S"))
    stop = stop or threading.Event()
    mic = Microphone(rate_in, stop, seconds_limit)
    speakers = Speakers(rate_out, events, recording, show)
    show(f"talking to '{agent_name}' on {dev_in['name']} -> {dev_out['name']} (Ctrl-C to stop; headphones "
         "avoid the agent hearing itself)")
    loop = DriveStats()
    try:
        with sd.InputStream(samplerate=rate_in, channels=1, dtype="float32", blocksize=rate_in // 50,
                            device=dev_in.get("index", input_device), callback=mic.callback), \
             sd.OutputStream(samplerate=rate_out, channels=1, dtype="float32", blocksize=rate_out // 50,
                             device=dev_out.get("index", output_device), callback=speakers.callback):
            # late: heard over 100 ms after the microphone delivered it
            drive(conversation, mic, speakers, clock, stop=stop, stats=loop, late_s=seconds(mic_frame) + 0.1)
    except KeyboardInterrupt:
        pass
    finally:
        conversation.close()
        counters = {"frames": loop.frames, "late_frames": loop.late_frames,
                    "mic_dropped_blocks": mic.dropped_blocks,
                    "speaker_dropped_s": round(speakers.buffer.dropped / rate_out, 3)}
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
