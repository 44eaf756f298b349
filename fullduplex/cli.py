"""The ``fullduplex`` command line.

Each subcommand is a thin layer over a library call; a ``UserError`` anywhere becomes one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .config import Config
from .errors import UserError


def _add_model_options(p: argparse.ArgumentParser) -> None:
    d = Config()
    g = p.add_argument_group("models (defaults: the embedded CPU stack, no network)")
    g.add_argument("--stt", choices=["moonshine", "whisper-tiny", "whisper-base"], default=d.stt.backend,
                   help=f"speech-to-text: Moonshine tiny-en (streaming) or Whisper via CTranslate2 (default {d.stt.backend})")
    g.add_argument("--llm", choices=["smollm2", "openai"], default=d.llm.backend,
                   help="language model: embedded SmolLM2-135M-Instruct (llama.cpp) or an OpenAI-compatible "
                        f"endpoint (default {d.llm.backend})")
    g.add_argument("--llm-url", default=d.llm.base_url,
                   help="base URL of the OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 "
                        "(env FULLDUPLEX_LLM_URL); the key is read from FULLDUPLEX_LLM_KEY or OPENAI_API_KEY")
    g.add_argument("--llm-model", default=d.llm.model, help="model name sent to the endpoint (env FULLDUPLEX_LLM_MODEL)")
    g.add_argument("--max-tokens", type=int, default=d.llm.max_tokens, help=f"longest reply in tokens (default {d.llm.max_tokens})")
    g.add_argument("--tts", choices=["piper", "espeak"], default=d.tts.backend,
                   help=f"text-to-speech: Piper en_US-joe-medium or espeak-ng (default {d.tts.backend})")
    g.add_argument("--silence-ms", type=int, default=d.turn.silence_ms,
                   help=f"silence that ends the user's turn for silence-threshold agents (default {d.turn.silence_ms})")


def _config_from(args: argparse.Namespace) -> Config:
    if args.silence_ms <= 0:
        raise UserError(f"--silence-ms must be positive, not {args.silence_ms}")
    if args.max_tokens <= 0:
        raise UserError(f"--max-tokens must be positive, not {args.max_tokens}")
    return Config().with_(
        stt={"backend": args.stt},
        llm={"backend": args.llm, "base_url": args.llm_url, "model": args.llm_model, "max_tokens": args.max_tokens},
        tts={"backend": args.tts},
        turn={"silence_ms": args.silence_ms},
        runtime={"tail_s": getattr(args, "tail", Config().runtime.tail_s)},
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    from .runtime.latency import format_breakdown
    from .runtime.simulate import simulate

    if args.tail < 0:
        raise UserError(f"--tail must be 0 or more seconds, not {args.tail}")
    cfg = _config_from(args)
    print(f"simulating agent '{args.agent}' on {args.input} in real time ...", file=sys.stderr)
    sim = simulate(cfg, args.agent, args.input, args.out, channel=args.channel, progress=True)
    note = sim.info.conversion_note()
    if note:
        print(f"input: {note}", file=sys.stderr)
    if sim.tail_s > 0:
        print(f"input: appended {sim.tail_s:.1f} s of silence after the recording so the agent can answer "
              f"(--tail; 0 to feed it exactly as given)", file=sys.stderr)
    r = sim.result
    print(f"\n{args.agent}: {sim.info.duration:.1f} s of user audio + {sim.tail_s:.1f} s tail; "
          f"step p50 {r.step_percentile(50):.2f} ms, p99 {r.step_percentile(99):.2f} ms, "
          f"late frames {r.late_frames}; CPU {r.cpu_per_audio_s:.2f} s per s of audio")
    print("latency per user turn, seconds after the end of the user's speech:")
    print(format_breakdown(sim.turns))
    print(f"wrote {', '.join(str(p) for p in sim.paths.values())}")
    return 0


def cmd_bench_build_suite(args: argparse.Namespace) -> int:
    from .bench.suite import build_suite

    summary = build_suite(args.out, data_dir=args.data, seed=args.seed, synthetic=not args.real_only,
                          progress=lambda msg: print(msg, file=sys.stderr))
    print(summary)
    return 0


def cmd_bench_run(args: argparse.Namespace) -> int:
    from .bench.report import report
    from .bench.runner import run_bench

    cfg = _config_from(args)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    if not agents:
        raise UserError("--agents needs at least one agent name")
    kinds = [k.strip() for k in args.kinds.split(",")] if args.kinds else None
    run = run_bench(agents, args.suite, args.out, cfg, jobs=args.jobs, limit=args.limit, kinds=kinds,
                    log=lambda msg: print(msg, file=sys.stderr))
    print(f"ran {run.ran} scenario run(s), kept {run.skipped} finished ones, {len(run.failed)} failed, "
          f"{len(run.errors)} scenario folder(s) skipped as invalid; {run.wall_s / 60:.1f} min")
    if not args.no_report:
        print("scoring (Whisper base word timestamps) ...", file=sys.stderr)
        print(report(args.out, args.suite, log=lambda msg: print(msg, file=sys.stderr))["markdown"])
        print(f"\nreport: {Path(args.out) / 'report.md'}, {Path(args.out) / 'report.json'}, plots in {Path(args.out) / 'plots'}")
    return 1 if run.failed else 0


def cmd_bench_report(args: argparse.Namespace) -> int:
    from .bench.report import report

    print(report(args.dir, args.suite, plots=not args.no_plots)["markdown"])
    print(f"\nreport: {Path(args.dir) / 'report.md'}, {Path(args.dir) / 'report.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .engines import AGENTS, DEFAULT_AGENT

    parser = argparse.ArgumentParser(
        prog="fullduplex",
        description="Voice agents that listen while they speak. Every agent takes one frame of user audio and "
                    "returns one frame of its own, on one clock.")
    parser.add_argument("--version", action="version", version=f"fullduplex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("simulate", help="run one agent on a recording in real time and print its latency per turn",
                       description="Feed a recording to an agent in real time (real compute in every latency), "
                                   "write conversation.wav (user left, agent right), input.wav, output.wav "
                                   "(the Full-Duplex-Bench layout) and timeline.jsonl, and print the latency "
                                   "breakdown of each user turn.")
    p.add_argument("--agent", choices=sorted(AGENTS), default=DEFAULT_AGENT,
                   help="architecture: " + "; ".join(f"{n}: {c.description}" for n, c in sorted(AGENTS.items())))
    p.add_argument("--input", required=True, help="the user's recording (WAV/FLAC/OGG; any rate and channel count)")
    p.add_argument("--out", required=True, help="folder for the outputs (created; files replaced only when the run succeeds)")
    p.add_argument("--channel", type=int, default=None,
                   help="use this channel (0-based) of a multi-channel recording as the user; default: mix all")
    p.add_argument("--tail", type=float, default=Config().runtime.tail_s,
                   help=f"seconds of silence appended so the agent can answer (default {Config().runtime.tail_s})")
    _add_model_options(p)
    p.set_defaults(func=cmd_simulate)

    bench = sub.add_parser("bench", help="Full-Duplex-Bench v1 metrics for every architecture on the same scenarios",
                           description="Build a scenario suite, run agents on it in real time, and report FDB v1's "
                                       "metrics side by side.")
    bsub = bench.add_subparsers(dest="bench_command", metavar="STEP")
    bench.set_defaults(func=lambda a: bench.print_help() or 2)

    b = bsub.add_parser("build-suite", help="(re)build the dev suite from ../shared/data, deterministically",
                        description="Cut real scenarios (pauses, turn ends, interruptions, monologues) from the shared "
                                    "recordings by their RTTM/STM labels, add synthetic ones (Piper voice), and write "
                                    "them in FDB v1's layout.")
    b.add_argument("--out", default="bench/suite", help="where to write the suite (default bench/suite)")
    b.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data beside the repo)")
    b.add_argument("--seed", type=int, default=0, help="random seed for the synthetic part (default 0)")
    b.add_argument("--real-only", action="store_true", help="only the scenarios cut from real recordings")
    b.set_defaults(func=cmd_bench_build_suite)

    r = bsub.add_parser("run", help="run agents on a suite in real time (resumable), then score and report",
                        description="Run each agent on each scenario in real time (real compute in every latency), "
                                    "writing <out>/<agent>/<scenario>/output.wav + timeline.jsonl in FDB's layout. "
                                    "Finished scenarios are kept: rerun the same command to resume.")
    r.add_argument("--agents", default=DEFAULT_AGENT, help=f"comma-separated agent names (default {DEFAULT_AGENT})")
    r.add_argument("--suite", required=True, help="a folder of scenarios in FDB v1's layout (ours or FDB's own)")
    r.add_argument("--out", required=True, help="output folder (resumes if it holds an earlier run)")
    r.add_argument("--jobs", type=int, default=1, help="scenarios at a time; capped at cores/2 (default 1)")
    r.add_argument("--limit", type=int, default=None, help="run only this many scenarios, spread over kinds")
    r.add_argument("--kinds", default=None, help="only these kinds: pause,turn_taking,interrupt,backchannel")
    r.add_argument("--no-report", action="store_true", help="skip scoring and the report")
    _add_model_options(r)
    r.set_defaults(func=cmd_bench_run)

    p = bsub.add_parser("report", help="score finished runs and write report.md, report.json and plots",
                        description="Transcribe each agent output with Whisper base (word timestamps), compute FDB v1's "
                                    "metrics, and write the table, the JSON and the timeline pictures.")
    p.add_argument("dir", help="a `bench run` output folder")
    p.add_argument("--suite", default=None, help="the suite the run used (default: recorded in DIR/bench.json)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG pictures")
    p.set_defaults(func=cmd_bench_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UserError as e:
        print(f"fullduplex: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fullduplex: interrupted; nothing was written for the unfinished run", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
