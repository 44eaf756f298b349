"""The server's settings: every bound a session lives within, with the reason for its value."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..audio.opus import OpusSettings


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"        # loopback unless the operator asks otherwise (then a token is required)
    port: int = 8998               # Moshi's port
    token: str = field(default_factory=lambda: os.environ.get("FULLDUPLEX_TOKEN", ""), repr=False)
    allow_origins: tuple[str, ...] = ()   # extra Origins allowed besides the server's own ("*": any)
    max_sessions: int | None = None  # beyond it a new client gets "busy" and a close, not a worse call for all.
                                   # None: derived from the measured CPU cost of a conversation (capacity.py);
                                   # an agent with its own limit uses that instead: Moshi's --moshi-slots
    cpu_target: float = 0.7        # share of the cores the sessions may use: the rest absorbs everyone talking at once
    cpu_cores: float | None = None  # cores to plan for (None: the CPUs this process may run on)
    assumed_session_cpu: float = 0.4  # CPU-s per s of one conversation before any is measured (duplex: 0.34-0.38 on the
                                      # bench, 0.22-0.25 a call through `serve` at 2-6 two-turn calls; issue 17)
    assumed_weight_s: float = 60.0    # ... counted as this much measured conversation: a quiet first minute opens no doors
    derived_max_sessions: int = 64    # a ceiling for the derived limit (a cheap agent on a big box)
    max_message_bytes: int = 64 * 1024   # one Ogg page is at most ~64 KiB; a 20-80 ms frame is < 1 KiB
    hard_message_bytes: int = 256 * 1024  # above this the WebSocket layer closes (1009) without reading it
    jitter_s: float = 0.04         # user audio buffered before the agent hears it (absorbs network jitter)
    max_input_s: float = 0.5       # user audio waiting beyond this (a client sending too fast) is dropped
    max_output_s: float = 1.0      # agent audio not yet delivered beyond this is dropped, not queued
    write_stall_s: float = 10.0    # a client that reads nothing for this long is disconnected
    idle_s: float = 30.0           # a client that sends nothing for this long is disconnected
    max_lag_s: float = 0.5         # a session this far behind the clock (CPU overload) skips ahead
    max_events: int = 2000         # timeline / text messages waiting to be sent (the oldest are dropped)
    model_nice: int = 0            # Linux: the model threads (recogniser, LLM, TTS, turn model) run this much below the
                                   # frame loops' priority. 5 at 12 calls on 2 cores (6 runs each, alternating): late
                                   # frames median 0.3 % vs 0.75 %, answers heard median 1.41 s vs 1.19 s, all held; 0
                                   # until the held rate is shown to change (issue 17)
    opus: OpusSettings = OpusSettings()   # the agent's audio as the server encodes it (complexity, bitrate, frame)
    socket_sndbuf: int = 32 * 1024  # kernel send buffer per client: hidden latency when a client reads slowly
    record_dir: str | None = None  # --record: each session's stereo WAV + timeline, written as it goes
    record_flush_s: float = 1.0    # a crash loses at most this much of a recording
    static_dir: str | None = None  # another web client to serve instead of ours (e.g. Moshi's built client)
    shutdown_s: float = 5.0        # on SIGTERM: time given to sessions to finish their recordings

    def __post_init__(self) -> None:
        if not 0 <= self.model_nice <= 19:
            raise ValueError(f"model_nice is a nice increment 0-19, not {self.model_nice}")
        for name in ("max_message_bytes", "hard_message_bytes", "assumed_session_cpu", "derived_max_sessions"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("max_sessions", "cpu_cores"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive (or None: derived / this machine's)")
        if not 0 < self.cpu_target <= 1:
            raise ValueError(f"cpu_target is a share of the cores: 0 < cpu_target <= 1, not {self.cpu_target}")
        if self.assumed_weight_s < 0:
            raise ValueError("assumed_weight_s must be 0 or more")
