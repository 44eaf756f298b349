"""The structure: one agent serves many conversations, a conversation never loads a model, and the
package's arrows only point downwards."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import numpy as np
import pytest

from fullduplex.config import Config
from fullduplex.engines import make_agent
from fullduplex.testing import ScriptedLlm, ScriptedStack, run_scripted

# A user who asks, is answered, talks over the answer, then asks again (speech spans, seconds).
SPANS = [(0.5, 2.0), (3.1, 4.6), (6.5, 7.5)]
CPU_AGENTS = ("sequential", "streaming", "streaming-clause", "parallel", "predictive", "duplex")


def stack() -> ScriptedStack:
    s = ScriptedStack(SPANS, llm=ScriptedLlm("Sure. It opens at nine. Anything else?"))
    s.stt.text = "When does the library open?"
    return s


def signature(run) -> tuple:
    """What a run did: its events (in a canonical order: a worker and the audio path may stamp the same
    instant in either order) and its audio. Wall-clock durations (``*elapsed_s``) are not the agent's doing."""
    events = sorted((round(e.t, 4), e.kind, e.turn,
                     tuple(sorted((k, str(v)) for k, v in e.data.items() if not k.endswith("elapsed_s"))))
                    for e in run.events)
    return events, np.round(run.output, 5).tobytes()


@pytest.mark.parametrize("name", CPU_AGENTS)
def test_two_conversations_on_one_agent_are_each_as_if_alone(name):
    agent = make_agent(name, stack(), Config())
    agent.prepare()
    alone = signature(run_scripted(agent, seconds=10.0))
    results = {}

    def call(k):
        results[k] = signature(run_scripted(agent, seconds=10.0))

    threads = [threading.Thread(target=call, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert results[0] == alone and results[1] == alone
    assert any(kind == "playback.start" for _, kind, _, _ in alone[0]), "the scripted call was answered"


@pytest.mark.parametrize("name", CPU_AGENTS)
def test_a_conversation_never_builds_a_model(name):
    models = stack()
    agent = make_agent(name, models, Config())
    assert not agent.prepared
    conversation = agent.conversation()          # prepares the agent first: nobody steps an unloaded one
    assert agent.prepared
    conversation.close()
    loaded = list(models.builds)
    assert loaded, "prepare() loaded the architecture's models"
    run = run_scripted(agent, seconds=10.0)
    assert models.builds == loaded, f"built during the call: {models.builds[len(loaded):]}"
    assert run.kinds("playback.start")


@pytest.mark.parametrize("name", CPU_AGENTS)
def test_state_prints_in_one_place(name):
    conversation = make_agent(name, stack(), Config()).conversation()
    state = conversation.state()
    conversation.close()
    assert state["closed"] is False and all(isinstance(k, str) for k in state)
    assert (state["user"] is None and state["reply"] is None) if name in ("duplex", "predictive") \
        else state["phase"] == "listening"


# -- the import layers ---------------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[1] / "fullduplex"
LAYERS = {  # lowest first; a module may import its own layer and the ones below
    "": 0, "errors": 0, "config": 0, "events": 0, "textnorm": 0, "timebase": 0,
    "audio": 1, "models": 2, "turn": 3, "engines": 4, "runtime": 5,
    "server": 6, "testing": 6, "bench": 7, "cli": 8, "__main__": 8,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _layer(module: str) -> int:
    top = module.split(".")[0]
    assert top in LAYERS, f"fullduplex.{module}: give its package a layer in this test"
    return LAYERS[top]


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported fullduplex module, at module level?) for every import in the file."""
    tree = ast.parse(path.read_text())
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("fullduplex"):
                target = node.module.removeprefix("fullduplex").lstrip(".")
            else:
                continue
            names = [f"{target}.{a.name}".lstrip(".") if f"{target}.{a.name}".lstrip(".") in modules else target
                     for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("fullduplex").lstrip(".") for a in node.names if a.name.startswith("fullduplex")]
        for name in names:
            found.append((name, id(node) in top_level))
    return found


def test_no_module_imports_a_higher_layer_and_there_are_no_cycles():
    modules = _modules()
    upward, graph = [], {m: set() for m in modules}
    for module, path in modules.items():
        for target, top in _imports(module, path, modules):
            if _layer(target) > _layer(module):
                upward.append(f"fullduplex.{module} imports fullduplex.{target}")
            if top and target in modules and target != module:
                graph[module].add(target)
    assert not upward, "\n".join(upward)
    # Cycles between modules through module-level imports (a package's __init__ re-exporting is fine).
    cycles = []
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in graph[m]:
            if n.startswith(m + ".") or m.startswith(n + ".") or (n in modules and modules[n].name == "__init__.py"):
                continue
            if state.get(n) == 1:
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]) if n in stack else f"{m} -> {n}")
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)
