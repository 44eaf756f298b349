"""The HTTP side: ``GET /api/chat`` (Moshi's protocol), ``GET /api/status``, and the web client.

Each WebSocket is a ``Connection``: it checks access, takes a slot (or answers "busy"), builds a fresh
agent on the shared ``ModelStack``, starts a ``ChatSession`` (its own thread and clock), then runs two
coroutines until either side ends: ``receive`` (checks every message, decodes Opus, feeds the session)
and ``send`` (drains the session's outbox into the socket). Nothing here runs a model.
"""

from __future__ import annotations

import asyncio
import fcntl
import hmac
import ipaddress
import itertools
import json
import signal
import socket
import struct
import sys
import termios
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import numpy as np
import sphn
from aiohttp import WSMsgType, web

from .. import __version__
from ..audio.resample import StreamResampler
from ..config import Config
from ..engines import ModelStack, make_agent
from ..errors import UserError
from ..events import Event
from . import protocol
from .config import ServerConfig
from .ogg import BadAudio, OggOpusChecker
from .protocol import Close, Kind, ProtocolError
from .record import SessionRecording
from .session import ChatSession

STATIC = Path(__file__).parent / "static"
STATE = web.AppKey("fullduplex_state", object)
OUR_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
           "img-src 'self' data:; media-src 'self' blob:; worker-src 'self' blob:; frame-ancestors 'none'")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(cfg: ServerConfig) -> None:
    if not is_loopback(cfg.host) and not cfg.token:
        raise UserError(f"--host {cfg.host} is reachable from other machines: set --token (or FULLDUPLEX_TOKEN) so "
                        "only people you give it to can talk to the agent")


class ServerState:
    """What every connection shares: the models, the slot count, and the live sessions."""

    def __init__(self, agent_name: str, models: ModelStack, cfg: Config, scfg: ServerConfig,
                 log: Callable[[str], None]) -> None:
        self.agent_name, self.models, self.cfg, self.scfg, self.log = agent_name, models, cfg, scfg, log
        self.connections: set[Connection] = set()
        self.active = 0
        self.refused = 0
        self.served = 0
        self.failed = 0
        self._ids = itertools.count(1)
        self.started = time.time()
        self.recent: deque[dict[str, Any]] = deque(maxlen=20)   # the last sessions that ended, for /api/status

    def try_acquire(self) -> bool:
        if self.active >= self.scfg.max_sessions:
            self.refused += 1
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1

    def new_id(self) -> str:
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{next(self._ids):04d}"

    def status(self) -> dict[str, Any]:
        return {"server": f"fullduplex {__version__}", "agent": self.agent_name, "max_sessions": self.scfg.max_sessions,
                "active": self.active, "served": self.served, "refused_busy": self.refused, "failed": self.failed,
                "uptime_s": round(time.time() - self.started, 1),
                "sessions": [c.session.info() for c in list(self.connections) if c.session is not None],
                "recent": list(self.recent)}


