"""One WebSocket's life (``Connection``) and what every connection shares (``ServerState``).

A ``Connection`` opens a conversation on the server's one prepared ``Agent`` in a ``ChatSession`` (its
own thread and clock), then runs two coroutines until either side ends: ``_receive`` (checks every message,
decodes Opus, feeds the session) and ``_send`` (drains the session's outbox into the socket).
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import struct
import termios
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from aiohttp import WSMsgType, web

from .. import __version__
from ..audio.opus import OpusError
from ..audio.resample import StreamResampler
from ..engines import Agent
from ..engines.workers import lower_model_threads
from ..errors import Busy, UserError
from ..events import Event
from . import protocol
from .capacity import SessionCost
from .config import ServerConfig
from .loop_lag import LoopLag
from .ogg import BadAudio, OggOpusReader
from .protocol import Close, Kind, ProtocolError
from ..audio.live_recording import SessionRecording
from .session import ChatSession


class ServerState:
    """What every connection shares: the agent (its models loaded once), the slot count, the live sessions."""

    def __init__(self, agent: Agent, scfg: ServerConfig, log: Callable[[str], None], name: str = "") -> None:
        self.agent, self.scfg, self.log = agent, scfg, log
        lower_model_threads(scfg.model_nice)   # this process serves calls: the audio path before the models
        self.name = name            # a Ray replica's: in every session id (ids stay unique across replicas)
        self.agent_name, self.cfg = agent.name, agent.cfg
        self.connections: set[Connection] = set()
        self.active = 0
        self.refused = 0
        self.served = 0
        self.failed = 0
        self._ids = itertools.count(1)
        self.started = time.time()
        self.recent: deque[dict[str, Any]] = deque(maxlen=20)   # the last sessions that ended, for /api/status
        self.cost = SessionCost(scfg)   # what a conversation costs: the derived limit (capacity.py)
        self.loop_lag = LoopLag()       # how late the event loop runs (started with the app)

    @property
    def limit_source(self) -> str:
        """Where ``max_sessions`` comes from: the agent's slots, --max-sessions, or the measured cost."""
        if self.agent.capacity is not None:
            return "agent"
        return "set" if self.scfg.max_sessions is not None else "derived"

    @property
    def max_sessions(self) -> int:
        """The agent's own limit once it is prepared (a Moshi batch: its slots), else --max-sessions, else
        derived from the measured CPU cost of a conversation (capacity.py)."""
        source = self.limit_source
        if source == "agent":
            return self.agent.capacity
        return self.scfg.max_sessions if source == "set" else self.cost.estimate(self.held_cost()).limit

    def held_cost(self) -> list[tuple[float, float]]:
        """(accounted CPU s, conversation s) of each session held now."""
        return [(c.session.conversation.cpu.total_s, c.session.loop.duration_s)
                for c in list(self.connections) if c.session is not None]

    def capacity(self) -> dict[str, Any]:
        est = self.cost.estimate(self.held_cost())
        source = self.limit_source
        limit = est.limit if source == "derived" else self.max_sessions   # one estimate, not two
        return {"max_sessions": limit, "limit": source, "cores": self.cost.cores,
                "cpu_target": self.scfg.cpu_target, "session_cpu_per_s": round(est.cost, 4),
                "process_over_accounted": round(est.overhead, 3),
                "measured_s": round(est.measured_s, 1), "derived_limit": est.limit}

    def try_acquire(self) -> bool:
        if self.active >= self.max_sessions:
            self.refused += 1
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1

    def new_id(self) -> str:
        prefix = f"{self.name}-" if self.name else ""
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{prefix}{next(self._ids):04d}"

    def status(self) -> dict[str, Any]:
        return {"server": f"fullduplex {__version__}", "agent": self.agent_name, "max_sessions": self.max_sessions,
                "active": self.active, "served": self.served, "refused_busy": self.refused, "failed": self.failed,
                "uptime_s": round(time.time() - self.started, 1), "capacity": self.capacity(),
                "event_loop": self.loop_lag.state(),
                "shared_models": self.agent.models.sharing() if hasattr(self.agent.models, "sharing") else {},
                "sessions": [c.session.info() for c in list(self.connections) if c.session is not None],
                "recent": list(self.recent)}


