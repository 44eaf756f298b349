"""``fullduplex bench run``: every agent on every scenario, in real time, resumable.

Outputs, per agent and scenario, in FDB's layout: ``<out>/<agent>/<scenario id>/output.wav`` (the
agent's channel, as long as ``input.wav``), ``timeline.jsonl`` and ``run.json`` (compute stats).
``run.json`` is written last, after the others are in place: it is the "finished" marker, so an
interrupted run resumes where it stopped and never redoes or loses a finished scenario; it names the
code and settings that made it (``code_stamp``), and one made by others is run again.

Scenario inputs are fed exactly as given (no tail), as FDB does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..audio.io import read_user_audio, write_text, write_wav
from ..config import Config
from ..engines import AGENTS, Agent, ModelStack, make_agent
from ..errors import UserError
from ..runtime.runner import run_agent
from .scenarios import Scenario, ScenarioError, load_suite

RUN_FILE = "run.json"
BENCH_FILE = "bench.json"   # which suite and agents an output folder holds, for `bench report`


@dataclass
class BenchRun:
    out_dir: Path
    agents: list[str]
    scenarios: list[Scenario]
    errors: list[ScenarioError] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def scenario_dir(out_dir: Path, agent: str, scenario: Scenario) -> Path:
    return out_dir / agent_folder(agent) / scenario.id


def is_remote(agent: str) -> bool:
    """A ``ws://HOST:PORT/api/chat`` agent: any server speaking Moshi's protocol (``server/client.py``)."""
    return agent.startswith(("ws://", "wss://"))


def agent_folder(agent: str) -> str:
    """The output folder of an agent: its name, or for a server URL ``ws-HOST-PORT-api-chat``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", agent.split("?")[0]).strip("-") if is_remote(agent) else agent


@functools.lru_cache(maxsize=8)
def code_stamp(cfg: Config) -> str:
    """What a run was made with: a hash of this package's code and data (turn models, the demo suite's
    labels) and of the configuration. A resumed run keeps a finished scenario only when its run.json
    has the same stamp, so a second ``make demo`` after a change re-runs instead of reprinting."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha1(repr(cfg).encode())
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts and path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def is_done(out_dir: Path, agent: str, scenario: Scenario, stamp: str) -> bool:
    path = scenario_dir(out_dir, agent, scenario) / RUN_FILE
    try:
        return json.loads(path.read_text()).get("code") == stamp
    except (OSError, ValueError):
        return False     # not run, or cut off while writing its marker


