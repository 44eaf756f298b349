"""The architectures, all behind one two-stream interface (``base.Agent``)."""

from __future__ import annotations

from ..config import Config
from ..errors import UserError
from .base import Agent, Session
from .cascade import SequentialAgent
from .models import ModelStack

AGENTS: dict[str, type[Agent]] = {
    SequentialAgent.name: SequentialAgent,
}


def make_agent(name: str, models: ModelStack, cfg: Config) -> Agent:
    try:
        cls = AGENTS[name]
    except KeyError:
        raise UserError(f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)}") from None
    return cls(models, cfg)


__all__ = ["AGENTS", "Agent", "ModelStack", "Session", "make_agent"]
