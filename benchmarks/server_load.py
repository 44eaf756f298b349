"""How many concurrent sessions each architecture holds in real time behind `fullduplex serve`,
and the per-turn latency through the server against the same agent in-process.

    .venv/bin/python benchmarks/server_load.py [--agents sequential,streaming] [--clients 2,3,4,6,8] [--repeat 3]

For each agent, a `fullduplex serve` process on a loopback port, then:
1. latency: --repeat single conversations in-process (runtime.runner, this process) and as many through
   the server (one client), on the same recording with the same silent tail;
2. capacity: level by level, N clients in this process each stream the recording in real time over
   Ogg/Opus, their starts spread over --spread seconds. A level is *held* when every session answered
   within the tail, the server skipped and dropped nothing and was late (> 1 frame) on at most 5 % of
   frames, and this generator never fell more than 0.2 s behind its own schedule. The ramp stops at the
   first level not held twice in a row. *fast*: held, and every answer within twice the one-session latency.
Everything is bounded: one conversation lasts the recording + tail + 10 s at most. Prints numbers,
asserts nothing. The generator shares the cores with the server: 'gen CPU' is what its clients used (Opus,
WebSocket), cores a real deployment's server would have to itself.

Latency, in seconds from the end of the user's speech in the recording:
  heard   the first audible agent sample (in-process: in the agent's stream; through the server: as this
          client received it, placed on its clock like a player with no jitter buffer would play it)
  events  the agent's own playback.start event (turn.end's speech_end -> playback.start), what the
          engine measures; through the server it comes in the 0x04 latency message (the last turn's)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fullduplex.audio.frames import SAMPLE_RATE, frame_samples, rms_dbfs  # noqa: E402
from fullduplex.audio.io import read_user_audio  # noqa: E402
from fullduplex.config import Config  # noqa: E402
from fullduplex.server.client import converse, first_sound  # noqa: E402

THRESHOLD_DB = -45.0
MAX_LATE_PCT = 5.0
MAX_GEN_LAG_S = 0.2
LOG_DIR = Path(tempfile.gettempdir())   # where the server's stderr is kept


def speech_end(audio: np.ndarray) -> float:
    """End of the last 20 ms frame louder than the threshold: where the user stopped speaking."""
    n = frame_samples(20)
    loud = [i for i in range(0, len(audio) - n + 1, n) if rms_dbfs(audio[i:i + n]) > THRESHOLD_DB]
    return (loud[-1] + n) / SAMPLE_RATE if loud else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_log(agent: str, port: int) -> Path:
    return LOG_DIR / f"fullduplex-server-{agent}-{port}.log"


def keep_log(stream, path: Path) -> None:
    """The server's stderr, line by line into ``path``: what to read when a level goes wrong."""
    with open(path, "w") as log:
        for line in stream:
            log.write(line)
            log.flush()


def start_server(agent: str, record: str | None = None, extra: list[str] = ()) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "fullduplex.cli", "serve", "--agent", agent, "--port", str(port),
                             "--max-sessions", "64", *(["--record", record] if record else []), *extra],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "serving agent" in line:
            threading.Thread(target=keep_log, args=(proc.stderr, server_log(agent, port)), daemon=True).start()
            return proc, port
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"{agent}: the server did not start")


async def level(url: str, clips: list[tuple[np.ndarray, float]], n: int, spread: float, tail: float) -> list[dict]:
    """N clients; client i streams clip i mod len(clips) (the audio, and where its speech ends)."""
    async def one(i: int) -> dict:
        audio, end_s = clips[i % len(clips)]
        await asyncio.sleep(spread * i / max(n, 1))
        try:
            run = await asyncio.wait_for(converse(url, audio, tail_s=tail), len(audio) / SAMPLE_RATE + tail + 10)
        except Exception as e:   # noqa: BLE001  a benchmark reports, it does not stop
            return {"error": f"{type(e).__name__}: {e}"}
        heard = first_sound(run.output, end_s, THRESHOLD_DB)
        lat = next((m for m in reversed(run.metadata) if m.get("type") == "latency"), None)   # the last turn's
        stats = next((m for m in reversed(run.metadata) if m.get("type") == "stats"), {})
        return {"heard": None if heard is None else heard - end_s, "events": lat and lat.get("response_s"),
                "errors": run.errors, "gen_lag": run.max_send_lag_s, "stats": stats}
    return await asyncio.gather(*(one(i) for i in range(n)))