def effective_jobs(requested: int, batched_on_gpu: bool = False) -> tuple[int, str | None]:
    """Each real-time scenario needs about two cores to itself (models + the clock); more jobs on fewer
    cores would measure contention, not the agent. Moshi on a GPU is the exception (``batched_on_gpu``):
    its jobs are slots of one batch stepped on the GPU, and each costs the CPU only resampling."""
    cores = os.cpu_count() or 1
    allowed = max(1, cores // 2)
    if requested > allowed and not batched_on_gpu:
        return allowed, (f"--jobs {requested} asked, but this machine has {cores} cores: running {allowed} at a time "
                         "(parallel real-time runs would measure CPU contention, not the agents)")
    return max(1, requested), None


def moshi_on_gpu(agents: list[str], cfg: Config) -> bool:
    """Only Moshi, on a CUDA GPU: ``--jobs N`` runs N scenarios as N slots of one batch, uncapped."""
    if agents != ["moshi"]:
        return False
    from ..models.moshi import resolve_device
    return resolve_device(cfg.moshi.device).type == "cuda"


class _Progress:
    def __init__(self, total: int, audio_s: float, jobs: int) -> None:
        self.total, self.left_s, self.jobs = total, audio_s, jobs
        self.done = 0
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.tty = sys.stderr.isatty()

    def advance(self, label: str, audio_s: float) -> None:
        with self.lock:
            self.done += 1
            self.left_s -= audio_s
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            eta = max(self.left_s, 0) / self.jobs
            line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} scenarios, "
                    f"~{eta / 60:.1f} min left  {label}")
            print(("\r" + line[:120].ljust(120)) if self.tty else line, end="" if self.tty else "\n",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def held_out_turn_model(turn_models: Path | None, scenario: Scenario) -> str:
    """The turn model that never heard the scenario's recording(s), from ``turn train --leave-one-out``'s
    ``index.json`` (every recording any model learnt from -> the model trained without it); "" (the
    committed model) when none of them is indexed: no model learnt from them (synthetic, FDB's, or a
    recording without a labelled pause)."""
    if turn_models is None or not scenario.recordings:
        return ""
    index = json.loads((turn_models / "index.json").read_text())
    files = {index[r] for r in scenario.recordings if r in index}
    if len(files) > 1:
        raise UserError(f"{scenario.id}: its recordings {list(scenario.recordings)} are in different folds of "
                        f"{turn_models}: no one model left them all out")
    return str(turn_models / files.pop()) if files else ""


def _run_one(agent: Agent | None, cfg: Config, agent_name: str, scenario: Scenario, out_dir: Path,
             turn_model: str = "", stamp: str = "") -> dict:
    audio, _ = read_user_audio(scenario.input_path)
    if agent is None:   # a ws:// agent: streamed to the server in real time over Opus, recorded as heard
        from ..server.client import run_scenario
        result = run_scenario(agent_name, audio, cfg.runtime.frame_ms)
    else:
        result = run_agent(agent, audio)
    folder = scenario_dir(out_dir, agent_name, scenario)
    output = result.recorder.agent[: len(audio)]   # FDB: output.wav is exactly as long as input.wav
    write_wav(folder / "output.wav", output)
    write_text(folder / "timeline.jsonl", "".join(json.dumps(e.to_json()) + "\n" for e in result.events))
    stats = {"agent": agent_name, "scenario": scenario.id, "kind": scenario.kind, "source": scenario.source,
             "audio_s": round(len(audio) / 16000, 3), "cpu_s": round(result.cpu_s, 3),
             "cpu_per_audio_s": round(result.cpu_per_audio_s, 3), **result.cpu,
             "step_p50_ms": round(result.step_percentile(50), 3), "step_p99_ms": round(result.step_percentile(99), 3),
             "late_frames": result.late_frames, "frames": len(result.step_ms),
             "queue_fill": round(result.queue_fill, 3), "jobs_refused": result.jobs_refused,
             "turn_model": Path(turn_model).name if turn_model else "committed", "code": stamp}
    write_text(folder / RUN_FILE, json.dumps(stats, indent=1))
    return stats


def run_bench(agents: list[str], suite_dir: str | Path, out_dir: str | Path, cfg: Config | None = None,
              jobs: int = 1, limit: int | None = None, kinds: list[str] | None = None,
              sources: list[str] | None = None, log=print, turn_models: str | Path | None = None) -> BenchRun:
    """``turn_models``: a folder from ``fullduplex turn train --leave-one-out``: each real scenario runs
    with the turn model trained without its recording (the committed one has heard them all)."""
    cfg = cfg or Config()
    turn_models = Path(turn_models) if turn_models else None
    if turn_models is not None and not (turn_models / "index.json").exists():
        raise UserError(f"{turn_models}: no index.json; write the folder with "
                        f"`fullduplex turn train --leave-one-out {turn_models}`")
    for name in agents:
        if name not in AGENTS and not is_remote(name):
            raise UserError(f"unknown agent {name!r}; choose from: {', '.join(AGENTS)}, or ws://HOST:PORT/api/chat")
    scenarios, errors = load_suite(suite_dir)
    for err in errors:
        log(f"skipping scenario: {err}")
    if kinds:
        scenarios = [s for s in scenarios if s.kind in kinds]
    if sources:
        scenarios = [s for s in scenarios if s.source in sources]
    if not scenarios:
        raise UserError(f"{suite_dir}: no scenario matches --kinds/--source")
    if limit:
        scenarios = _balanced_subset(scenarios, limit)
    out = Path(out_dir)
    _record_bench(out, Path(suite_dir), agents)
    run = BenchRun(out, agents, scenarios, errors)
    stamp = code_stamp(cfg)
    todo = [(a, s) for a in agents for s in scenarios if not is_done(out, a, s, stamp)]
    run.skipped = len(agents) * len(scenarios) - len(todo)
    stale = sum((scenario_dir(out, a, s) / RUN_FILE).exists() for a, s in todo)
    if run.skipped or stale:
        log(f"resuming: {run.skipped} finished scenario run(s) kept, {len(todo)} to go"
            + (f" ({stale} made by other code or settings: run again)" if stale else ""))
    jobs, note = effective_jobs(jobs, moshi_on_gpu(agents, cfg))
    if "moshi" in agents and cfg.moshi.slots < jobs:   # the jobs' calls share one batch of (at least) jobs slots
        cfg = cfg.with_(moshi={"slots": jobs})
    if note:
        log(note)
    audio_s = sum(sf_duration(s) for _, s in todo)
    progress = _Progress(len(todo), audio_s, jobs)
    t0 = time.monotonic()
    local = threading.local()

    def agent_for(name: str, turn_model: str = "") -> Agent | None:
        """One model stack per worker thread, one agent per architecture (and turn model) on it, prepared
        before its first call; another turn model shares the stack's other models."""
        if is_remote(name):
            return None
        if not hasattr(local, "agents"):
            local.models, local.agents = ModelStack(cfg), {}
        if (name, "") not in local.agents:
            local.agents[name, ""] = make_agent(name, local.models, cfg)
            local.agents[name, ""].prepare()
        if (name, turn_model) not in local.agents:
            models = local.models.with_turn_model(turn_model)
            local.agents[name, turn_model] = make_agent(name, models, models.cfg)
            local.agents[name, turn_model].prepare()
        return local.agents[name, turn_model]

    def work(item):
        agent_name, scenario = item
        try:
            model = held_out_turn_model(turn_models, scenario)
            _run_one(agent_for(agent_name, model), cfg, agent_name, scenario, out, model, stamp)
        except UserError as e:
            run.failed.append(f"{agent_name}/{scenario.id}: {e}")
        progress.advance(f"{agent_name}/{scenario.id}", sf_duration(scenario))

    try:
        if jobs == 1:
            for item in todo:
                work(item)
        else:
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(work, todo))
    finally:
        progress.close()
    run.ran = len(todo) - len(run.failed)
    run.wall_s = time.monotonic() - t0
    for failure in run.failed:
        log(f"failed: {failure}")
    return run


def _record_bench(out: Path, suite: Path, agents: list[str]) -> None:
    path = out / BENCH_FILE
    known = json.loads(path.read_text())["agents"] if path.exists() else []
    write_text(path, json.dumps({"suite": str(suite.resolve()), "agents": sorted(set(known) | set(agents))}, indent=1))


def sf_duration(scenario: Scenario) -> float:
    import soundfile as sf
    return sf.info(str(scenario.input_path)).duration


def _balanced_subset(scenarios: list[Scenario], limit: int) -> list[Scenario]:
    """``limit`` scenarios spread over kinds and sources, real ones first (deterministic)."""
    groups: dict[tuple[str, str], list[Scenario]] = {}
    for s in sorted(scenarios, key=lambda s: (s.source != "real", s.id)):
        groups.setdefault((s.kind, s.source), []).append(s)
    order = sorted(groups, key=lambda k: (k[1] != "real", k[0]))
    picked: list[Scenario] = []
    while len(picked) < limit and any(groups.values()):
        for key in order:
            if groups[key] and len(picked) < limit:
                picked.append(groups[key].pop(0))
    return sorted(picked, key=lambda s: s.id)
