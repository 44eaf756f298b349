"""The HTTP side: ``GET /api/chat`` (Moshi's protocol), ``GET /api/status``, the web client, and ``serve``.

Every route checks access first (``access.py``); each accepted WebSocket takes a slot (or is answered
"busy") and becomes a ``Connection`` (``connection.py``), a conversation on the one ``Agent`` that
``serve`` prepares (loads and warms) before it listens. Nothing here runs a model.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path
from typing import Callable

from aiohttp import web

from ..config import Config
from ..engines import Agent, ModelStack, make_agent
from ..errors import UserError
from .access import access_error, check_bind
from .config import ServerConfig
from .connection import ServerState, serve_connection

STATIC = Path(__file__).parent / "static"
STATE = web.AppKey("fullduplex_state", object)
OUR_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
           "img-src 'self' data:; media-src 'self' blob:; worker-src 'self' blob:; frame-ancestors 'none'")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"}   # the page URL may carry ?token=


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
    await serve_connection(state, request, ws)
    return ws


async def status(request: web.Request) -> web.Response:
    state: ServerState = request.app[STATE]
    denied = access_error(request, state.scfg)
    return denied or web.json_response(state.status())


@web.middleware
async def security_headers(request: web.Request, handler):
    response = await handler(request)
    if not isinstance(response, web.WebSocketResponse):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.app[STATE].scfg.static_dir is None:
            response.headers.setdefault("Content-Security-Policy", OUR_CSP)
    return response


def make_app(agent: Agent, scfg: ServerConfig,
             log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)) -> web.Application:
    """Every session is a conversation on ``agent`` (prepared on the first connection if not before)."""
    app = web.Application(middlewares=[security_headers], client_max_size=64 * 1024)
    state = ServerState(agent, scfg, log)
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

    async def watch_loop(_app: web.Application):
        task = asyncio.create_task(state.loop_lag.run())
        yield
        task.cancel()

    app.cleanup_ctx.append(watch_loop)
    app.router.add_get("/api/chat", chat)
    app.router.add_get("/api/status", status)
    app.router.add_get("/", index)
    app.router.add_static("/", static, follow_symlinks=False, show_index=False)
    app.on_shutdown.append(on_shutdown)
    return app


def load_agent(agent_name: str, cfg: Config) -> Agent:
    """The agent every session talks to, its models loaded and warmed once, before the server listens."""
    agent = make_agent(agent_name, ModelStack(cfg), cfg)
    agent.prepare()
    return agent


async def _serve(app: web.Application, scfg: ServerConfig, ready: Callable[[str, int], None]) -> None:
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
    ready(f"http://{host}:{scfg.port}/", app[STATE].max_sessions)   # Moshi: its batch's slots
    await stop.wait()
    await runner.cleanup()   # on_shutdown ends every session; their recordings are finished before exit


def serve(agent_name: str, cfg: Config, scfg: ServerConfig, ready: Callable[[str, int], None]) -> None:
    """Load the models, listen (then ``ready(url, max_sessions)``), and run until SIGTERM or SIGINT (then
    end sessions and recordings cleanly)."""
    check_bind(scfg)
    asyncio.run(_serve(make_app(load_agent(agent_name, cfg), scfg), scfg, ready))
