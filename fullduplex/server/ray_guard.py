"""The guard in Ray Serve's HTTP proxy (``serve --ray``): a chat WebSocket's first answer, and its end.

Two things only the proxy can do for a client, because only it sees every replica's answer:

- **A full replica is not the last word.** Serve's router picks a replica on queue lengths it caches
  (and each node's proxy has its own cache), so a client can reach a replica whose K sessions are taken
  while another has room: measured, two clients at the same instant on two one-session replicas, one
  was refused. The guard holds the replica's ``websocket.accept`` until its first message: the
  handshake (0x00) goes through with the accept; a ``busy`` answer (0x05) is swallowed and the request
  is routed again (the router has learnt that replica's length from the refusal), up to ``RETRIES``
  times; only the last 'busy' reaches the client. The client's ``websocket.connect`` is replayed to each
  try. Each refusal still counts in that replica's ``refused_busy``.
- **A replica that vanished is said.** A chat WebSocket that the replica accepted and that ends
  without the replica closing it (the replica died, or was stopped at the end of its drain) gets
  ``0x05 replica_lost`` and close 1011, like any other error of the protocol.

Serve loads it in each proxy from ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (the proxy's middleware
hook), so this module stays small: it imports the protocol's framing and nothing else of the package.
A Ray started by ``fullduplex serve --ray`` has the variable set; on a cluster of your own, export it
before ``ray start``.
"""

from __future__ import annotations

from starlette.middleware import Middleware

from . import protocol
from .protocol import Close, Kind

GUARD_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
GUARD_PATH = "fullduplex.server.ray_guard.proxy_middlewares"
RETRIES = 3                    # a 'busy' answer is routed again this many times before the client sees it
BUSY = protocol.pack(Kind.ERROR, b"busy:")   # how a 'busy' answer starts


class _Try:
    """One routing of a chat request to a replica, as the guard sees it."""

    def __init__(self, receive, send, connect: dict | None, last: bool) -> None:
        self._receive, self._send, self.connect, self.last = receive, send, connect, last
        self.accept: dict | None = None     # the replica's accept, held until its first message
        self.started = False                # the client got this try's answer: it is the call
        self.busy = False                   # the replica answered 'busy' and this is not the last try
        self.ended = False                  # the replica closed the WebSocket (or denied it) itself
        self.client_left = False

    async def receive(self) -> dict:
        if self.connect is not None:                         # replayed: the client sent it once
            message, self.connect = self.connect, None
            return message
        message = await self._receive()
        self.client_left |= message["type"] == "websocket.disconnect"
        return message

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "websocket.accept" and not self.started:
            self.accept = message
            return
        if self.busy:                                        # the close after a swallowed 'busy'
            return
        if not self.started:
            if kind == "websocket.send" and (message.get("bytes") or b"").startswith(BUSY) and not self.last:
                self.busy = True
                return
            if self.accept is not None:
                await self._send(self.accept)
            self.started = True
        self.ended |= kind == "websocket.close" or kind.startswith("websocket.http.")
        await self._send(message)

    @property
    def lost(self) -> bool:
        """The replica accepted and went away without a word."""
        return self.accept is not None and not (self.ended or self.busy or self.client_left)


class LostReplicaGuard:
    """ASGI middleware in Serve's HTTP proxy, for ``/api/chat`` WebSockets (see the module's text)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket" or not scope.get("path", "").endswith("/api/chat"):
            await self.app(scope, receive, send)
            return
        for attempt in range(RETRIES + 1):
            tried = _Try(receive, send, connect={"type": "websocket.connect"} if attempt else None,
                         last=attempt == RETRIES)
            try:
                await self.app(scope, tried.receive, tried.send)
            finally:
                if tried.lost:
                    await _say_lost(send, tried)
            if not tried.busy or tried.client_left:
                return


async def _say_lost(send, tried: _Try) -> None:
    try:
        if not tried.started:                                # accepted, then gone before its first message
            await send(tried.accept)
        await send({"type": "websocket.send", "bytes": protocol.error(
            "replica_lost", "the replica running this conversation stopped; reconnect to start a new one")})
        await send({"type": "websocket.close", "code": int(Close.INTERNAL), "reason": "replica_lost"})
    except Exception:
        pass


def proxy_middlewares() -> list[Middleware]:
    """Serve's proxy calls this (``GUARD_ENV``) for the middlewares it wraps every request in."""
    return [Middleware(LostReplicaGuard)]
