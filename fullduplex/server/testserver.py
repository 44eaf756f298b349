"""``BackgroundServer``: the real server on an ephemeral loopback port, in a thread of this process.

For tests and benchmarks: enter it, talk to ``url`` / ``http``, read its state through ``call``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from aiohttp import web

from ..config import Config
from ..engines import ModelStack, make_agent
from .app import STATE, make_app
from .config import ServerConfig
from .connection import ServerState


class BackgroundServer:
    """The server on an ephemeral loopback port in a thread of this process (tests, benchmarks)."""

    def __init__(self, agent_name: str, models: ModelStack, cfg: Config | None = None,
                 scfg: ServerConfig | None = None, log: Callable[[str], None] = lambda msg: None) -> None:
        self.cfg = cfg or Config()
        self.scfg = scfg or ServerConfig(port=0)
        self.app = make_app(make_agent(agent_name, models, self.cfg), self.scfg, log)
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
