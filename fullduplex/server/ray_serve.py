"""``fullduplex serve --ray``: the same server as Ray Serve replicas, on one machine or a cluster.

How a WebSocket reaches a conversation: Serve's HTTP proxy (one per node) takes ``GET /api/chat`` and
hands it to one replica of the ``chat`` deployment, chosen by Serve's router (the less busy of two), where
it stays for its whole life. The replica is an ordinary server of its own: it prepared one ``Agent``
when it started (models loaded once per replica) and keeps a ``ServerState`` of ``K`` session slots;
``chat`` checks access with the same rules (``access.access_problem``), accepts, and hands the socket,
through a thin adapter (``StarletteSocket``: what ``Connection`` uses of aiohttp's WebSocket), to the
plain server's ``serve_connection``: the same session, protocol, bounds and 'busy' answer.

Capacity: Serve lets a replica hold ``K + headroom`` requests (``max_ongoing_requests``), so a client
beyond a full cluster still reaches a replica, which answers it 'busy' (0x05, close 1013) itself;
Serve's own queue limit (``max_queued_requests``, an HTTP 500 at the handshake) is not used. The router
sees a replica as full only at ``K + headroom``, so its picks can reach a full replica: the proxies' guard
routes a 'busy' again (``ray_guard.py``), and ``PROXY_ENV`` turns off the router's preference for the
proxy's own node. Autoscaling aims at 3/4 of ``K`` per replica. A replica that Serve scales down gets no
new sessions and keeps its live ones for up to ``drain_s`` (``graceful_shutdown_timeout_s``), then it
is stopped and the guard tells its remaining clients ('replica_lost').

Faults: a replica that dies takes only its own sessions; the proxy's guard (``LostReplicaGuard``, an
ASGI middleware in Serve's proxy) tells each of their clients (0x05 ``replica_lost``, close 1011), and
Serve routes new clients to the live replicas (and starts a replacement).

Status: every replica reports its ``ServerState.status()`` to a one-replica ``status`` deployment
(``StatusBoard``) every second; ``/api/status`` on any replica answers the sum over replicas, each
replica's own numbers, and the replicas that stopped reporting (lost: their counts stay in the sums).
"""

import asyncio
import os
import signal
import sys
import time
from typing import Any, Callable, NamedTuple

import ray
from aiohttp import WSMsgType
from fastapi import FastAPI, Request, WebSocket
from ray import serve
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from .. import __version__
from ..config import Config
from ..engines import Agent, ModelStack, make_agent
from ..errors import UserError
from .access import access_problem, check_bind
from .app import OUR_CSP, SECURITY_HEADERS, STATIC
from .config import ServerConfig
from .connection import ServerState, serve_connection
from .protocol import Close
from .ray_guard import GUARD_ENV, GUARD_PATH

APP_NAME = "fullduplex"
# What each node's proxy needs (a cluster of your own: export them before `ray start`): the guard, and
# no preference for a replica on the proxy's own node. Serve's router tries that replica first and sends
# to it while it holds fewer than ``max_ongoing_requests`` (K + headroom), so a full replica on the
# proxy's node answers 'busy' to every new client of that node while other nodes have room (measured:
# 4 tries in a row on one full replica); a hop to another node costs a millisecond or two.
PROXY_ENV = {GUARD_ENV: GUARD_PATH, "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0",
             "RAY_SERVE_PROXY_PREFER_LOCAL_AZ_ROUTING": "0"}
HEARTBEAT_S = 1.0        # each replica reports its state this often
LOST_AFTER_S = 5.0       # a replica silent this long is counted lost (its counts kept in the sums)


# -- Starlette's WebSocket as ``Connection`` sees aiohttp's --------------------------------------------

class _Message(NamedTuple):
    type: WSMsgType
    data: Any
    extra: Any = None


class RequestView:
    """What ``Connection`` reads of the request: the query, the peer; no transport (no socket backlog)."""

    transport = None

    def __init__(self, websocket: WebSocket) -> None:
        self.query = websocket.query_params
        self.headers = websocket.headers
        self.host = websocket.headers.get("host", "")
        self.remote = websocket.client.host if websocket.client else None


