"""The test harness, shipped so that users can test their own agents the way we test ours: scripted
fake models for timing logic (never to claim a model capability) and a settled virtual clock."""

from .fakes import InstantStt, ScriptedLlm, ScriptedStack, ScriptedVad, ToneTts
from .harness import ScriptedRun, ScriptedSource, SettledClock, run_scripted, wait_idle

__all__ = ["InstantStt", "ScriptedLlm", "ScriptedRun", "ScriptedSource", "ScriptedStack", "ScriptedVad",
           "SettledClock", "ToneTts", "run_scripted", "wait_idle"]
