"""The architectures, all behind one two-stream interface: an ``Agent`` (configuration + loaded models)
opens ``Conversation``s (all the state of one call); each architecture is a ``Conversation`` type,
named in ``AGENTS``."""

from __future__ import annotations

from ..config import Config
from ..errors import UserError
from .base import Agent, Conversation
from .cascade import SequentialConversation, StreamingClauseConversation, StreamingConversation
from .duplex import DuplexConversation, PredictiveConversation
from .moshi import MoshiConversation  # torch and moshi load only when the agent is prepared
from .parallel import ParallelConversation
from .stack import ModelStack

AGENTS: dict[str, type[Conversation]] = {cls.name: cls for cls in (
    SequentialConversation, StreamingConversation, StreamingClauseConversation, ParallelConversation,
    PredictiveConversation, DuplexConversation, MoshiConversation,
)}

DEFAULT_AGENT = "duplex"   # every command's default: the CPU full-duplex engine


def make_agent(name: str, models: ModelStack, cfg: Config) -> Agent:
    """The agent ``name`` on ``models`` (not prepared yet: ``prepare()`` it before the clock starts)."""
    try:
        kind = AGENTS[name]
    except KeyError:
        raise UserError(f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)}") from None
    return Agent(kind, models, cfg)


__all__ = ["AGENTS", "DEFAULT_AGENT", "Agent", "Conversation", "ModelStack", "make_agent"]