def server_status(port: int) -> dict:
    """The server's ``/api/status`` ({} if it cannot say)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as r:
            return json.load(r)
    except (OSError, ValueError):
        return {}


def model_turns(status: dict) -> list[str]:
    """The shared LLM's and TTS's waits and holds over the server's life (urgent: a user waiting)."""
    models = status.get("shared_models", {})
    locks = [(f"llm context {i}", lock) for i, lock in enumerate(models.get("llm", {}).get("locks", []))]
    locks += [("tts", models["tts"]["lock"])] if "tts" in models else []
    return [f"    {name} {kind}: {t['n']} turns, waited p50 {t['wait_p50_s']} / p90 {t['wait_p90_s']} s, held p50 "
            f"{t['hold_p50_s']} / p90 {t['hold_p90_s']} s, {t['held_s']} s in all"
            for name, lock in locks for kind, t in lock.get("turns", {}).items()]


def measured_level(pid: int, url: str, clips: list[tuple[np.ndarray, float]], n: int, spread: float,
                   tail: float) -> tuple[list[dict], float, float]:
    """One level, with the cores the server used and those this generator (the N clients) used meanwhile."""
    server0, gen0, t0 = cpu_seconds(pid), time.process_time(), time.monotonic()
    rows = asyncio.run(level(url, clips, n, spread, tail))
    wall = time.monotonic() - t0
    return rows, (cpu_seconds(pid) - server0) / wall, (time.process_time() - gen0) / wall


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" not in r and not r["errors"]]
    heard = [r["heard"] for r in ok if r["heard"] is not None]
    events = [r["events"] for r in ok if r["events"] is not None]
    stats = [r["stats"] for r in ok]
    frames = sum(s.get("frames", 0) for s in stats) or 1
    late = sum(s.get("late_frames", 0) for s in stats)
    skipped = sum(s.get("skipped_frames", 0) for s in stats)
    dropped = sum(s.get("dropped_input_frames", 0) + s.get("dropped_output_frames", 0) for s in stats)
    gen_lag = max((r["gen_lag"] for r in ok), default=0.0)
    held = (len(heard) == len(rows) and skipped == 0 and dropped == 0 and 100 * late / frames <= MAX_LATE_PCT
            and gen_lag <= MAX_GEN_LAG_S)
    return {"n": len(rows), "answered": len(heard), "late_pct": 100 * late / frames, "skipped": skipped,
            "dropped": dropped, "gen_lag": gen_lag,
            "heard_med": statistics.median(heard) if heard else None, "heard_max": max(heard) if heard else None,
            "events_med": statistics.median(events) if events else None,
            "step_p99": max((s.get("step_p99_ms", 0) for s in stats), default=0), "held": held,
            "no_turn": sum(1 for r in ok if r["events"] is None),
            "errors": [r.get("error") or r["errors"] for r in rows if r not in ok]}


