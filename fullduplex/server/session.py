"""One connection = one session: its own conversation on the shared agent, its own clock and codec state.

Threads and queues (every queue bounded, every depth measured):

    event loop                         session thread (one per connection)          agent workers
    ----------                         -----------------------------------          -------------
    Opus -> 16 kHz --push--> InputBuffer --read(frame)--> conversation.step() ---> (STT, LLM, TTS)
                             (jitter_s .. max_input_s)        |  events <------------------'
    send loop <--drain-- Outbox <--- Ogg/Opus, text, metadata -'
                         (max_output_s of audio, max_events others)

The session thread runs ``runtime.drive`` with the session as its source (the input buffer) and its
sink (recording, events, Opus): one frame every ``frame_ms`` whatever the client does. A client that
sends too slowly leaves the buffer empty and the agent hears silence (counted as underruns); one that
sends too fast overflows it and the oldest audio is dropped (counted). Agent audio that the client has
not taken within ``max_output_s`` is not encoded at all (counted), so the Ogg stream stays valid and
latency stays bounded; a client that reads nothing for ``write_stall_s`` is disconnected. A session that falls behind its clock by ``max_lag_s`` (CPU
overload) skips ahead rather than answering ever later.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from ..audio.clock import RealClock
from ..audio.frames import SAMPLE_RATE, pop_samples, seconds, silence
from ..audio.resample import StreamResampler
from ..engines.base import Agent
from ..events import Event, ForwardingEventLog
from ..runtime.drive import DriveStats, drive
from ..runtime.latency import breakdown
from . import protocol
from .config import ServerConfig
from .ogg import OggOpusWriter
from ..audio.live_recording import SessionRecording


class InputBuffer:
    """The user's audio between the network and the clock: a jitter buffer with a ceiling."""

    def __init__(self, jitter_s: float, max_s: float) -> None:
        self._lock = threading.Lock()
        self._chunks: deque[np.ndarray] = deque()
        self._n = 0
        self.jitter = int(jitter_s * SAMPLE_RATE)
        self.max = max(int(max_s * SAMPLE_RATE), self.jitter + 1)
        self._primed = False
        self.received = 0          # samples
        self.dropped = 0           # samples dropped because the client sent faster than real time
        self.max_depth = 0

    def push(self, pcm: np.ndarray) -> int:
        """Add audio; returns how many samples had to be dropped (the oldest) to stay under the ceiling."""
        dropped = 0
        with self._lock:
            self._chunks.append(pcm)
            self._n += len(pcm)
            self.received += len(pcm)
            self.max_depth = max(self.max_depth, self._n)
            if self._n > self.max:
                dropped = self._discard(self._n - self.jitter)
                self.dropped += dropped
        return dropped

    def take(self, n: int) -> np.ndarray | None:
        """``n`` samples for the next frame, or None (not primed yet, or ran dry: an underrun)."""
        with self._lock:
            if not self._primed:
                if self._n < self.jitter + n:
                    return None
                self._primed = True
            if self._n < n:
                self._primed = False
                return None
            out = np.empty(n, np.float32)
            self._n -= pop_samples(self._chunks, out)   # n are there: checked above
            return out

    def discard(self, n: int) -> int:
        with self._lock:
            return self._discard(n)

    def _discard(self, n: int) -> int:
        done = 0
        while done < n and self._chunks:
            chunk = self._chunks[0]
            take = min(n - done, len(chunk))
            if take == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[take:]
            done += take
        self._n -= done
        return done

    @property
    def depth_s(self) -> float:
        with self._lock:
            return seconds(self._n)