def _supplied_token(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query.get("token", "")


def _host_name(host: str) -> str:
    """The name in a Host header, without its port (``[::1]:8998`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def access_error(request: web.Request, scfg: ServerConfig) -> web.Response | None:
    """401 without the right token, 403 from a web page of another origin or (on a loopback bind) a
    Host that is not loopback (DNS rebinding: a page whose name resolves to 127.0.0.1); None when allowed."""
    if is_loopback(scfg.host) and not is_loopback(_host_name(request.host)):
        return web.Response(status=403, text=f"this server only answers to loopback names, not {request.host}\n")
    if scfg.token and not hmac.compare_digest(_supplied_token(request).encode(), scfg.token.encode()):
        return web.Response(status=401, text="a valid token is required (?token=... or Authorization: Bearer)\n")
    origin = request.headers.get("Origin")
    if origin and "*" not in scfg.allow_origins and origin not in scfg.allow_origins:
        if urlsplit(origin).netloc.lower() != request.host.lower():
            return web.Response(status=403, text=f"origin {origin} is not allowed (see --allow-origin)\n")
    return None


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
        agent = make_agent(st.agent_name, st.models, st.cfg)
        try:
            await asyncio.to_thread(agent.prepare)
        except UserError as e:
            agent.close()
            await self.fail(ProtocolError("unavailable", str(e), Close.INTERNAL))
            return
        recording = None
        if self.scfg.record_dir:
            recording = SessionRecording(Path(self.scfg.record_dir) / sid, self.scfg.record_flush_s)
        session = ChatSession(sid, agent, st.agent_name, st.cfg.runtime.frame_ms, self.scfg,
                              notify=lambda: loop.call_soon_threadsafe(self._wake.set),
                              on_end=lambda: loop.call_soon_threadsafe(self._ended.set),
                              recording=recording, send_metadata=self.request.query.get("metadata", "1") != "0")
        session.backlog_probe = self._backlog_probe()
        self.session = session
        try:
            await asyncio.to_thread(session.start)
        except Exception as e:   # the agent could not start: this client is told, the server goes on
            agent.close()
            if recording:
                recording.close({"agent": st.agent_name, "reason": f"agent failed to start: {e}"})
            self.session = None
            await self.fail(ProtocolError("internal", f"the agent failed to start: {e}", Close.INTERNAL))
            return
        st.log(f"session {sid}: started ({st.active}/{self.scfg.max_sessions} active) from {self.request.remote}")
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
            st.recent.append(session.info())
            st.log(f"session {sid}: ended ({session.ended_reason}); {json.dumps(session.stats.summary())}")

    async def _receive(self, session: ChatSession) -> None:
        checker = OggOpusChecker(channels=1)
        reader = sphn.OpusStreamReader(protocol.SAMPLE_RATE)
        down = StreamResampler(protocol.SAMPLE_RATE, 16_000)
        while True:
            try:
                msg = await self.ws.receive(timeout=self.scfg.idle_s)
            except (asyncio.TimeoutError, TimeoutError):
                raise ProtocolError("idle", f"nothing received for {self.scfg.idle_s:g} s") from None
            if msg.type == WSMsgType.BINARY:
                kind, payload = protocol.parse_client(msg.data, self.scfg.max_message_bytes)
                if kind == Kind.AUDIO:
                    try:
                        checker.feed(payload)
                        pcm = reader.append_bytes(payload)
                    except BadAudio as e:
                        raise ProtocolError("bad_audio", str(e)) from None
                    except (ValueError, RuntimeError) as e:
                        raise ProtocolError("bad_audio", f"cannot decode the Opus stream ({e})") from None
                    if pcm.size:
                        session.push_audio(down.push(np.asarray(pcm, np.float32).reshape(-1)))
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


async def chat(request: web.Request) -> web.StreamResponse:
    state: ServerState = request.app[STATE]
    denied = access_error(request, state.scfg)
    if denied is not None:
        state.log(f"refused {request.remote}: {denied.status} {denied.text.strip()}")
        return denied
    ws = web.WebSocketResponse(max_msg_size=state.scfg.hard_message_bytes, compress=False, autoping=True,
                               writer_limit=4096)
    await ws.prepare(request)
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and state.scfg.socket_sndbuf:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, state.scfg.socket_sndbuf)
        except OSError:
            pass
    conn = Connection(state, request, ws)
    if not state.try_acquire():
        state.log(f"busy: refused {request.remote} ({state.active}/{state.scfg.max_sessions} sessions)")
        await conn.fail(ProtocolError("busy", f"the server is at its limit of {state.scfg.max_sessions} concurrent "
                                              "session(s); try again later", Close.TRY_LATER))
        return ws
    state.connections.add(conn)
    try:
        await conn.run()
    finally:
        state.connections.discard(conn)
        state.release()
    return ws


async def status(request: web.Request) -> web.Response:
    state: ServerState = request.app[STATE]
    denied = access_error(request, state.scfg)
    return denied or web.json_response(state.status())


@web.middleware
async def security_headers(request: web.Request, handler):
    response = await handler(request)
    if not isinstance(response, web.WebSocketResponse):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")   # the page URL may carry ?token=
        if request.app[STATE].scfg.static_dir is None:
            response.headers.setdefault("Content-Security-Policy", OUR_CSP)
    return response


def make_app(agent_name: str, models: ModelStack, cfg: Config, scfg: ServerConfig,
             log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)) -> web.Application:
    app = web.Application(middlewares=[security_headers], client_max_size=64 * 1024)
    state = ServerState(agent_name, models, cfg, scfg, log)
    app[STATE] = state
    static = Path(scfg.static_dir).resolve() if scfg.static_dir else STATIC
    if not (static / "index.html").is_file():
        raise UserError(f"--static {static}: no index.html there")

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "index.html")

    async def on_shutdown(_app: web.Application) -> None:
        conns = list(state.connections)
        if conns:
            log(f"shutting down: ending {len(conns)} session(s)")
        await asyncio.gather(*(c.shutdown() for c in conns), return_exceptions=True)

    app.router.add_get("/api/chat", chat)
    app.router.add_get("/api/status", status)
    app.router.add_get("/", index)
    app.router.add_static("/", static, follow_symlinks=False, show_index=False)
    app.on_shutdown.append(on_shutdown)
    return app


def load_models(agent_name: str, cfg: Config) -> ModelStack:
    """Load every model the agent needs once (a throwaway instance's ``prepare``), for all sessions."""
    models = ModelStack(cfg)
    warm = make_agent(agent_name, models, cfg)
    try:
        warm.prepare()
    finally:
        warm.close()
    return models


async def _serve(app: web.Application, scfg: ServerConfig, ready: Callable[[str], None]) -> None:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=scfg.shutdown_s, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, scfg.host, scfg.port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise UserError(f"cannot listen on {scfg.host}:{scfg.port} ({e.strerror or e})") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = f"[{scfg.host}]" if ":" in scfg.host else scfg.host
    ready(f"http://{host}:{scfg.port}/")
    await stop.wait()
    await runner.cleanup()   # on_shutdown ends every session; their recordings are finished before exit


def serve(agent_name: str, cfg: Config, scfg: ServerConfig, ready: Callable[[str], None]) -> None:
    """Load the models, listen, and run until SIGTERM or SIGINT (then end sessions and recordings cleanly)."""
    check_bind(scfg)
    models = load_models(agent_name, cfg)
    asyncio.run(_serve(make_app(agent_name, models, cfg, scfg), scfg, ready))


class BackgroundServer:
    """The server on an ephemeral loopback port in a thread of this process (tests, benchmarks)."""

    def __init__(self, agent_name: str, models: ModelStack, cfg: Config | None = None,
                 scfg: ServerConfig | None = None, log: Callable[[str], None] = lambda msg: None) -> None:
        self.cfg = cfg or Config()
        self.scfg = scfg or ServerConfig(port=0)
        self.app = make_app(agent_name, models, self.cfg, self.scfg, log)
        self.state: ServerState = self.app[STATE]
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fullduplex-test-server", daemon=True)

    def __enter__(self) -> "BackgroundServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=self.scfg.shutdown_s,
                                     access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.scfg.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]   # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/chat"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (to read its state safely)."""
        async def run():
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def __exit__(self, *exc) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
