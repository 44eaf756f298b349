"""The ``fullduplex`` command line.

Each subcommand is a thin layer over a library call; a ``UserError`` anywhere becomes one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import Config
from .errors import UserError
from .turn.cli import add_turn_commands


def _add_model_options(p: argparse.ArgumentParser) -> None:
    d = Config()
    g = p.add_argument_group("models (defaults: the embedded CPU stack, no network)")
    g.add_argument("--stt", choices=["moonshine", "whisper-tiny", "whisper-base"], default=d.stt.backend,
                   help=f"speech-to-text: Moonshine tiny-en (streaming) or Whisper via CTranslate2 (default {d.stt.backend})")
    g.add_argument("--stt-partials", type=float, default=d.stt.partial_interval_s, metavar="S",
                   help="Moonshine: refresh the user's transcript every S seconds of their speech, for live captions "
                        "(default 0: only at pauses, where the agent reads it; each refresh transcribes the open "
                        "line again, ~0.2-0.4 CPU-s per s of speech)")
    g.add_argument("--llm", choices=["smollm2", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "openai"], default=d.llm.backend,
                   help="language model: embedded SmolLM2-135M-Instruct, Qwen2.5-Coder-0.5B or -1.5B-Instruct (llama.cpp) "
                        f"or an OpenAI-compatible endpoint (default {d.llm.backend})")
    g.add_argument("--llm-url", default=d.llm.base_url,
                   help="base URL of the OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 "
                        "(env FULLDUPLEX_LLM_URL); the key is read from FULLDUPLEX_LLM_KEY or OPENAI_API_KEY")
    g.add_argument("--llm-model", default=d.llm.model, help="model name sent to the endpoint (env FULLDUPLEX_LLM_MODEL)")
    g.add_argument("--llm-contexts", type=int, default=d.llm.contexts, metavar="N",
                   help=f"embedded LLM: up to N replies decoded at once, one core each (default {d.llm.contexts}; "
                        "more only where cores are left for the audio path)")
    g.add_argument("--llm-format", choices=["q8_0", "shipped"], default=d.llm.requantize or "shipped",
                   help="embedded SmolLM2: its shipped Q4_1 weights rewritten once into the cache as q8_0 (the same "
                        "weights, a prompt read 2.2x and decoded 1.2-1.5x as fast) or used as shipped "
                        f"(default {d.llm.requantize or 'shipped'})")
    g.add_argument("--max-tokens", type=int, default=d.llm.max_tokens, help=f"longest reply in tokens (default {d.llm.max_tokens})")
    g.add_argument("--repeat-penalty", type=float, default=d.llm.repeat_penalty, metavar="X",
                   help="embedded LLM: how much less likely a token among the reply's last 64 is written again, so a "
                        f"small model does not loop (default {d.llm.repeat_penalty}; 1.0: off)")
    g.add_argument("--whole-replies", action="store_true",
                   help="embedded LLM, several calls: a reply being written is never ended after its first sentence "
                        "for another call's waiting answer (default: it is, on a loaded server, so answers come ~2x "
                        "sooner at 12 calls on 2 cores; with this the reply lets the answer in and goes on later)")
    g.add_argument("--tts", choices=["piper", "espeak"], default=d.tts.backend,
                   help=f"text-to-speech: Piper en_US-joe-medium or espeak-ng (default {d.tts.backend})")
    g.add_argument("--silence-ms", type=int, default=d.turn.silence_ms,
                   help=f"silence that ends the user's turn for silence-threshold agents (default {d.turn.silence_ms})")
    g.add_argument("--turn-model", default=d.turn.model, metavar="FILE",
                   help="the predictive turn model for the predictive and duplex agents (default: the committed "
                        "turn.json; fullduplex/turn/data/turn-real.json is the one trained on real recordings)")
    _add_moshi_options(p)


def _config_from(args: argparse.Namespace) -> Config:
    if args.silence_ms <= 0:
        raise UserError(f"--silence-ms must be positive, not {args.silence_ms}")
    if args.max_tokens <= 0:
        raise UserError(f"--max-tokens must be positive, not {args.max_tokens}")
    if not 0.5 <= args.repeat_penalty <= 2.0:
        raise UserError(f"--repeat-penalty must be between 0.5 and 2.0 (1.0: off), not {args.repeat_penalty}")
    if args.llm_contexts < 1:
        raise UserError(f"--llm-contexts must be 1 or more, not {args.llm_contexts}")
    if args.stt_partials < 0:
        raise UserError(f"--stt-partials must be 0 (only at pauses) or more seconds, not {args.stt_partials}")
    if args.turn_model and not Path(args.turn_model).is_file():
        raise UserError(f"--turn-model {args.turn_model}: no such file (a model from `fullduplex turn train`)")
    return Config().with_(
        stt={"backend": args.stt, "partial_interval_s": args.stt_partials},
        llm={"backend": args.llm, "base_url": args.llm_url, "model": args.llm_model, "max_tokens": args.max_tokens,
             "repeat_penalty": args.repeat_penalty, "brief_when_contended": not args.whole_replies,
             "contexts": args.llm_contexts, "requantize": "" if args.llm_format == "shipped" else args.llm_format},
        tts={"backend": args.tts},
        turn={"silence_ms": args.silence_ms, "model": args.turn_model},
        runtime={"tail_s": getattr(args, "tail", Config().runtime.tail_s)},
        moshi=_moshi_section(args),
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
    _print_moshi_summary(sim.result.events)
    print(f"wrote {', '.join(str(p) for p in sim.paths.values())}")
    return 0


def cmd_bench_build_suite(args: argparse.Namespace) -> int:
    from .bench.suite import build_suite

    kinds = {"kinds": [k.strip() for k in args.kinds.split(",")]} if args.kinds else {}
    summary = build_suite(args.out, data_dir=args.data, seed=args.seed, synthetic=not args.real_only,
                          progress=lambda msg: print(msg, file=sys.stderr), **kinds)
    print(summary)
    return 0


def cmd_bench_run(args: argparse.Namespace) -> int:
    from .bench.report import report
    from .bench.runner import run_bench

    cfg = _config_from(args)
    agents = _agent_list(args.agents)
    kinds = [k.strip() for k in args.kinds.split(",")] if args.kinds else None
    sources = [k.strip() for k in args.source.split(",")] if args.source else None
    run = run_bench(agents, args.suite, args.out, cfg, jobs=args.jobs, limit=args.limit, kinds=kinds,
                    sources=sources, log=lambda msg: print(msg, file=sys.stderr), turn_models=args.turn_models)
    print(f"ran {run.ran} scenario run(s), kept {run.skipped} finished ones, {len(run.failed)} failed, "
          f"{len(run.errors)} scenario folder(s) skipped as invalid; {run.wall_s / 60:.1f} min")
    if not args.no_report:
        print("scoring (Whisper base word timestamps) ...", file=sys.stderr)
        print(report(args.out, args.suite, log=lambda msg: print(msg, file=sys.stderr))["markdown"])
        print(f"\nreport: {Path(args.out) / 'report.md'}, {Path(args.out) / 'report.json'}, plots in {Path(args.out) / 'plots'}")
    return 1 if run.failed else 0


def _agent_list(text: str) -> list[str]:
    agents = [a.strip() for a in text.split(",") if a.strip()]
    if not agents:
        raise UserError("--agents needs at least one agent name")
    return agents


def cmd_demo(args: argparse.Namespace) -> int:
    from .bench.demo import plain_summary, run_demo

    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    agents = _agent_list(args.agents)
    result = run_demo(args.out, tuple(agents), _config_from(args), log=log)
    print()
    print(plain_summary(result["demo"]))
    out = Path(args.out)
    print(f"\nlisten and look: {out / 'index.html'} (open it in a browser); every number: {out / 'report.md'}")
    return 0


def cmd_bench_demo_set(args: argparse.Namespace) -> int:
    from .bench.demo import DEMO_RULE, write_demo_set

    picked = write_demo_set(args.suite, args.out)
    print(DEMO_RULE)
    print("\n".join(f"  {s.id}" for s in picked))
    print(f"wrote {len(picked)} scenarios to {args.out}")
    return 0


def cmd_bench_report(args: argparse.Namespace) -> int:
    from .bench.report import report

    print(report(args.dir, args.suite, plots=not args.no_plots)["markdown"])
    print(f"\nreport: {Path(args.dir) / 'report.md'}, {Path(args.dir) / 'report.json'}")
    return 0


# --- turn model (architecture 4: predictive turn-taking): `fullduplex turn train|eval` ------------------

# --- Moshi (architecture 5 on a GPU): options and `fullduplex moshi make-tiny DIR` ------------------------

def _add_moshi_options(p: argparse.ArgumentParser) -> None:
    d = Config().moshi
    g = p.add_argument_group("Moshi (--agent moshi)")
    g.add_argument("--moshi-dir", default=None,
                   help="local Moshi checkpoint folder (config.json, LM and Mimi weights, text tokenizer); no network "
                        "needed. `fullduplex moshi make-tiny DIR` writes a tiny one with random weights")
    g.add_argument("--moshi-repo", default=d.hf_repo,
                   help=f"Hugging Face repo to fetch when --moshi-dir is not given (needs network; default {d.hf_repo})")
    g.add_argument("--device", default=d.device,
                   help="where Moshi runs: auto (a CUDA GPU when present, else the CPU, which is not real time), "
                        f"cpu, cuda or cuda:N (default {d.device})")
    g.add_argument("--moshi-slots", type=int, default=d.slots, metavar="N",
                   help="Moshi conversations batched on one loaded model, stepped together every 80 ms (serve: its "
                        "session limit, one more gets 'busy'; bench: at least --jobs); 0 = automatic: 1 on a CPU, "
                        "on CUDA as many as the free GPU memory holds (~2 GB each for Moshi 7B, at most 64)")


def _moshi_section(args: argparse.Namespace) -> dict:
    d = Config().moshi
    return {"checkpoint_dir": getattr(args, "moshi_dir", None) or "", "hf_repo": getattr(args, "moshi_repo", d.hf_repo),
            "device": getattr(args, "device", d.device), "slots": getattr(args, "moshi_slots", d.slots)}


def _print_moshi_summary(events) -> None:
    for e in events:
        if e.kind == "moshi.summary":
            s = e.data
            print(f"moshi: {s['frames_run']} frames run, {s['dropped']} dropped; compute p50 {s['compute_p50_ms']} ms, "
                  f"p90 {s['compute_p90_ms']} ms per {s['budget_ms']:.0f} ms frame on {s['device']}: "
                  f"{'keeps' if s['real_time'] else 'does NOT keep'} real time"
                  + ("; its weights are RANDOM (a test checkpoint)" if s["random_weights"] else ""))
            print(f"moshi inner monologue: {s['text']!r}")


def cmd_moshi_make_tiny(args: argparse.Namespace) -> int:
    from .models.moshi import make_tiny

    folder = make_tiny(args.dir, seed=args.seed)
    print(f"wrote a tiny Moshi checkpoint with RANDOM weights (seed {args.seed}) to {folder}: it exercises loading and "
          f"streaming, it does not talk; use it with --agent moshi --moshi-dir {folder}")
    return 0


def _add_moshi_commands(sub) -> None:
    moshi = sub.add_parser("moshi", help="Moshi helpers: make-tiny writes a small random checkpoint for tests and CPU demos",
                           description="Helpers for the Moshi agent (--agent moshi).")
    msub = moshi.add_subparsers(dest="moshi_command", metavar="STEP")
    moshi.set_defaults(func=lambda a: moshi.print_help() or 2)
    m = msub.add_parser("make-tiny", help="write a checkpoint of Moshi's architecture, tiny, with RANDOM weights",
                        description="Write DIR/config.json, the LM and Mimi weights (random, seeded) and a sentencepiece "
                                    "tokenizer whose size matches the LM's text vocabulary. It loads through exactly "
                                    "the path of a real checkpoint; its output is noise.")
    m.add_argument("dir", help="folder to write (created; must be empty or an earlier tiny checkpoint)")
    m.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    m.set_defaults(func=cmd_moshi_make_tiny)


# --- serving: `fullduplex serve` (WebSocket, Moshi's protocol, web client) and `fullduplex talk` --------

# Ray Serve routes and autoscales on a fixed count of sessions per replica, so a replica takes this
# many unless told (--sessions-per-replica / --max-sessions); the measured limit is a single server's.
RAY_SESSIONS = 4


def cmd_serve(args: argparse.Namespace) -> int:
    from .audio.opus import OpusSettings
    from .server.app import serve
    from .server.config import ServerConfig

    if args.max_sessions is not None and args.max_sessions <= 0:
        raise UserError(f"--max-sessions must be positive, not {args.max_sessions}")
    if not 0 < args.cpu_target <= 1:
        raise UserError(f"--cpu-target is a share of the cores, 0 < S <= 1, not {args.cpu_target}")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1..65535, not {args.port}")
    if not 0 <= args.model_nice <= 19:
        raise UserError(f"--model-nice is 0-19 (a nice increment), not {args.model_nice}")
    if not 0 <= args.opus_complexity <= 10:
        raise UserError(f"--opus-complexity is 0-10, not {args.opus_complexity}")
    origins = tuple(o.strip() for part in args.allow_origin for o in part.split(",") if o.strip())
    scfg = ServerConfig(host=args.host, port=args.port, max_sessions=args.max_sessions, cpu_target=args.cpu_target,
                        allow_origins=origins, opus=OpusSettings(complexity=args.opus_complexity),
                        model_nice=args.model_nice,
                        record_dir=args.record, static_dir=args.static,
                        **({"token": args.token} if args.token else {}))
    cfg = _config_from(args)
    print(f"loading agent '{args.agent}' (models are loaded once and shared by every session) ...", file=sys.stderr)

    def ready(url: str, max_sessions: int) -> None:
        token = "?token=..." if scfg.token else ""
        print(f"serving agent '{args.agent}' on {url}{token} (web client) and {url.replace('http', 'ws', 1)}api/chat "
              f"(Moshi's protocol); at most {max_sessions} session(s)"
              + (" for now (derived from the measured CPU cost of a conversation; --max-sessions sets it)"
                 if args.max_sessions is None and args.agent != "moshi" and not args.ray else "")
              + (f"; recording to {scfg.record_dir}" if scfg.record_dir else "") + "; Ctrl-C or SIGTERM stops",
              file=sys.stderr, flush=True)

    if args.ray:
        _serve_on_ray(args, cfg, scfg, ready)
    else:
        serve(args.agent, cfg, scfg, ready)
    print("server stopped; every session ended and its recording finished", file=sys.stderr)
    return 0


def _serve_on_ray(args: argparse.Namespace, cfg: Config, scfg, ready) -> None:
    """`serve --ray`: the same server as Ray Serve replicas (fullduplex/server/ray_serve.py)."""
    if args.replicas is not None and args.autoscale:
        raise UserError("--replicas and --autoscale: give one of them")
    autoscale = None
    if args.autoscale:
        try:
            lo, hi = (int(v) for v in args.autoscale.split(","))
        except ValueError:
            raise UserError(f"--autoscale MIN,MAX, e.g. 1,4; not {args.autoscale!r}") from None
        if not 0 < lo <= hi:
            raise UserError(f"--autoscale {args.autoscale}: need 0 < MIN <= MAX")
        autoscale = (lo, hi)
    replicas = 1 if args.replicas is None and not autoscale else args.replicas
    if replicas is not None and replicas <= 0:
        raise UserError(f"--replicas must be positive, not {replicas}")
    sessions = args.sessions_per_replica or (cfg.moshi.slots if args.agent == "moshi" and cfg.moshi.slots > 0
                                             else args.max_sessions or RAY_SESSIONS)
    if sessions <= 0:
        raise UserError(f"--sessions-per-replica must be positive, not {sessions}")
    if args.drain_s < 0:
        raise UserError(f"--drain-s must be 0 or more, not {args.drain_s}")
    if args.agent == "moshi":    # each replica's batch has exactly its K slots
        cfg = cfg.with_(moshi={"slots": sessions})
    try:
        from .server import ray_serve
    except ImportError as e:
        raise UserError(f"--ray needs Ray Serve: pip install 'fullduplex[ray]' ({e})") from None
    try:
        up_s, down_s = (float(v) for v in args.scale_delays.split(","))
    except ValueError:
        raise UserError(f"--scale-delays UP,DOWN in seconds, e.g. 5,60; not {args.scale_delays!r}") from None
    if up_s < 0 or down_s < 0:
        raise UserError(f"--scale-delays {args.scale_delays}: delays are 0 or more seconds")
    plan = ray_serve.Plan(replicas=replicas, autoscale=autoscale, sessions=sessions, drain_s=args.drain_s,
                          scale_delays_s=(up_s, down_s))
    print("starting Ray Serve" + (f" on the cluster at {args.address}" if args.address else " (a local Ray)")
          + (f": {replicas} replica(s)" if replicas else f": {autoscale[0]}-{autoscale[1]} replicas (autoscaled)")
          + f" of {sessions} session(s), each loading the models once ...", file=sys.stderr, flush=True)
    ray_serve.run(args.agent, cfg, scfg, plan, args.address, ready)


def cmd_talk(args: argparse.Namespace) -> int:
    from .runtime.talk import talk

    if args.seconds is not None and args.seconds <= 0:
        raise UserError(f"--seconds must be positive, not {args.seconds}")
    device = lambda v: int(v) if v is not None and v.isdigit() else v   # noqa: E731  an index or a name
    counters = talk(args.agent, _config_from(args), device(args.input_device), device(args.output_device),
                    record_dir=args.record, seconds_limit=args.seconds, show=lambda msg: print(msg, flush=True))
    print(f"talked for {counters['frames'] * Config().runtime.frame_ms / 1000:.1f} s; late frames "
          f"{counters['late_frames']}, microphone blocks dropped {counters['mic_dropped_blocks']}", file=sys.stderr)
    return 0


def _add_server_commands(sub) -> None:
    from .engines import AGENTS, DEFAULT_AGENT
    from .server.config import ServerConfig

    d = ServerConfig()
    agent_help = "architecture: " + ", ".join(sorted(AGENTS)) + f" (default {DEFAULT_AGENT})"
    s = sub.add_parser("serve", help="serve an agent over WebSocket (Moshi's protocol) with a browser client",
                       description="Serve GET /api/chat speaking Moshi's protocol (0x00 handshake, 0x01 Ogg/Opus "
                                   "24 kHz both ways, 0x02 agent text, 0x04 our timeline as JSON, 0x05 errors) and "
                                   "the web client at /. Each connection is its own session with its own agent; "
                                   "models are loaded once. Status as JSON at /api/status.")
    s.add_argument("--agent", choices=sorted(AGENTS), default=DEFAULT_AGENT, help=agent_help)
    s.add_argument("--host", default=d.host, help=f"address to bind (default {d.host}, this machine only; any other "
                                                  "needs --token)")
    s.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port}, Moshi's)")
    s.add_argument("--token", default=None, help="secret clients must send (?token=... or Authorization: Bearer); "
                                                 "default env FULLDUPLEX_TOKEN; required off loopback")
    s.add_argument("--max-sessions", type=int, default=None, metavar="N",
                   help="concurrent sessions; one more gets a 'busy' error (0x05, close 1013). Default: derived "
                        "from the measured cost, cores x --cpu-target / CPU-seconds per second of one conversation "
                        f"(every session counts its models' CPU; {d.assumed_session_cpu:g} assumed until "
                        "measured), so a full box refuses new calls before the held ones slow down; "
                        "--agent moshi: its --moshi-slots instead")
    s.add_argument("--cpu-target", type=float, default=d.cpu_target, metavar="S",
                   help=f"share of the cores the sessions may use when the limit is derived (default "
                        f"{d.cpu_target:g}; the rest absorbs everyone talking at once)")
    s.add_argument("--model-nice", type=int, default=d.model_nice, metavar="N",
                   help=f"Linux: run the model threads N below the audio path's priority, so that when the cores are "
                        f"short every call's frames come first (default {d.model_nice}; 5 at 12 calls on 2 cores: fewer "
                        "late frames, answers up to ~0.3 s later)")
    s.add_argument("--opus-complexity", type=int, default=d.opus.complexity, metavar="N",
                   help=f"the agent's audio: libopus's encoder complexity 0-10 (default {d.opus.complexity}: 2.5-3 ms "
                        "of CPU per second of speech; 10: 9-10 ms, the spectrum ~1 dB closer to the voice)")
    s.add_argument("--allow-origin", action="append", default=[],
                   help="web page origin allowed besides the server's own, e.g. http://localhost:5173 (repeatable; "
                        "'*' allows any)")
    s.add_argument("--record", default=None, metavar="DIR",
                   help="write each session's stereo WAV (user left, agent right) and timeline to DIR/<session>/ as "
                        "it goes")
    s.add_argument("--static", default=None, metavar="DIR",
                   help="serve this web client instead of ours (e.g. Moshi's built client: its index.html at /)")
    r = s.add_argument_group("scale-out on Ray Serve (the `ray` extra: pip install 'fullduplex[ray]')")
    r.add_argument("--ray", action="store_true",
                   help="run the server as Ray Serve replicas: each loads the models once and holds "
                        "--sessions-per-replica sessions; a client beyond them all gets 'busy'")
    r.add_argument("--replicas", type=int, default=None, metavar="N", help="a fixed number of replicas (default 1)")
    r.add_argument("--autoscale", default=None, metavar="MIN,MAX",
                   help="let Serve scale between MIN and MAX replicas, aiming at 3/4 of a replica's sessions each")
    r.add_argument("--sessions-per-replica", type=int, default=None, metavar="K",
                   help=f"sessions one replica holds (default --max-sessions, else {RAY_SESSIONS}; --agent moshi: "
                        "its --moshi-slots, the "
                        "batch each replica runs on its own GPU)")
    r.add_argument("--address", default=None, metavar="ADDR",
                   help="join a running Ray cluster (e.g. auto, or HEAD_IP:6379 from `ray start --head`) instead of "
                        "starting a local Ray")
    r.add_argument("--scale-delays", default="5,60", metavar="UP,DOWN",
                   help="with --autoscale: seconds of higher load before a replica is added, of lower load before "
                        "one is removed (default 5,60; Serve's own: 30,600)")
    r.add_argument("--drain-s", type=float, default=60.0, metavar="S",
                   help="a replica being scaled down keeps its live sessions for at most this long (default 60)")
    _add_model_options(s)
    s.set_defaults(func=cmd_serve)

    t = sub.add_parser("talk", help="talk to an agent with this machine's microphone and speakers",
                       description="Run an agent on the local microphone and speakers (PortAudio). Use headphones: "
                                   "there is no echo canceller here.")
    t.add_argument("--agent", choices=sorted(AGENTS), default=DEFAULT_AGENT, help=agent_help)
    t.add_argument("--input-device", default=None, help="microphone: PortAudio index or name (default: the system's)")
    t.add_argument("--output-device", default=None, help="speakers: PortAudio index or name (default: the system's)")
    t.add_argument("--record", default=None, metavar="DIR", help="write the conversation to DIR/talk-<time>/")
    t.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    _add_model_options(t)
    t.set_defaults(func=cmd_talk)


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
    b.add_argument("--kinds", default=None,
                   help="only these kinds (default all): pause,turn_taking,interrupt,backchannel and FDB v1.5's "
                        "overlap_interrupt,overlap_backchannel,overlap_side_talk,overlap_background")
    b.set_defaults(func=cmd_bench_build_suite)

    r = bsub.add_parser("run", help="run agents on a suite in real time (resumable), then score and report",
                        description="Run each agent on each scenario in real time (real compute in every latency), "
                                    "writing <out>/<agent>/<scenario>/output.wav + timeline.jsonl in FDB's layout. "
                                    "Finished scenarios are kept: rerun the same command to resume.")
    r.add_argument("--agents", default=DEFAULT_AGENT,
                   help="comma-separated agent names, or a server speaking Moshi's protocol: ws://HOST:PORT/api/chat "
                        f"(default {DEFAULT_AGENT})")
    r.add_argument("--suite", required=True, help="a folder of scenarios in FDB v1's layout (ours or FDB's own)")
    r.add_argument("--out", required=True, help="output folder (resumes if it holds an earlier run)")
    r.add_argument("--jobs", type=int, default=1, help="scenarios at a time; capped at cores/2, except moshi alone on a GPU: "
                                                          "N slots of one batch (default 1)")
    r.add_argument("--limit", type=int, default=None, help="run only this many scenarios, spread over kinds")
    r.add_argument("--kinds", default=None, help="only these kinds: pause,turn_taking,interrupt,backchannel, "
                   "overlap_interrupt,overlap_backchannel,overlap_side_talk,overlap_background")
    r.add_argument("--source", default=None, help="only scenarios from these sources: real,synthetic,fdb")
    r.add_argument("--no-report", action="store_true", help="skip scoring and the report")
    r.add_argument("--turn-models", default=None, metavar="DIR",
                   help="run each real scenario with the turn model that never heard its recording (a folder from "
                        "`fullduplex turn train --leave-one-out DIR`); the committed model has heard them all")
    _add_model_options(r)
    r.set_defaults(func=cmd_bench_run)

    p = bsub.add_parser("report", help="score finished runs and write report.md, report.json and plots",
                        description="Transcribe each agent output with Whisper base (word timestamps), compute FDB v1's "
                                    "metrics, and write the table, the JSON and the timeline pictures.")
    p.add_argument("dir", help="a `bench run` output folder")
    p.add_argument("--suite", default=None, help="the suite the run used (default: recorded in DIR/bench.json)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG pictures")
    p.set_defaults(func=cmd_bench_report)

    d = bsub.add_parser("demo-set", help="(maintainers) rewrite the packaged demo set from a dev suite by its written rule",
                        description="Pick the demo's scenarios from a suite built by `bench build-suite`, by the rule in "
                                    "fullduplex/bench/demo.py (DEMO_RULE), and copy them with their licences.")
    d.add_argument("--suite", required=True, help="a suite built by `fullduplex bench build-suite`")
    d.add_argument("--out", default=str(Path(__file__).resolve().parent / "bench" / "demo_suite"),
                   help="where to write the demo set (default: the package's bench/demo_suite)")
    d.set_defaults(func=cmd_bench_demo_set)

    from .bench.demo import DEMO_AGENTS
    p = sub.add_parser("demo", help="every CPU architecture on the same real phone calls: a summary, pictures and audio",
                       description="Run the five CPU architectures in real time on the demo set shipped in the package "
                                   "(8 real telephone scenarios, 2 of each kind), print a plain-language summary and write "
                                   "<out>/index.html: per scenario, each architecture's timeline picture and the "
                                   "conversation in stereo (caller left, agent right). Finished runs are kept: a second "
                                   "run only reports.")
    p.add_argument("--out", default="out/demo-bench", help="output folder (default out/demo-bench)")
    p.add_argument("--agents", default=",".join(DEMO_AGENTS), help=f"comma-separated agents (default {','.join(DEMO_AGENTS)})")
    _add_model_options(p)
    p.set_defaults(func=cmd_demo)

    add_turn_commands(sub)
    _add_moshi_commands(sub)
    _add_server_commands(sub)
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
