"""The guard in Ray Serve's HTTP proxy (``serve --ray``): a client whose replica vanished is told so.

Serve loads it in each proxy from ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (the proxy's middleware
hook), so this module stays small: it imports the protocol's framing and nothing else of the package.
A Ray started by ``fullduplex serve --ray`` has the variable set; on a cluster of your own, export it
before ``ray start``.
"""

from __future__ import annotations

from starlette.middleware import Middleware

from . import protocol
from .protocol import Close

GUARD_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
GUARD_PATH = "fullduplex.server.ray_guard.proxy_middlewares"


class LostReplicaGuard:
    """ASGI middleware in Serve's HTTP proxy. A chat WebSocket that the replica accepted and that ends
    without the replica closing it (the replica died, or was stopped at the end of its drain) gets
    ``0x05 replica_lost`` and close 1011, like any other error of the protocol."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket" or not scope.get("path", "").endswith("/api/chat"):
            await self.app(scope, receive, send)
            return
        seen = {"accepted": False, "closed": False, "client_left": False}

        async def watched_send(message) -> None:
            if message["type"] == "websocket.accept":
                seen["accepted"] = True
            elif message["type"] == "websocket.close":
                seen["closed"] = True
            await send(message)

        async def watched_receive():
            message = await receive()
            if message["type"] == "websocket.disconnect":
                seen["client_left"] = True
            return message

        try:
            await self.app(scope, watched_receive, watched_send)
        finally:
            if seen["accepted"] and not seen["closed"] and not seen["client_left"]:
                try:
                    await send({"type": "websocket.send", "bytes": protocol.error(
                        "replica_lost", "the replica running this conversation stopped; reconnect to start a new one")})
                    await send({"type": "websocket.close", "code": int(Close.INTERNAL), "reason": "replica_lost"})
                except Exception:
                    pass


def proxy_middlewares() -> list[Middleware]:
    """Serve's proxy calls this (``GUARD_ENV``) for the middlewares it wraps every request in."""
    return [Middleware(LostReplicaGuard)]
