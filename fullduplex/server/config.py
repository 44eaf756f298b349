"""The server's settings: every bound a session lives within, with the reason for its value."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"        # loopback unless the operator asks otherwise (then a token is required)
    port: int = 8998               # Moshi's port
    token: str = field(default_factory=lambda: os.environ.get("FULLDUPLEX_TOKEN", ""), repr=False)
    allow_origins: tuple[str, ...] = ()   # extra Origins allowed besides the server's own ("*": any)
    max_sessions: int = 4          # beyond it a new client gets "busy" and a close, not a worse call for all
                                   # (an agent with its own limit uses that instead: Moshi's --moshi-slots)
    max_message_bytes: int = 64 * 1024   # one Ogg page is at most ~64 KiB; a 20-80 ms frame is < 1 KiB
    hard_message_bytes: int = 256 * 1024  # above this the WebSocket layer closes (1009) without reading it
    jitter_s: float = 0.04         # user audio buffered before the agent hears it (absorbs network jitter)
    max_input_s: float = 0.5       # user audio waiting beyond this (a client sending too fast) is dropped
    max_output_s: float = 1.0      # agent audio not yet delivered beyond this is dropped, not queued
    write_stall_s: float = 10.0    # a client that reads nothing for this long is disconnected
    idle_s: float = 30.0           # a client that sends nothing for this long is disconnected
    max_lag_s: float = 0.5         # a session this far behind the clock (CPU overload) skips ahead
    max_events: int = 2000         # timeline / text messages waiting to be sent (the oldest are dropped)
    socket_sndbuf: int = 32 * 1024  # kernel send buffer per client: hidden latency when a client reads slowly
    record_dir: str | None = None  # --record: each session's stereo WAV + timeline, written as it goes
    record_flush_s: float = 1.0    # a crash loses at most this much of a recording
    static_dir: str | None = None  # another web client to serve instead of ours (e.g. Moshi's built client)
    shutdown_s: float = 5.0        # on SIGTERM: time given to sessions to finish their recordings

    def __post_init__(self) -> None:
        for name in ("max_sessions", "max_message_bytes", "hard_message_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
