"""A Python client of Moshi's protocol: streams a recording in real time, records what comes back.

Used by ``bench run --agents ws://HOST:PORT/api/chat`` (any server speaking the protocol: ours or a
real ``moshi.server``), by the tests and by the load generator. The client's clock starts when the
server's handshake arrives; user frame ``i`` is sent at ``i * frame`` on it. Agent audio is placed on
the same clock as a player with no jitter buffer would play it: each decoded chunk starts where the
previous one ended, or where it arrived if that is later (a gap). So ``output`` holds what a user
would have heard, when they would have heard it: network, codec and queueing delays included.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import numpy as np

from ..audio.frames import SAMPLE_RATE, frame_samples, rms_dbfs
from ..audio.resample import StreamResampler, resample
from ..errors import UserError
from ..events import Event
from . import protocol
from .ogg import OggOpusReader, OggOpusWriter
from .protocol import Kind


@dataclass
class RemoteRun:
    output: np.ndarray                       # agent audio at 16 kHz on the client's clock
    events: list[Event]                      # the server's timeline (0x04) and the client's own notes
    texts: list[tuple[float, str]] = field(default_factory=list)      # (client time, 0x02 text)
    metadata: list[dict[str, Any]] = field(default_factory=list)      # every 0x04 object, in order
    errors: list[str] = field(default_factory=list)                   # every 0x05 payload
    close_code: int | None = None
    handshake_s: float = 0.0                 # from connecting to the handshake
    sent_s: float = 0.0                      # user audio sent
    late_sends: int = 0                      # frames this client sent more than one frame late
    max_send_lag_s: float = 0.0              # the furthest this client fell behind its own schedule
    received_audio_s: float = 0.0
    gaps: int = 0                            # agent audio that arrived after it should have played

    @property
    def agent_text(self) -> str:
        return "".join(t for _, t in self.texts).strip()


def _url_with(url: str, token: str | None) -> str:
    if not token:
        return url
    return url + ("&" if "?" in url else "?") + urlencode({"token": token})


async def wait_for_handshake(ws, url: str, timeout_s: float) -> str | None:
    """Read until the server's 0x00 handshake (None), or the text of the 0x05 error it sent instead
    ("busy", a bad token, ...). Closed before either: a UserError naming ``url``."""
    while True:
        msg = await ws.receive(timeout=timeout_s)
        if msg.type != aiohttp.WSMsgType.BINARY:
            raise UserError(f"{url}: closed before the handshake ({ws.close_code})")
        kind, payload = protocol.parse_server(msg.data)
        if kind == Kind.ERROR:
            return payload.decode("utf-8", "replace")
        if kind == Kind.HANDSHAKE:
            return None


async def server_messages(ws):
    """The server's messages on ``ws``, parsed: ``(kind, payload)`` for each binary one, until it closes."""
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            yield protocol.parse_server(msg.data)


