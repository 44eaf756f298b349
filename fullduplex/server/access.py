"""Who may use the server: the bind check at start-up and the per-request checks (token, Origin, Host).

Nothing here knows about sessions or models; ``app.py`` calls ``access_error`` before every route (and
``ray_serve.py`` calls ``access_problem``, the same rules on a Starlette request).
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


def _supplied_token(headers, query) -> str:
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return query.get("token", "")


def _host_name(host: str) -> str:
    """The name in a Host header, without its port (``[::1]:8998`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def access_problem(host: str, headers, query, scfg: ServerConfig) -> tuple[int, str] | None:
    """The rules, on any web framework's request: ``host`` (the Host header), ``headers`` and ``query``
    (case-insensitive and plain mappings). (HTTP status, reason) when refused, None when allowed."""
    if is_loopback(scfg.host) and not is_loopback(_host_name(host)):
        return 403, f"this server only answers to loopback names, not {host}\n"
    if scfg.token and not hmac.compare_digest(_supplied_token(headers, query).encode(), scfg.token.encode()):
        return 401, "a valid token is required (?token=... or Authorization: Bearer)\n"
    origin = headers.get("Origin")
    if origin and "*" not in scfg.allow_origins and origin not in scfg.allow_origins:
        if urlsplit(origin).netloc.lower() != host.lower():
            return 403, f"origin {origin} is not allowed (see --allow-origin)\n"
    return None


def access_error(request: web.Request, scfg: ServerConfig) -> web.Response | None:
    """401 without the right token, 403 from a web page of another origin or (on a loopback bind) a
    Host that is not loopback (DNS rebinding: a page whose name resolves to 127.0.0.1); None when allowed."""
    problem = access_problem(request.host, request.headers, request.query, scfg)
    return None if problem is None else web.Response(status=problem[0], text=problem[1])
