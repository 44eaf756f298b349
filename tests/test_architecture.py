"""The structure: one agent serves many conversations, a conversation never loads a model, and the
package's arrows only point downwards."""

from __future__ import annotations

import ast
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fullduplex.config import Config
from fullduplex.cputime import CpuAccount, HelperThreads, section
from fullduplex.engines import make_agent
from fullduplex.engines.workers import Worker, lower_model_threads
from fullduplex.testing import ScriptedLlm, ScriptedStack, run_scripted
from fullduplex.testing.fakes import InstantStt, ToneTts

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
    "": 0, "errors": 0, "config": 0, "cputime": 0, "events": 0, "textnorm": 0, "timebase": 0,
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


# -- CPU accounting: each model's CPU lands in the account of the conversation that asked -------------

def burn(cpu_s: float) -> None:
    """Spend ``cpu_s`` of this thread's CPU (not wall time: the same on a busy machine)."""
    t0 = time.thread_time()
    while time.thread_time() - t0 < cpu_s:
        pass


class Asks:
    """Records which thread spent how much on which model, to compare with the accounts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spent: list[tuple[int, str, float]] = []

    def burn(self, model: str, cpu_s: float) -> None:
        burn(cpu_s)
        with self.lock:
            self.spent.append((threading.get_ident(), model, cpu_s))

    def by(self, threads: set[int]) -> dict[str, float]:
        out: dict[str, float] = {}
        for ident, model, s in self.spent:
            if ident in threads:
                out[model] = out.get(model, 0.0) + s
        return out


def test_cpu_account_nests_and_charges_the_thread_that_asks():
    shared = threading.Lock()          # one model for every conversation, as one llama.cpp context

    def smart_turn(cpu_s):
        with shared, section("smart_turn"):
            burn(cpu_s)

    a, b = CpuAccount(), CpuAccount()

    def ask(account, times):
        for _ in range(times):
            with account.measure("turn"):
                burn(0.005)
                smart_turn(0.02)
    threads = [threading.Thread(target=ask, args=(a, 3)), threading.Thread(target=ask, args=(b, 1))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    with section("smart_turn"):
        burn(0.01)                     # no account measures on this thread: nobody is charged
    for account, times in ((a, 3), (b, 1)):
        spent = account.by_model()
        assert 0.02 * times <= spent["smart_turn"] < 0.02 * times + 0.01, spent
        assert 0.005 * times <= spent["turn"] < 0.005 * times + 0.01, "the nested Smart Turn is not paid twice"


def test_each_model_is_charged_to_its_conversation():
    """Two calls on one agent at once, with fakes that spend CPU in the engine's worker threads: each
    conversation's account holds what its own threads spent, model by model (and the frame loop's)."""
    asks = Asks()

    class Llm(ScriptedLlm):
        def stream(self, messages, cancel=None):
            for word in super().stream(messages, cancel):
                asks.burn("llm", 0.003)
                yield word

    class Tts(ToneTts):
        def synthesize(self, text, stop=None):
            asks.burn("tts", 0.01)
            yield from super().synthesize(text)

    class Stt(InstantStt):
        def stream(self):
            inner = super().stream()

            class Stream:
                def push(self, audio):
                    asks.burn("stt", 0.001)
                    return inner.push(audio)

                def partial(self):
                    return inner.partial()

                def finish(self):
                    return inner.finish()

                def close(self):
                    inner.close()
            return Stream()

    class Turn:   # the predictive turn model's interface; its Smart Turn call charges itself
        def for_conversation(self):
            return self

        def predict(self, tail, text, silence_s):
            asks.burn("turn", 0.002)
            with section("smart_turn"):
                asks.burn("smart_turn", 0.01)
            return 0.9 if text.endswith("?") else 0.2

    models = stack()
    models.llm, models.stt, models.turn_model = Llm("Sure. It opens at nine. Anything else?"), Stt(), Turn()
    models.stt.text = "When does the library open?"
    models.tts = Tts(0.5)
    agent = make_agent("duplex", models, Config())
    agent.prepare()
    runs = {}

    def call(seconds):
        runs[seconds] = run_scripted(agent, seconds=seconds)
    threads = [threading.Thread(target=call, args=(s,)) for s in (10.0, 3.0)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    for run in runs.values():
        conversation = run.conversation
        spent = conversation.cpu.by_model()
        asked = asks.by({w._thread.ident for w in conversation.workers()})
        assert set(asked) == {"llm", "tts", "stt", "turn", "smart_turn"}, asked
        for model, cpu_s in asked.items():
            assert cpu_s <= spent[model] < cpu_s + 0.05, (model, cpu_s, spent)
        assert spent["step"] > 0, "the frame loop's own work"
        summary = conversation.cpu_summary(run.stats.duration_s)
        assert summary["cpu_accounted_s"] == pytest.approx(sum(spent.values()), abs=1e-3)
    assert runs[10.0].conversation.cpu.by_model()["llm"] > runs[3.0].conversation.cpu.by_model()["llm"], \
        "the longer call asked more"


def test_the_ear_drops_a_turns_stream_without_a_final_transcript():
    """Work nothing reads is not done: when the agent takes the floor the user's turn is over, and a
    final transcript then would be one more transcription of the open line (issue 17)."""
    calls = []

    class Stt(InstantStt):
        def stream(self):
            inner = super().stream()

            class Stream:
                push, partial = inner.push, inner.partial

                def finish(self):
                    calls.append("finish")
                    return inner.finish()

                def close(self):
                    calls.append("close")
            return Stream()

    models = stack()
    models.stt = Stt("When does the library open?")
    run = run_scripted("duplex", models, seconds=3.0)
    assert any(e.kind == "playback.start" for e in run.events)
    assert calls == ["close"], calls


def test_a_models_own_threads_are_charged_to_the_caller():
    """A model that computes on threads of its own (Moonshine's ONNX pool): their CPU during a call goes
    to the caller, what they spend after it (spinning down) to that same caller, at the next call."""
    work, done = threading.Event(), threading.Event()
    after = [0.0]

    def pool():
        while work.wait(5):
            work.clear()
            burn(0.03)
            done.set()
            burn(after[0])              # still busy after the call returned
    helper = threading.Thread(target=pool, daemon=True)
    helper.start()
    time.sleep(0.01)
    threads = HelperThreads({helper.native_id})

    def call(account, tail_s):
        after[0] = tail_s
        with account.measure("stt"), threads.charged("stt"):
            done.clear()
            work.set()
            done.wait(5)
    a, b = CpuAccount(), CpuAccount()
    call(a, 0.02)
    time.sleep(0.05)
    call(b, 0.0)
    assert 0.05 <= a.by_model()["stt"] < 0.07, "its call and the spin after it"
    assert 0.03 <= b.by_model()["stt"] < 0.045, "its call only"


def test_a_worker_closed_with_an_unread_result_does_not_outlive_its_conversation():
    """A conversation that ends while its worker holds a result nobody reads (a full ``results``) and
    another job finishing: ``close`` ends the thread instead of leaving it waiting on the queue for good."""
    worker = Worker("test", depth=1)
    finishing = threading.Event()

    def second(cancel):
        finishing.wait(5)
        return "second"
    assert worker.submit(lambda cancel: "first")
    deadline = time.monotonic() + 5
    while worker.results.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.submit(second)
    finishing.set()
    time.sleep(0.1)                    # the second result now waits for room that never comes
    worker.close(timeout=2.0)
    assert not worker.running, "the worker's thread still waits to hand back a result"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_a_server_can_run_its_model_threads_below_the_audio_path():
    """``ServerConfig.model_nice``: workers started after ``lower_model_threads(n)`` run n below the
    process's priority; the calling (frame loop's) thread and workers started at 0 keep theirs."""
    base = os.getpriority(os.PRIO_PROCESS, 0)

    def nice_of_a_worker() -> int:
        worker = Worker("nice-test")
        assert worker.submit(lambda cancel: os.getpriority(os.PRIO_PROCESS, 0))
        deadline = time.monotonic() + 5
        while (seen := worker.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.close()
        return seen
    try:
        lower_model_threads(4)
        assert nice_of_a_worker() == min(19, base + 4)
    finally:
        lower_model_threads(0)
    assert nice_of_a_worker() == base
    assert os.getpriority(os.PRIO_PROCESS, 0) == base, "the caller's thread keeps its priority"