class Outbox:
    """Messages for the client: audio bounded by the session thread (in seconds), the rest by count."""

    def __init__(self, max_other: int, notify: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._items: deque[tuple[bytes, bool]] = deque()
        self._others = 0
        self.audio_bytes = 0       # audio waiting here, not yet handed to the socket
        self.max_other = max_other
        self.dropped_other = 0
        self.max_depth = 0
        self._notify = notify
        self._notified = False

    def put(self, message: bytes, is_audio: bool = False) -> bool:
        with self._lock:
            if not is_audio and self._others >= self.max_other:
                self.dropped_other += 1
                return False
            self._items.append((message, is_audio))
            if is_audio:
                self.audio_bytes += len(message)
            else:
                self._others += 1
            self.max_depth = max(self.max_depth, len(self._items))
            wake = not self._notified
            self._notified = True
        if wake:
            self._notify()
        return True

    def drain(self) -> list[bytes]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._others = 0
            self.audio_bytes = 0
            self._notified = False
        return [m for m, _ in items]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@dataclass
class SessionStats:
    """What the network side counts; the frame loop's own counters are ``DriveStats``."""
    underrun_frames: int = 0       # ticks with no user audio in time (client too slow, or jitter)
    dropped_input_frames: int = 0  # user audio dropped: the client sent faster than real time
    dropped_output_frames: int = 0  # agent audio not sent: the client did not read it in time
    dropped_events: int = 0        # timeline messages dropped (outbox full)
    max_input_s: float = 0.0
    max_output_backlog_s: float = 0.0

    def summary(self, loop: DriveStats) -> dict:
        d = {"frames": loop.frames, "late_frames": loop.late_frames, "skipped_frames": loop.skipped_frames,
             **asdict(self)}
        d["step_p50_ms"] = round(loop.step_percentile(50), 3)
        d["step_p99_ms"] = round(loop.step_percentile(99), 3)
        d["max_input_s"] = round(d["max_input_s"], 3)
        d["max_output_backlog_s"] = round(d["max_output_backlog_s"], 3)
        return d


class ChatSession:
    def __init__(self, sid: str, agent: Agent, cfg: ServerConfig,
                 notify: Callable[[], None], on_end: Callable[[], None],
                 recording: SessionRecording | None = None, send_metadata: bool = True) -> None:
        self.id = sid
        self.agent_name = agent.name
        self.cfg = cfg
        self.clock = RealClock()
        self.events = ForwardingEventLog()
        self.conversation = agent.conversation(clock=self.clock, events=self.events)   # the agent is prepared
        self.n = self.conversation.frame_samples
        self.inbox = InputBuffer(cfg.jitter_s, cfg.max_input_s)
        self.outbox = Outbox(cfg.max_events, notify)
        self.stats = SessionStats()
        self.loop = DriveStats()
        self.recording = recording
        self.send_metadata = send_metadata
        self.backlog_probe: Callable[[], int] = lambda: 0   # bytes written but not yet delivered (socket)
        self.failure: tuple[str, str] | None = None          # (error code, message) when the session gave up
        self.started = time.time()
        self.ended_reason = ""
        self._on_end = on_end
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fullduplex-session-{sid}", daemon=True)
        self._encoder = OggOpusWriter(protocol.SAMPLE_RATE, cfg.opus)
        self._upsample = StreamResampler(SAMPLE_RATE, protocol.SAMPLE_RATE)
        self._encoded_bytes = 0
        self._encoded_frames = 0
        self._turn_latency_sent: set[int] = set()
        self._stall_since: float | None = None
        self._last_stats = 0.0
        self._text_started = False

    # -- lifecycle (called from the event loop, through threads where it may block) ------------------
    def start(self) -> None:
        """Start the session thread (and with it the clock); the caller sends the handshake right after."""
        self._thread.start()

    def push_audio(self, pcm16k: np.ndarray) -> None:
        dropped = self.inbox.push(pcm16k)
        if dropped:
            self.stats.dropped_input_frames += -(-dropped // self.n)

    def stop(self, reason: str) -> None:
        if not self.ended_reason:
            self.ended_reason = reason
        self._stop.set()

    def join(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def info(self) -> dict:
        return {"session": self.id, "agent": self.agent_name, "started": self.started,
                "t": round(self.clock.now(), 3), "input_buffer_s": round(self.inbox.depth_s, 3),
                "outbox": len(self.outbox), "ended": self.ended_reason or None, **self.summary(),
                "queues": self._queues(), "state": self.conversation.state()}

    def summary(self) -> dict:
        return {**self.stats.summary(self.loop), **self.conversation.cpu_summary(self.loop.duration_s)}

    def _queues(self) -> dict:
        """The conversation's worker queues: bound, deepest seen, submits refused."""
        return {w.name: w.stats() for w in self.conversation.workers()}

    # -- the session thread: runtime.drive with this session as its source and sink -------------------
    def _run(self) -> None:
        try:
            drive(self.conversation, self, self, self.clock, stop=self._stop, max_lag_s=self.cfg.max_lag_s,
                  stats=self.loop, keep_steps=6000)   # the last two minutes of step times, for the percentiles
            self.ended_reason = self.ended_reason or "stopped"
        except Exception as e:   # the agent failed: this session ends, the server goes on
            self.failure = ("internal", f"the agent failed: {e}")
            self.ended_reason = f"agent error: {e}"
            self.events.add(Event(self.clock.now(), "error", None,
                                  {"where": "session", "message": str(e), "traceback": traceback.format_exc(limit=6)}))
        finally:
            self._forward_events()
            if self.recording:
                # clock_zero: the wall-clock time (Unix s) of the timeline's t = 0, so that the timelines of
                # calls held at once line up (who had a shared model while another's answer waited)
                self.recording.close({"agent": self.agent_name, "reason": self.ended_reason,
                                      "clock_zero": round(time.time() - self.clock.now(), 4),
                                      **self.summary(), "queues": self._queues()})
            try:
                self._on_end()
            except RuntimeError:   # the event loop is already gone (process shutdown)
                pass

    def read(self, n: int) -> np.ndarray:
        """Source: the next frame of the user's audio, silence when the client's audio is not there in time."""
        frame = self.inbox.take(n)
        if frame is None:
            if self.inbox.received:
                self.stats.underrun_frames += 1
            frame = silence(n)
        self.stats.max_input_s = max(self.stats.max_input_s, self.inbox.depth_s)
        return frame

    def discard(self, n: int) -> None:
        self.inbox.discard(n)

    def gap(self, n: int) -> None:
        if self.recording:
            self.recording.add(silence(n), silence(n))

    def frame(self, t: float, user: np.ndarray, playing: np.ndarray, out: np.ndarray) -> None:
        """Sink: record, forward the new events, encode and queue the agent's frame, a stats message a second."""
        if self.recording:
            self.recording.add(user, playing)
        self._forward_events()
        self._send_audio(out)
        if self.send_metadata and t - self._last_stats >= 1.0:
            self._last_stats = t
            self.outbox.put(protocol.metadata({"type": "stats", "t": round(t, 3), **self.info()}))

    def _send_audio(self, out: np.ndarray) -> None:
        rate = max(1000.0, self._encoded_bytes / max(seconds(self._encoded_frames * self.n), 1.0))
        backlog_s = (self.outbox.audio_bytes + self.backlog_probe()) / rate
        self.stats.max_output_backlog_s = max(self.stats.max_output_backlog_s, backlog_s)
        now = self.clock.now()
        if backlog_s > self.cfg.max_output_s:
            self.stats.dropped_output_frames += 1
            self._stall_since = self._stall_since if self._stall_since is not None else now
            if now - self._stall_since > self.cfg.write_stall_s:
                self.failure = ("slow_reader", f"the client has not read the agent's audio for "
                                               f"{self.cfg.write_stall_s:g} s")
                self.stop("client stopped reading")
            return
        self._stall_since = None
        with self.conversation.cpu.measure("opus"):
            chunk = self._encoder.append_pcm(self._upsample.push(out))
        self._encoded_frames += 1
        if chunk:
            self._encoded_bytes += len(chunk)
            self.outbox.put(protocol.audio(chunk), is_audio=True)

    def _forward_events(self) -> None:
        fresh = self.events.take_fresh()
        if not fresh:
            return
        if self.recording:
            self.recording.add_events(fresh)
        for event in fresh:
            said = protocol.agent_text(event)
            if said:
                words, spaced = said
                self._queue(protocol.text((" " if spaced and self._text_started else "") + words))
                self._text_started = True
            if self.send_metadata:
                self._queue(protocol.metadata(protocol.event_metadata(event)))
                if event.kind == "playback.start" and event.turn is not None:
                    self._send_latency(event.turn)

    def _send_latency(self, turn: int) -> None:
        if turn in self._turn_latency_sent:
            return
        self._turn_latency_sent.add(turn)
        rows = breakdown([e for e in self.events.snapshot() if e.turn == turn])
        if rows:
            row = rows[-1]
            self._queue(protocol.metadata({"type": "latency", "turn": turn, "speech_end": round(row.speech_end, 3),
                                           "response_s": row.response, "stages": row.stages}))

    def _queue(self, message: bytes) -> None:
        if not self.outbox.put(message):
            self.stats.dropped_events += 1
