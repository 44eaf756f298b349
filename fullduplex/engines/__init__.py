"""The architectures, all behind one two-stream interface (``base.Agent``)."""

from __future__ import annotations

from ..config import Config
from ..errors import UserError
from .base import Agent, Session
from .cascade import SequentialAgent, StreamingAgent, StreamingClauseAgent
from .duplex import DuplexAgent, PredictiveAgent
from .models import ModelStack
from .moshi import MoshiAgent  # torch and moshi load only when the agent is prepared
from .parallel import ParallelAgent

AGENTS: dict[str, type[Agent]] = {cls.name: cls for cls in (
    SequentialAgent, StreamingAgent, StreamingClauseAgent, ParallelAgent, PredictiveAgent, DuplexAgent, MoshiAgent,
)}

DEFAULT_AGENT = "duplex"   # every command's default: the CPU full-duplex engine


def make_agent(name: str, models: ModelStack, cfg: Config) -> Agent:
    try:
        cls = AGENTS[name]
    except KeyError:
        raise UserError(f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)}") from None
    return cls(models, cfg)


__all__ = ["AGENTS", "DEFAULT_AGENT", "Agent", "ModelStack", "Session", "make_agent"]