async def serve_connection(state: ServerState, request: web.Request, ws: web.WebSocketResponse) -> None:
    """An accepted WebSocket: a session if a slot is free (run to its end), else 'busy' (0x05, close 1013).

    ``request`` and ``ws`` are aiohttp's, or anything that offers what ``Connection`` uses of them
    (``ray_serve.py`` adapts Starlette's WebSocket)."""
    conn = Connection(state, request, ws)
    if not state.try_acquire():
        limit = state.max_sessions
        why = ""
        if state.limit_source == "derived":
            cap = state.capacity()
            measured = f"measured over {cap['measured_s']:g} s of calls" if cap["measured_s"] else "assumed until measured"
            why = (f" (what {cap['cores']:g} cores hold at {cap['cpu_target']:.0%} use and "
                   f"{cap['session_cpu_per_s']:.2f} CPU-s per s a conversation, {measured})")
        state.log(f"busy: refused {request.remote} ({state.active}/{limit} sessions{why})")
        await conn.fail(ProtocolError("busy", f"the server is at its limit of {limit} concurrent "
                                              f"session(s){why}; try again later", Close.TRY_LATER))
        return
    state.connections.add(conn)
    try:
        await conn.run()
    finally:
        state.connections.discard(conn)
        state.release()


class Connection:
    def __init__(self, state: ServerState, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.state, self.request, self.ws = state, request, ws
        self.scfg = state.scfg
        self.session: ChatSession | None = None
        self._closing = False
        self._wake = asyncio.Event()
        self._ended = asyncio.Event()

    # -- the whole life of one connection -----------------------------------------------------------
    async def run(self) -> None:
        st = self.state
        loop = asyncio.get_running_loop()
        sid = st.new_id()
        try:   # a no-op once the server has prepared it at start-up
            await asyncio.to_thread(st.agent.prepare)
        except UserError as e:
            await self.fail(ProtocolError("unavailable", str(e), Close.INTERNAL))
            return
        recording = None
        if self.scfg.record_dir:
            recording = SessionRecording(Path(self.scfg.record_dir) / sid, self.scfg.record_flush_s)
        try:   # the conversation's state (a Moshi call takes a slot of the agent's batch)
            session = await asyncio.to_thread(
                ChatSession, sid, st.agent, self.scfg, notify=lambda: loop.call_soon_threadsafe(self._wake.set),
                on_end=lambda: loop.call_soon_threadsafe(self._ended.set), recording=recording,
                send_metadata=self.request.query.get("metadata", "1") != "0")
            session.backlog_probe = self._backlog_probe()
            self.session = session
            await asyncio.to_thread(session.start)
        except Busy as e:      # the agent itself is full (every Moshi slot taken): the same answer as the server's limit
            st.refused += 1
            if recording:
                recording.close({"agent": st.agent_name, "reason": f"busy: {e}"})
            self.session = None
            st.log(f"busy: refused {self.request.remote} ({e})")
            await self.fail(ProtocolError("busy", str(e), Close.TRY_LATER))
            return
        except Exception as e:   # the call could not start: this client is told, the server goes on
            if self.session is not None:
                self.session.conversation.close()
            if recording:
                recording.close({"agent": st.agent_name, "reason": f"agent failed to start: {e}"})
            self.session = None
            await self.fail(ProtocolError("internal", f"the agent failed to start: {e}", Close.INTERNAL))
            return
        st.log(f"session {sid}: started ({st.active}/{st.max_sessions} active) from {self.request.remote}")
        try:
            await self.ws.send_bytes(protocol.handshake())
            if session.send_metadata:
                await self.ws.send_bytes(protocol.metadata({
                    "type": "session", "session": sid, "agent": st.agent_name, "protocol": "moshi",
                    "server": f"fullduplex {__version__}", "sample_rate": protocol.SAMPLE_RATE,
                    "frame_ms": st.cfg.runtime.frame_ms, "recording": bool(recording)}))
            sender = asyncio.create_task(self._send())
            receiver = asyncio.create_task(self._receive(session))
            ended = asyncio.create_task(self._ended.wait())
            done, _ = await asyncio.wait({receiver, ended, sender}, return_when=asyncio.FIRST_COMPLETED)
            problem: ProtocolError | None = None
            if receiver in done and receiver.exception() is not None:
                exc = receiver.exception()
                problem = exc if isinstance(exc, ProtocolError) else ProtocolError("internal", str(exc), Close.INTERNAL)
            elif ended in done and session.failure:
                problem = ProtocolError(*session.failure, close=Close.POLICY if session.failure[0] == "slow_reader"
                                        else Close.INTERNAL)
            reason = str(problem) if problem else ("client disconnected" if receiver in done else "ended")
            session.stop(reason)
            for task in (sender, receiver, ended):
                task.cancel()
            await asyncio.gather(sender, receiver, ended, return_exceptions=True)
            if problem is not None:
                st.log(f"session {sid}: {problem}")
                await self.fail(problem)
        except ConnectionError:
            session.stop("client disconnected")
        finally:
            session.stop("connection closed")
            await asyncio.to_thread(session.join, 30.0)
            if not self.ws.closed:
                await self._close(Close.NORMAL, b"")
            st.served += 1
            st.failed += int(session.failure is not None)
            st.cost.estimate(st.held_cost())   # a sample of the process's overhead while this call still counts
            st.cost.add_ended(session.conversation.cpu.total_s, session.loop.duration_s)
            st.recent.append(session.info())
            st.log(f"session {sid}: ended ({session.ended_reason}); {json.dumps(session.summary())}")

    async def _receive(self, session: ChatSession) -> None:
        reader = OggOpusReader(protocol.SAMPLE_RATE)
        down = StreamResampler(protocol.SAMPLE_RATE, 16_000)
        while True:
            try:
                msg = await self.ws.receive(timeout=self.scfg.idle_s)
            except (asyncio.TimeoutError, TimeoutError):
                raise ProtocolError("idle", f"nothing received for {self.scfg.idle_s:g} s") from None
            if msg.type == WSMsgType.BINARY:
                kind, payload = protocol.parse_client(msg.data, self.scfg.max_message_bytes)
                if kind == Kind.AUDIO:
                    with session.conversation.cpu.measure("opus"):   # on the event loop: charged to this call
                        try:
                            pcm = reader.append_bytes(payload)
                        except BadAudio as e:
                            raise ProtocolError("bad_audio", str(e)) from None
                        except OpusError as e:
                            raise ProtocolError("bad_audio", f"cannot decode the Opus stream ({e})") from None
                        pcm = down.push(pcm) if pcm.size else pcm
                    if pcm.size:
                        session.push_audio(pcm)
                elif kind in (Kind.CONTROL, Kind.METADATA):
                    data = ({"action": protocol.CONTROL_ACTIONS[payload[0]]} if kind == Kind.CONTROL
                            else {"metadata": json.loads(payload.decode("utf-8"))})
                    session.events.add(Event(session.clock.now(), f"client.{kind.name.lower()}", None, data))
            elif msg.type == WSMsgType.TEXT:
                raise ProtocolError("bad_message", "a text frame; this protocol uses binary messages only",
                                    Close.UNSUPPORTED)
            elif msg.type == WSMsgType.ERROR:
                return            # the WebSocket layer already closed (e.g. 1009 above the hard size limit)
            else:                 # CLOSE, CLOSING, CLOSED
                return

    async def _send(self) -> None:
        assert self.session is not None
        outbox = self.session.outbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            for message in outbox.drain():
                await self.ws.send_bytes(message)

    def _backlog_probe(self) -> Callable[[], int]:
        """Bytes written for this client and not yet delivered: asyncio's buffer plus the kernel's queue."""
        transport = self.request.transport
        sock = transport.get_extra_info("socket") if transport else None
        fd = sock.fileno() if sock is not None else -1

        def probe() -> int:
            n = 0
            try:
                if transport is not None and not transport.is_closing():
                    n += transport.get_write_buffer_size()
                if fd >= 0:
                    n += struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            except (OSError, RuntimeError, AttributeError):
                pass
            return n
        return probe

    # -- ending it -----------------------------------------------------------------------------------
    async def fail(self, problem: ProtocolError) -> None:
        """Tell the client why (0x05), then close; a client that reads nothing is cut off after 2 s."""
        if self.ws.closed:
            return
        try:
            await asyncio.wait_for(self.ws.send_bytes(protocol.error(problem.code, problem.message)), 2.0)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            pass
        await self._close(problem.close, problem.code.encode())

    async def _close(self, code: int, message: bytes) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=message), 2.0)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            if self.request.transport is not None:
                self.request.transport.abort()

    async def shutdown(self) -> None:
        if self.session is not None:
            self.session.stop("server shutdown")
        await self.fail(ProtocolError("shutdown", "the server is shutting down", Close.GOING_AWAY))
