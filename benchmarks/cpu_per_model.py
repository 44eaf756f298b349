"""Where the CPU of one conversation goes, model by model: CPU-seconds per second of conversation.

    .venv/bin/python benchmarks/cpu_per_model.py [--agents duplex,streaming] [--suite DIR] [--limit 6]

Runs each agent in this process, in real time, alone, over a few real recordings of the bench suite
(``out/suite`` or ``build/suite2`` when built with ``fullduplex bench build-suite``, else the packaged
demo suite: 8 real phone-call scenarios), and prints each model's CPU per second of conversation, the
median over the scenarios (and the largest). The numbers come from the conversation's own accounting
(``fullduplex/cputime.py``: thread CPU time in the thread doing the work, what the server's derived
session limit uses); "process" is the whole process's CPU over the same run, and "not accounted" the
difference (the recorder, garbage collection, native threads the accounting does not see).
Asserts nothing. A shared or busy machine shifts the numbers little (CPU time, not wall time), but
real-time decisions (drafts, partial transcripts) depend on timing: compare within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fullduplex.audio.io import read_user_audio  # noqa: E402
from fullduplex.bench.runner import _balanced_subset  # noqa: E402
from fullduplex.bench.scenarios import load_suite  # noqa: E402
from fullduplex.config import Config  # noqa: E402
from fullduplex.engines import ModelStack, make_agent  # noqa: E402
from fullduplex.runtime.runner import run_agent  # noqa: E402

SUITES = (ROOT / "out" / "suite", ROOT / "build" / "suite2", ROOT / "fullduplex" / "bench" / "demo_suite")
ORDER = ("stt", "turn", "smart_turn", "llm", "slow_llm", "tts", "vad", "step", "opus")


def default_suite() -> Path:
    return next(p for p in SUITES if p.is_dir())


def run(agent_name: str, models: ModelStack, cfg: Config, scenarios) -> list[dict]:
    agent = make_agent(agent_name, models, cfg)
    agent.prepare()
    rows = []
    for s in scenarios:
        audio, _ = read_user_audio(s.input_path)
        result = run_agent(agent, audio)
        secs = result.duration_s
        per_s = {m: v / secs for m, v in result.cpu["cpu_by_model"].items()}
        accounted = result.cpu["cpu_accounted_s"] / secs
        rows.append({"id": s.id, "s": secs, "models": per_s, "accounted": accounted,
                     "process": result.cpu_per_audio_s, "late": result.late_frames})
        print(f"  {agent_name:10s} {s.id:55s} {secs:5.1f} s  accounted {accounted:.3f}  process "
              f"{result.cpu_per_audio_s:.3f} CPU-s/s  late frames {result.late_frames}", flush=True)
    return rows


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({max(values):.3f})" if values else "-"


def table(results: dict[str, list[dict]]) -> str:
    agents = list(results)
    models = [m for m in ORDER if any(m in r["models"] for rows in results.values() for r in rows)]
    models += sorted({m for rows in results.values() for r in rows for m in r["models"]} - set(models))
    head = "| CPU-s per s of conversation, median (max) | " + " | ".join(f"`{a}`" for a in agents) + " |"
    lines = [head, "|---|" + "---|" * len(agents)]
    for m in models:
        lines.append(f"| {m} | " + " | ".join(cell([r["models"].get(m, 0.0) for r in results[a]]) for a in agents) + " |")
    for label, key in (("**all models (accounted)**", "accounted"), ("process", "process")):
        lines.append(f"| {label} | " + " | ".join(cell([r[key] for r in results[a]]) for a in agents) + " |")
    lines.append("| not accounted | " + " | ".join(
        cell([r["process"] - r["accounted"] for r in results[a]]) for a in agents) + " |")
    lines.append("| scenarios (s of conversation) | " + " | ".join(
        f"{len(results[a])} ({sum(r['s'] for r in results[a]):.0f} s)" for a in agents) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", default="duplex,streaming", help="comma-separated (default duplex,streaming)")
    ap.add_argument("--suite", default=None, help=f"suite folder (default the first of: "
                                                  f"{', '.join(str(p.relative_to(ROOT)) for p in SUITES)})")
    ap.add_argument("--limit", type=int, default=6, help="scenarios per agent, spread over the kinds (default 6)")
    args = ap.parse_args()
    if args.limit <= 0:
        ap.error(f"--limit must be positive, not {args.limit}")
    suite = Path(args.suite) if args.suite else default_suite()
    scenarios, _ = load_suite(suite)
    real = [s for s in scenarios if s.source == "real"] or scenarios
    picked = _balanced_subset(real, args.limit)
    cfg = Config()
    models = ModelStack(cfg)
    print(f"suite {suite} ({len(picked)} scenarios of {len(scenarios)}); {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start", flush=True)
    t0 = time.monotonic()
    results = {name: run(name, models, cfg, picked) for name in args.agents.split(",")}
    print(f"\n{table(results)}\n\n{time.monotonic() - t0:.0f} s; load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