def in_process(agent: str, audio: np.ndarray, end_s: float, repeat: int) -> tuple[list[float], list[float]]:
    from fullduplex.runtime.latency import breakdown
    from fullduplex.runtime.runner import run_agent
    from fullduplex.server.app import load_agent

    prepared = load_agent(agent, Config())
    heard, events = [], []
    for _ in range(repeat):
        result = run_agent(prepared, audio)
        h = first_sound(result.recorder.agent, end_s, THRESHOLD_DB)
        if h is not None:
            heard.append(h - end_s)
        turns = [t for t in breakdown(result.events) if t.response is not None]
        if turns:
            events.append(turns[0].response)
    return heard, events


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f}" if xs else "-"


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", default=None, help="comma-separated (default: every CPU agent; moshi needs a GPU)")
    ap.add_argument("--clients", default="2,3,4,6,8", help="the capacity ramp (one client is the latency phase)")
    ap.add_argument("--repeat", type=int, default=3, help="conversations per latency measurement (median)")
    ap.add_argument("--clip", default=str(ROOT / "tests" / "data" / "ljspeech-LJ002-0035.wav"),
                    help="a recording, or several (comma-separated): client i streams the i-th mod their number; "
                         "latency is measured after each one's last speech")
    ap.add_argument("--tail", type=float, default=6.0, help="silence streamed after the speech (s)")
    ap.add_argument("--spread", type=float, default=1.0, help="client start times are spread over this (s)")
    ap.add_argument("--serve-args", default="", metavar="ARGS",
                    help="more options for `fullduplex serve`, e.g. \"--llm-format shipped\" (split on spaces; the "
                         "in-process latency phase runs the defaults)")
    ap.add_argument("--record", default=None, metavar="DIR",
                    help="the server records every session here (stereo WAV + timeline: where an answer waited)")
    args = ap.parse_args()
    from fullduplex.engines import AGENTS

    clips = []
    for path in args.clip.split(","):
        speech, _ = read_user_audio(path)
        audio = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), speech])
        clips.append((audio, speech_end(audio)))
    audio, end_s = clips[0]      # the one-session latency phase
    tailed = np.concatenate([audio, np.zeros(int(args.tail * SAMPLE_RATE), np.float32)])
    ramp = [int(c) for c in args.clients.split(",") if c.strip()]
    agents = [a.strip() for a in args.agents.split(",") if a.strip()] if args.agents else \
        [a for a in AGENTS if a != "moshi"]
    try:   # the clients stand for other machines: they should not queue behind the server for a core
        os.setpriority(os.PRIO_PROCESS, 0, -5)
        prio = "generator at nice -5"
    except OSError:
        prio = "generator at normal priority (not root)"
    load = os.getloadavg()[0]
    print(f"clip {', '.join(Path(c).name for c in args.clip.split(','))}: speech ends at "
          f"{', '.join(f'{e:.2f}' for _, e in clips)} s, tail {args.tail:.1f} s; {os.cpu_count()} cores, "
          f"load average {load:.1f} at start; {prio}; latency x{args.repeat}; ramp {ramp}", flush=True)
    summary = []
    for agent in agents:
        in_heard, in_events = in_process(agent, tailed, end_s, args.repeat)
        proc, port = start_server(agent, args.record, args.serve_args.split())
        url = f"ws://127.0.0.1:{port}/api/chat"
        try:
            one = [r for _ in range(args.repeat) for r in asyncio.run(level(url, clips[:1], 1, 0, args.tail))]
            single = summarise(one)
            if not single["held"]:
                one = [r for _ in range(args.repeat) for r in asyncio.run(level(url, clips[:1], 1, 0, args.tail))]
                single = summarise(one)
            via_heard = [r["heard"] for r in one if r.get("heard") is not None]
            via_events = [r["events"] for r in one if r.get("events") is not None]
            print(f"\n{agent}: latency in-process heard {med(in_heard)} / events {med(in_events)}; through the server "
                  f"heard {med(via_heard)} / events {med(via_events)} (medians of {args.repeat})", flush=True)
            print(f"{'N':>3} {'answered':>8} {'heard med':>9} {'heard max':>9} {'events med':>10} {'late %':>6} "
                  f"{'skip':>4} {'drop':>4} {'gen lag':>7} {'step p99':>8} {'srv CPU':>7} {'gen CPU':>7}  held", flush=True)
            print(f"{1:>3} {single['answered']:>4}/{len(one):<3} {fmt(single['heard_med']):>9} "
                  f"{fmt(single['heard_max']):>9} {fmt(single['events_med']):>10} {single['late_pct']:>6.1f} "
                  f"{single['skipped']:>4} {single['dropped']:>4} {single['gen_lag']:>7.2f} {single['step_p99']:>8.1f} "
                  f"{'':>7} {'':>7}  {'yes' if single['held'] else 'NO'}", flush=True)
            held = held_fast = 1 if single["held"] else 0
            fast = single["held"]
            base = single["heard_med"]
            for n in ramp if single["held"] else []:
                rows, cores, gen_cores = measured_level(proc.pid, url, clips, n, args.spread, args.tail)
                s = summarise(rows)
                if not s["held"]:        # once more: one hiccup of a shared machine is not a capacity
                    rows, cores, gen_cores = measured_level(proc.pid, url, clips, n, args.spread, args.tail)
                    s = summarise(rows)
                print(f"{n:>3} {s['answered']:>4}/{n:<3} {fmt(s['heard_med']):>9} {fmt(s['heard_max']):>9} "
                      f"{fmt(s['events_med']):>10} {s['late_pct']:>6.1f} {s['skipped']:>4} {s['dropped']:>4} "
                      f"{s['gen_lag']:>7.2f} {s['step_p99']:>8.1f} {cores:>7.2f} {gen_cores:>7.2f}  {'yes' if s['held'] else 'NO'}"
                      + (f"  errors: {s['errors'][:2]}" if s["errors"] else ""), flush=True)
                if s["no_turn"]:
                    print(f"    {s['no_turn']} call(s) got no answer (no latency message); the server's log: "
                          f"{server_log(agent, port)}", flush=True)
                if not s["held"]:
                    break
                held = n
                fast = fast and base is not None and s["heard_max"] is not None and s["heard_max"] <= 2 * base
                held_fast = n if fast else held_fast
            status = server_status(port)
            cap = status.get("capacity")
            for line in model_turns(status):
                print(line, flush=True)
            if status.get("event_loop", {}).get("watched"):   # a loop that stops for max_output_s drops all calls' audio
                lag = status["event_loop"]
                print(f"    event loop late: p50 {lag['p50_ms']} / p99 {lag['p99_ms']} / worst {lag['worst_ms']} ms; "
                      f"wake-ups late by more than 0.25 / 0.5 / 1 s: {' / '.join(map(str, lag['stalls'].values()))}"
                      + (f"; the latest (Unix time, s): {lag['latest_stalls'][-5:]}" if lag.get("latest_stalls") else ""),
                      flush=True)
            if cap:
                print(f"the server's own estimate after the ramp: {cap['session_cpu_per_s']} CPU-s per s a call "
                      f"(process / accounted {cap.get('process_over_accounted', '-')}) -> derived limit "
                      f"{cap['derived_limit']} on {cap['cores']} cores at {cap['cpu_target']:g}", flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        summary.append((agent, held, held_fast, in_heard, in_events, via_heard, via_events))
    print(f"\nsessions held in real time on {os.cpu_count()} cores (every session answered; nothing skipped or dropped; "
          f"<= {MAX_LATE_PCT:g} % late frames); 'fast': also every answer within 2x the one-session latency.")
    print(f"latency: medians of {args.repeat}, s after the end of the user's speech (heard / events).")
    print(f"{'agent':<18} {'held':>4} {'fast':>4}   {'in-process':>12}   {'through the server':>18}")
    for agent, held, held_fast, in_heard, in_events, via_heard, via_events in summary:
        print(f"{agent:<18} {held:>4} {held_fast:>4}   {med(in_heard):>5} / {med(in_events):<5}   "
              f"{med(via_heard):>8} / {med(via_events):<5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