async def converse(url: str, audio: np.ndarray, *, frame_ms: int = 20, tail_s: float = 0.0, token: str | None = None,
                   headers: dict[str, str] | None = None, handshake_timeout_s: float = 60.0,
                   linger_s: float = 0.3, split: int | None = None,
                   hang_up: asyncio.Event | None = None) -> RemoteRun:
    """Stream ``audio`` (16 kHz mono float32) to ``url`` in real time, then ``tail_s`` of silence.

    ``split`` cuts every audio message into pieces of at most that many bytes (Ogg pages across
    messages), as some clients send them. ``hang_up``, once set, ends the call early (as a user would).
    """
    audio = np.concatenate([np.asarray(audio, np.float32), np.zeros(int(tail_s * SAMPLE_RATE), np.float32)])
    up = resample(audio, SAMPLE_RATE, protocol.SAMPLE_RATE)
    n24 = protocol.SAMPLE_RATE * frame_ms // 1000
    n_frames = -(-len(up) // n24)
    run = RemoteRun(output=np.zeros(0, np.float32), events=[])
    out = np.zeros(len(audio) + SAMPLE_RATE * 5, np.float32)
    write_pos = 0
    reader = OggOpusReader(protocol.SAMPLE_RATE)
    down = StreamResampler(protocol.SAMPLE_RATE, SAMPLE_RATE)
    t_connect = time.monotonic()
    t0 = 0.0

    def now() -> float:
        return time.monotonic() - t0

    def note(kind: str, **data) -> None:
        run.events.append(Event(round(now(), 6), kind, None, {"origin": "client", **data}))

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.ws_connect(_url_with(url, token), headers=headers, max_msg_size=8 * 1024 * 1024,
                                       autoping=True) as ws:
                # -- the handshake: the server is ready ----------------------------------------------
                refused = await wait_for_handshake(ws, url, handshake_timeout_s)
                if refused is not None:
                    run.errors.append(refused)
                    await ws.receive(timeout=5)   # the close that follows
                    run.close_code = ws.close_code
                    return run
                t0 = time.monotonic()
                run.handshake_s = t0 - t_connect

                async def receive() -> None:
                    nonlocal write_pos, out
                    async for kind, payload in server_messages(ws):
                        if kind == Kind.AUDIO:
                            pcm = reader.append_bytes(payload)
                            if pcm.size == 0:
                                continue
                            pcm = down.push(pcm)
                            run.received_audio_s += len(pcm) / SAMPLE_RATE
                            arrival = int(now() * SAMPLE_RATE)
                            if arrival > write_pos:
                                run.gaps += int(write_pos > 0)
                                write_pos = arrival
                            if write_pos + len(pcm) > len(out):
                                out = np.concatenate([out, np.zeros(write_pos + len(pcm) - len(out) + SAMPLE_RATE,
                                                                    np.float32)])
                            out[write_pos:write_pos + len(pcm)] = pcm
                            write_pos += len(pcm)
                        elif kind == Kind.TEXT:
                            words = payload.decode("utf-8", "replace")
                            run.texts.append((round(now(), 6), words))
                            note("agent.text", text=words)
                        elif kind == Kind.METADATA:
                            try:
                                obj = json.loads(payload.decode("utf-8"))
                            except ValueError:
                                continue
                            run.metadata.append(obj)
                            if isinstance(obj, dict) and obj.get("type") == "event" and "t" in obj and "kind" in obj:
                                row = {k: v for k, v in obj.items() if k != "type"}
                                run.events.append(Event.from_json({**row, "origin": "server"}))
                        elif kind == Kind.ERROR:
                            run.errors.append(payload.decode("utf-8", "replace"))
                            note("server.error", message=run.errors[-1])

                receiver = asyncio.create_task(receive())
                writer = OggOpusWriter(protocol.SAMPLE_RATE)
                frame_s = frame_ms / 1000
                try:
                    for i in range(n_frames):
                        delay = i * frame_s - now()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        else:
                            run.max_send_lag_s = max(run.max_send_lag_s, -delay)
                            run.late_sends += int(-delay > frame_s)
                        if receiver.done() or (hang_up is not None and hang_up.is_set()):
                            break          # the server ended the session, or the user hung up
                        frame = up[i * n24:(i + 1) * n24]
                        if len(frame) < n24:
                            frame = np.concatenate([frame, np.zeros(n24 - len(frame), np.float32)])
                        data = writer.append_pcm(frame)
                        if data:
                            pieces = [data] if not split else [data[k:k + split] for k in range(0, len(data), split)]
                            for piece in pieces:
                                await ws.send_bytes(bytes([Kind.AUDIO]) + piece)
                        run.sent_s = (i + 1) * frame_s
                    if not receiver.done():
                        await asyncio.sleep(linger_s)
                finally:
                    if not ws.closed:
                        await ws.close()
                    try:
                        await asyncio.wait_for(receiver, 5)
                    except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError):
                        receiver.cancel()
                run.close_code = ws.close_code
    except aiohttp.WSServerHandshakeError as e:
        raise UserError(f"{url}: the server refused the WebSocket ({e.status} {e.message})") from None
    except (aiohttp.ClientConnectionError, OSError, asyncio.TimeoutError) as e:
        if t0 == 0.0:
            raise UserError(f"{url}: cannot reach a Moshi-protocol server ({type(e).__name__}: {e})") from None
        run.errors.append(f"connection: {type(e).__name__}: {e}")
    run.output = out[:max(len(audio), write_pos)]
    return run


def run_remote(url: str, audio: np.ndarray, **kw) -> RemoteRun:
    return asyncio.run(converse(url, audio, **kw))


def first_sound(audio: np.ndarray, after_s: float, threshold_db: float = -45.0, frame_ms: int = 20) -> float | None:
    """Time of the first frame at or after ``after_s`` louder than ``threshold_db`` (None: silence)."""
    n = frame_samples(frame_ms)
    for start in range(int(after_s * SAMPLE_RATE) // n * n, len(audio) - n + 1, n):
        if rms_dbfs(audio[start:start + n]) > threshold_db:
            return start / SAMPLE_RATE
    return None


def run_scenario(url: str, audio: np.ndarray, frame_ms: int = 20, token: str | None = None):
    """The bench's view of a remote agent: the same ``RunResult`` an in-process run gives.

    ``recorder`` holds the user's audio as sent and the agent's as heard (``output`` cut to the input's
    length); ``events`` the server's timeline plus the client's notes; CPU is this client's. A server
    that answers with an error (busy, bad audio, shutdown) fails the scenario, so a resumed run retries it.
    """
    import os

    from ..audio.frames import as_frame
    from ..audio.recorder import Recorder
    from ..runtime.runner import RunResult

    token = token if token is not None else os.environ.get("FULLDUPLEX_TOKEN") or None
    cpu0 = time.process_time()
    run = run_remote(url, audio, frame_ms=frame_ms, token=token)
    if run.errors:
        raise UserError(f"{url}: the server answered with an error: {'; '.join(run.errors)}")
    n = frame_samples(frame_ms)
    recorder = Recorder()
    output = run.output[:len(audio)]
    for i in range(0, len(audio), n):
        recorder.add(as_frame(audio[i:i + n], n), as_frame(output[i:i + n], n))
    summary = Event(run.sent_s, "client.summary", None, {
        "origin": "client", "url": url, "handshake_s": round(run.handshake_s, 3), "late_sends": run.late_sends,
        "received_audio_s": round(run.received_audio_s, 3), "gaps": run.gaps, "close_code": run.close_code,
        "server_stats": next((m for m in reversed(run.metadata) if m.get("type") == "stats"), None)})
    events = sorted(run.events + [summary], key=lambda e: e.t)
    return RunResult(events=events, recorder=recorder, duration_s=len(recorder.user) / SAMPLE_RATE,
                     late_frames=run.late_sends, cpu_s=time.process_time() - cpu0)
