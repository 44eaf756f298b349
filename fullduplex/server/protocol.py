"""Moshi's WebSocket protocol (``GET /api/chat``), as this server speaks it.

Every message is one binary WebSocket message: one byte of kind, then the payload.

==== ============ ==================================================================================
kind name         payload
==== ============ ==================================================================================
0x00 handshake    server -> client first, once the session is ready (Moshi's client waits for it).
                  ``00 00 00``: protocol version 0, model 0 (as Moshi's client encodes it).
0x01 audio        Ogg/Opus, 24 kHz mono, both ways; any chunking of the pages.
0x02 text         server -> client: UTF-8 agent text, in step with the audio it belongs to.
0x03 control      client -> server: one byte, start/endTurn/pause/restart (accepted, logged).
0x04 metadata     UTF-8 JSON object. Server -> client: our timeline (``{"type": "event", ...}``),
                  per-turn latency, session info, queue statistics. Client -> server: accepted, logged.
0x05 error        server -> client: UTF-8 ``"<code>: <message>"``; the server closes right after.
0x06 ping         either way, no payload; ignored.
0x07 coloredtext  server -> client only (Moshi's), never sent here.
==== ============ ==================================================================================

Everything else a client sends (an unknown kind, a server-only kind, a text WebSocket frame, an empty
or oversize message, audio that is not mono Ogg/Opus) is answered with ``0x05`` and a close, for that
client only.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

from ..events import Event

SAMPLE_RATE = 24_000          # the protocol's audio rate (Mimi's), both ways
PROTOCOL_VERSION = 0


class Kind(IntEnum):
    HANDSHAKE = 0
    AUDIO = 1
    TEXT = 2
    CONTROL = 3
    METADATA = 4
    ERROR = 5
    PING = 6
    COLORED_TEXT = 7


CLIENT_KINDS = {Kind.HANDSHAKE, Kind.AUDIO, Kind.CONTROL, Kind.METADATA, Kind.PING}
CONTROL_ACTIONS = {0: "start", 1: "endTurn", 2: "pause", 3: "restart"}


class Close(IntEnum):
    """WebSocket close codes (RFC 6455 section 7.4) the server uses."""

    NORMAL = 1000
    GOING_AWAY = 1001        # server shutting down
    UNSUPPORTED = 1003       # a text frame where binary is expected
    POLICY = 1008            # a malformed message; a client that stopped reading; idle
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_LATER = 1013         # busy: the session limit is reached


class ProtocolError(Exception):
    """A client broke the protocol: ``code`` (error prefix) and ``close`` say how it is answered."""

    def __init__(self, code: str, message: str, close: Close = Close.POLICY) -> None:
        super().__init__(message)
        self.code, self.message, self.close = code, message, close

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def pack(kind: Kind, payload: bytes = b"") -> bytes:
    return bytes([kind]) + payload


def handshake() -> bytes:
    return pack(Kind.HANDSHAKE, bytes([PROTOCOL_VERSION, 0]))


def audio(ogg: bytes) -> bytes:
    return pack(Kind.AUDIO, ogg)


def text(s: str) -> bytes:
    return pack(Kind.TEXT, s.encode("utf-8"))


def metadata(obj: dict[str, Any]) -> bytes:
    return pack(Kind.METADATA, json.dumps(obj, separators=(",", ":"), default=str).encode("utf-8"))


def error(code: str, message: str) -> bytes:
    return pack(Kind.ERROR, f"{code}: {message}".encode("utf-8"))


def parse_client(data: bytes, max_bytes: int) -> tuple[Kind, bytes]:
    """Check one binary message from a client; returns its kind and payload or raises ``ProtocolError``."""
    if len(data) > max_bytes:
        raise ProtocolError("too_big", f"message of {len(data)} bytes; the limit is {max_bytes}", Close.TOO_BIG)
    if not data:
        raise ProtocolError("bad_message", "empty message (a message starts with one byte of kind)")
    try:
        kind = Kind(data[0])
    except ValueError:
        raise ProtocolError("bad_message", f"unknown message kind 0x{data[0]:02x}") from None
    if kind not in CLIENT_KINDS:
        raise ProtocolError("bad_message", f"message kind 0x{kind:02x} ({kind.name.lower()}) is sent by servers, "
                                           "not clients")
    payload = data[1:]
    if kind == Kind.AUDIO and not payload:
        raise ProtocolError("bad_message", "empty audio message")
    if kind == Kind.CONTROL and (len(payload) != 1 or payload[0] not in CONTROL_ACTIONS):
        raise ProtocolError("bad_message", f"unknown control message {payload.hex() or '(empty)'}")
    if kind == Kind.METADATA:
        try:
            obj = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ProtocolError("bad_message", f"metadata is not UTF-8 JSON ({e})") from None
        if not isinstance(obj, dict):
            raise ProtocolError("bad_message", "metadata must be a JSON object")
    return kind, payload


def parse_server(data: bytes) -> tuple[Kind | int, bytes]:
    """A client's view of a server message: its kind (an int when unknown) and payload."""
    if not data:
        return -1, b""
    try:
        return Kind(data[0]), data[1:]
    except ValueError:
        return data[0], data[1:]


# -- what the timeline becomes on the wire -----------------------------------------------------------

# Events that put words in the agent's mouth, sent as 0x02 when the user starts hearing them: cascade
# pieces and backchannels are whole words (joined with a space); a token stream (Moshi's inner monologue,
# ``agent.text``) carries its own spacing. Text whose audio was dropped (``heard: false``) is not sent.
AGENT_PIECES = ("playback.piece", "backchannel")
AGENT_TOKENS = ("agent.text",)


def agent_text(event: Event) -> tuple[str, bool] | None:
    """(words, whether to join them to earlier text with a space), or None for any other event."""
    if event.kind not in AGENT_PIECES + AGENT_TOKENS or event.data.get("heard") is False:
        return None
    value = event.data.get("text")
    if not value:
        return None
    return str(value), event.kind in AGENT_PIECES


def event_metadata(event: Event) -> dict[str, Any]:
    return {"type": "event", **event.to_json()}