class StarletteSocket:
    """The part of aiohttp's ``WebSocketResponse`` that ``Connection`` uses, over Starlette's WebSocket."""

    def __init__(self, websocket: WebSocket, hard_bytes: int) -> None:
        self.ws, self.hard_bytes = websocket, hard_bytes
        self.closed = False

    async def receive(self, timeout: float | None = None) -> _Message:
        if self.closed:
            return _Message(WSMsgType.CLOSED, None)
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        if message["type"] == "websocket.disconnect":
            self.closed = True
            return _Message(WSMsgType.CLOSE, message.get("code", 1000))
        data = message.get("bytes")
        if data is None:
            return _Message(WSMsgType.TEXT, message.get("text"))
        if len(data) > self.hard_bytes:       # aiohttp's max_msg_size: closed (1009) without reading it
            await self.close(Close.TOO_BIG, b"too_big")
            return _Message(WSMsgType.ERROR, None)
        return _Message(WSMsgType.BINARY, data)

    async def send_bytes(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("the WebSocket is closed")
        try:
            await self.ws.send_bytes(data)
        except Exception as e:   # Starlette: WebSocketDisconnect, RuntimeError; Ray: a lost proxy
            self.closed = True
            raise ConnectionResetError(f"cannot send ({type(e).__name__})") from None

    async def close(self, code: int = 1000, message: bytes = b"") -> bool:
        if self.closed:
            return False
        self.closed = True
        try:
            await self.ws.close(code=int(code), reason=message.decode("utf-8", "replace"))
        except Exception:
            pass
        return True


async def _deny(websocket: WebSocket, status: int, text: str) -> None:
    """Refuse a WebSocket before accepting it: the HTTP status where the server supports denial
    responses, else a close before the handshake (uvicorn answers it with 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(PlainTextResponse(text, status_code=status))
    else:
        await websocket.close(code=Close.POLICY, reason=text.strip()[:120])


# -- the status board: one small replica the chat replicas report to ----------------------------------

QUIET = {"enable_access_log": False, "log_level": "WARNING"}


# on the head node: it is never scaled away, and a worker node's count of replicas (which Serve reads to
# pick the replica it removes) is then the chat replicas only
@serve.deployment(name="status", num_replicas=1, max_ongoing_requests=1000, logging_config=QUIET,
                  ray_actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}})
class StatusBoard:
    def __init__(self) -> None:
        self.reports: dict[str, tuple[float, dict]] = {}
        self.lost: dict[str, dict] = {}
        self.stopping = False

    def report(self, replica: str, status: dict) -> bool:
        """A replica's latest state; answers whether the server is stopping (end every session)."""
        self.reports[replica] = (time.monotonic(), status)
        self.lost.pop(replica, None)
        return self.stopping

    def leave(self, replica: str) -> None:
        self.reports.pop(replica, None)

    def stop(self) -> None:
        self.stopping = True

    def summary(self) -> dict:
        now = time.monotonic()
        for replica, (t, status) in list(self.reports.items()):
            if now - t > LOST_AFTER_S:
                self.lost[replica] = status
                del self.reports[replica]
        live = [status for _, status in self.reports.values()]
        everyone = live + list(self.lost.values())
        return {
            "replicas": len(live), "replicas_lost": len(self.lost),
            "max_sessions": sum(s["max_sessions"] for s in live),
            "active": sum(s["active"] for s in live),
            "served": sum(s["served"] for s in everyone),
            "refused_busy": sum(s["refused_busy"] for s in everyone),
            "failed": sum(s["failed"] for s in everyone),
            "per_replica": sorted(live, key=lambda s: s["replica"]),
            "lost": sorted(({k: s[k] for k in ("replica", "node", "pid", "active", "served", "refused_busy")}
                            for s in self.lost.values()), key=lambda s: s["replica"]),
        }


# -- a chat replica: one prepared agent, K sessions ----------------------------------------------------

api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@serve.deployment(name="chat", logging_config=QUIET)
@serve.ingress(api)
class ChatReplica:
    async def __init__(self, agent_name: str, cfg: Config, scfg: ServerConfig, board,
                       agent_factory: Callable[[], Agent] | None = None) -> None:
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id if context is not None else f"local{os.getpid()}"
        agent = agent_factory() if agent_factory else make_agent(agent_name, ModelStack(cfg), cfg)
        await asyncio.to_thread(agent.prepare)          # its models, once per replica
        self.state = ServerState(agent, scfg, _log, name=self.replica)
        self.board = board
        self.node = ray.get_runtime_context().get_node_id()
        self.pid = os.getpid()
        self._stopping = False
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        _log(f"replica {self.replica} (pid {self.pid}): agent '{agent.name}' ready, "
             f"at most {self.state.max_sessions} session(s)")

    def _status(self) -> dict:
        return {**self.state.status(), "replica": self.replica, "node": self.node, "pid": self.pid}

    async def _beat(self) -> None:
        while True:
            try:
                stopping = await self.board.report.remote(self.replica, self._status())
                if stopping and not self._stopping:
                    self._stopping = True
                    await asyncio.gather(*(c.shutdown() for c in list(self.state.connections)),
                                         return_exceptions=True)
            except Exception as e:   # the board restarting: report again next beat
                _log(f"replica {self.replica}: status report failed ({type(e).__name__}: {e})")
            await asyncio.sleep(HEARTBEAT_S)

    def _denied(self, headers, query) -> tuple[int, str] | None:
        return access_problem(headers.get("host", ""), headers, query, self.state.scfg)

    @api.websocket("/api/chat")
    async def chat(self, websocket: WebSocket) -> None:
        denied = self._denied(websocket.headers, websocket.query_params)
        if denied is not None:
            self.state.log(f"refused {websocket.client.host if websocket.client else '?'}: {denied[0]} "
                           f"{denied[1].strip()}")
            await _deny(websocket, *denied)
            return
        await websocket.accept()
        await serve_connection(self.state, RequestView(websocket),
                               StarletteSocket(websocket, self.state.scfg.hard_message_bytes))

    @api.get("/api/status")
    async def status(self, request: Request) -> Response:
        denied = self._denied(request.headers, request.query_params)
        if denied is not None:
            return PlainTextResponse(denied[1], status_code=denied[0])
        await self.board.report.remote(self.replica, self._status())   # this replica's numbers are fresh
        summary = await self.board.summary.remote()
        return JSONResponse({"server": f"fullduplex {__version__} on Ray Serve", "agent": self.state.agent_name,
                             "answered_by": self.replica, **summary})

    @api.get("/{name:path}")
    async def static(self, name: str, request: Request) -> Response:
        denied = self._denied(request.headers, request.query_params)
        if denied is not None:
            return PlainTextResponse(denied[1], status_code=denied[0])
        name = name or "index.html"
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in files:
            return PlainTextResponse("not found\n", status_code=404)
        return FileResponse(files[name], headers={**SECURITY_HEADERS, "Content-Security-Policy": OUR_CSP})

    async def __del__(self) -> None:
        """Serve stops this replica once its sessions have ended (or at the drain bound, without this)."""
        self._heartbeat.cancel()
        try:   # not counted lost; bounded: the board may be going away with the whole application
            await asyncio.wait_for(self.board.leave.remote(self.replica), 2.0)
        except Exception:
            pass


# -- building and running it -----------------------------------------------------------------------

class Plan(NamedTuple):
    replicas: int | None                 # fixed count, or None with autoscale
    autoscale: tuple[int, int] | None    # (min, max)
    sessions: int                        # K: sessions per replica
    drain_s: float                       # graceful_shutdown_timeout_s
    gpus: float = 0.0                    # per replica (Moshi on CUDA: 1)
    # Serve waits 30 s before adding a replica and 600 s before removing one; calls beyond the replicas
    # are refused meanwhile, so up is quick (a replica's models take seconds to load anyway) and down
    # waits a minute of lower load (a call is minutes long: a gap between calls is not a trend)
    scale_delays_s: tuple[float, float] = (5.0, 60.0)
    look_back_s: float = 10.0            # the load the autoscaler acts on: ongoing sessions, averaged this long

    @property
    def headroom(self) -> int:
        """Requests a replica may hold beyond its sessions: the short 'busy' answers."""
        return max(2, self.sessions)

    def deployment_options(self) -> dict:
        opts: dict[str, Any] = {
            "max_ongoing_requests": self.sessions + self.headroom,
            "graceful_shutdown_timeout_s": self.drain_s,
            "graceful_shutdown_wait_loop_s": 1.0,
            "ray_actor_options": {"num_cpus": 1, **({"num_gpus": self.gpus} if self.gpus else {})},
        }
        if self.autoscale:
            lo, hi = self.autoscale
            up_s, down_s = self.scale_delays_s
            opts["autoscaling_config"] = {"min_replicas": lo, "max_replicas": hi, "initial_replicas": lo,
                                          "target_ongoing_requests": 0.75 * self.sessions,
                                          "upscale_delay_s": up_s, "downscale_delay_s": down_s,
                                          "look_back_period_s": self.look_back_s,
                                          "metrics_interval_s": min(2.0, self.look_back_s)}
        else:
            opts["num_replicas"] = self.replicas
        return opts

    @property
    def most_sessions(self) -> int:
        return self.sessions * (self.autoscale[1] if self.autoscale else self.replicas or 1)


def build_app(agent_name: str, cfg: Config, scfg: ServerConfig, plan: Plan,
              agent_factory: Callable[[], Agent] | None = None):
    """The Serve application: the chat deployment (its replicas) and the status board it reports to."""
    # --record DIR: each replica writes its own sessions' folders there, on its own node's disk. A worker
    # shares the caller's working directory only in a local Ray started here; joining a cluster
    # (--address), it is where `ray start` ran: so the path is made absolute here
    record_dir = os.path.abspath(scfg.record_dir) if scfg.record_dir else None
    scfg = ServerConfig(**{**scfg.__dict__, "max_sessions": plan.sessions, "record_dir": record_dir})
    chat = ChatReplica.options(**plan.deployment_options())
    return chat.bind(agent_name, cfg, scfg, StatusBoard.bind(), agent_factory)


def gpus_per_replica(agent_name: str, cfg: Config) -> float:
    """One GPU per replica for Moshi on CUDA (``--device cuda[:N]``, or ``auto`` on a cluster with GPUs)."""
    if agent_name != "moshi":
        return 0.0
    device = cfg.moshi.device
    if device.startswith("cuda"):
        return 1.0
    return 1.0 if device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def start(address: str | None, scfg: ServerConfig) -> bool:
    """Connect to Ray (``address``: an existing cluster; None: a local one, started here) and start
    Serve's HTTP proxy on the server's host and port with the lost-replica guard. True when this process
    started Ray itself."""
    ours = not address and not ray.is_initialized()
    for name, value in PROXY_ENV.items():           # inherited by the local Ray this starts (its proxies)
        os.environ.setdefault(name, value)
    if not ray.is_initialized():
        try:
            ray.init(address=address or None, namespace=APP_NAME, include_dashboard=False,
                     logging_level="warning", log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            auth = "" if os.environ.get("RAY_AUTH_MODE") == "token" else (
                "; a cluster from `ray start` (Ray >= 2.59) may ask for its token: export RAY_AUTH_MODE=token here, "
                "with the token of `ray get-auth-token` on the head in ~/.ray/auth_token")
            raise UserError(f"--address {address}: cannot join the Ray cluster ({e}){auth}") from None
    serve.start(http_options={"host": scfg.host, "port": scfg.port}, logging_config=QUIET)
    return ours


def run(agent_name: str, cfg: Config, scfg: ServerConfig, plan: Plan, address: str | None,
        ready: Callable[[str, int], None], agent_factory: Callable[[], Agent] | None = None) -> None:
    """Deploy, then ``ready(url, most_sessions)``, and run until SIGTERM or SIGINT: then every replica
    ends its sessions ('shutdown', close 1001; recordings finished) and the application is deleted."""
    check_bind(scfg)
    ours = start(address, scfg)
    if agent_name == "moshi":
        plan = plan._replace(gpus=gpus_per_replica(agent_name, cfg))
    serve.run(build_app(agent_name, cfg, scfg, plan, agent_factory), name=APP_NAME, route_prefix="/")
    host = f"[{scfg.host}]" if ":" in scfg.host else scfg.host
    ready(f"http://{host}:{scfg.port}/", plan.most_sessions)
    stop = {"now": False}

    def on_signal(_sig, _frame) -> None:
        stop["now"] = True
    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop["now"]:
            time.sleep(0.2)
        stop_sessions(scfg.shutdown_s)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        serve.delete(APP_NAME)
        if ours:
            serve.shutdown()
            ray.shutdown()


def stop_sessions(limit_s: float) -> None:
    """Every replica ends its sessions at its next report; wait (up to ``limit_s`` + a beat) for none left."""
    board = serve.get_deployment_handle("status", app_name=APP_NAME)
    board.stop.remote().result()
    deadline = time.monotonic() + limit_s + 2 * HEARTBEAT_S
    while time.monotonic() < deadline:
        if board.summary.remote().result()["active"] == 0:
            return
        time.sleep(0.2)
