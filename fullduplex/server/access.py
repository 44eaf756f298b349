"""Who may use the server: the bind check at start-up and the per-request checks (token, Origin, Host).

Nothing here knows about sessions or models; ``app.py`` calls ``access_error`` before every route.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from ..errors import UserError
from .config import ServerConfig


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
