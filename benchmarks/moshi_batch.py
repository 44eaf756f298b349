"""How many Moshi conversations one loaded model holds in real time when they share one batched step.

    .venv/bin/python benchmarks/moshi_batch.py                                  # tiny random checkpoint, CPU
    .venv/bin/python benchmarks/moshi_batch.py --full --device cuda             # Moshi 7B architecture, random bf16
    .venv/bin/python benchmarks/moshi_batch.py --full --device cuda --slots 1,16,32,48,64 --seconds 20
    ... --raw-only / --serve-only                                               # one of the two parts

For each batch size B (``--slots``):
1. **raw**: a ``MoshiBatch`` of B slots, every slot fed a frame, stepped back to back (``--frames``
   frames after the model's delays are filled): the time of one batched step (Mimi encode of
   [B, 1, 1920] + ``LMGen.step`` + Mimi decode) p50/p90/max, and memory (CUDA: the peak allocated,
   per slot beyond the weights; CPU: the process's resident memory), and the slowest of the first three
   steps after the warm-up (``first3_max_ms``: as fast as the rest when the warm-up did its job). Real time: p90 <= 80 ms.
2. **serve**: the real server (``fullduplex serve``'s app, in this process) with that batch, and B
   clients in a separate process each streaming speech over Ogg/Opus on loopback in real time for
   ``--seconds`` (starts spread over ``--spread`` s). Held in real time when no client got an error,
   no frame was dropped after the first second (``moshi.lag``), no session skipped ahead, at most 5 %
   of session frames were late, the clients never fell 0.2 s behind their schedule, and the batched
   step's p99 was within the 80 ms frame.

The model is loaded once (``--full``: Moshi 7B's architecture with RANDOM weights, no download; its
text is empty: there is no tokenizer). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fullduplex.config import Config  # noqa: E402
from fullduplex.errors import UserError  # noqa: E402
from fullduplex.models import moshi  # noqa: E402
from fullduplex.models.moshi.load import sampling_params  # noqa: E402
from moshi_frame import add_model_options, load_bench_model  # noqa: E402  (this folder is on sys.path)

MAX_LATE_PCT = 5.0
MAX_GEN_LAG_S = 0.2


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def speech(seconds: float) -> np.ndarray:
    import soundfile as sf
    clip, rate = sf.read(ROOT / "tests" / "data" / "jfk.wav", dtype="float32")
    assert rate == 16000
    return np.resize(clip, int(seconds * 16000)).astype(np.float32)


# -- 1. raw batched steps ---------------------------------------------------------------------------------
def raw(model, size: int, frames: int, sampling: dict) -> dict:
    import torch

    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(model.device)
    before = torch.cuda.memory_allocated(model.device) if cuda else 0
    batch = moshi.MoshiBatch(model, size, sampling)
    try:
        slots = [batch.join(depth=2) for _ in range(size)]
        rng = np.random.default_rng(0)
        skip = 1 + int(model.lm.delays and max(model.lm.delays)) + 2   # the first frame, the delays, a margin
        for i in range(frames + skip):
            frame = (0.05 * rng.standard_normal(model.frame_size)).astype(np.float32)
            queued = time.perf_counter()
            for s in slots:
                s.submit(i, frame, queued)
            while not all(s.idle for s in slots):
                time.sleep(0.0002)
            for s in slots:
                while s.poll() is not None:
                    pass
        times = list(batch.stats.step_ms)[-frames:]
        row = {"B": size, "p50_ms": pct(times, 50), "p90_ms": pct(times, 90), "max_ms": round(max(times), 2),
               "first3_max_ms": round(max(list(batch.stats.step_ms)[:3]), 2)}   # the first steps after the warm-up
        if cuda:
            peak = torch.cuda.max_memory_allocated(model.device)
            row.update(peak_gb=round(peak / 1e9, 2), per_slot_gb=round((peak - before) / 1e9 / size, 3))
        else:
            row.update(rss_mb=round(rss_mb(), 1))
        row["real_time"] = row["p90_ms"] <= model.frame_s * 1000
        return row
    finally:
        batch.close()


def pct(values, q) -> float:
    return round(float(np.percentile(values, q)), 2) if values else 0.0


# -- 2. through serve -------------------------------------------------------------------------------------
def through_serve(model, cfg: Config, size: int, seconds: float, spread: float) -> dict:
    from fullduplex.engines import ModelStack
    from fullduplex.server.config import ServerConfig
    from fullduplex.server.testserver import BackgroundServer

    moshi.close_all()
    moshi.adopt(model, cfg.moshi)              # the model loaded above serves the batch (no second load)
    with BackgroundServer("moshi", ModelStack(cfg), cfg=cfg, scfg=ServerConfig(port=0, max_sessions=size)) as srv:
        srv.state.agent.prepare()
        batch = moshi.batch_for(cfg.moshi)
        batch.stats.step_ms.clear()
        batch.stats.active.clear()
        proc = subprocess.run([sys.executable, __file__, "--clients", srv.url, "--n", str(size),
                               "--seconds", str(seconds), "--spread", str(spread)],
                              capture_output=True, text=True, timeout=seconds + spread + 120, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"the client process failed:\n{proc.stderr[-3000:]}")
        clients = json.loads(proc.stdout.strip().splitlines()[-1])
        deadline = time.monotonic() + 15
        while srv.call(lambda: srv.state.active) and time.monotonic() < deadline:
            time.sleep(0.05)
        sessions = srv.call(lambda: list(srv.state.recent))[-size:]
        steps = batch.summary()
    moshi.close_all()
    frames = sum(s["frames"] for s in sessions) or 1
    late = sum(s["late_frames"] for s in sessions)
    skipped = sum(s["skipped_frames"] for s in sessions)
    per_session = [s["queues"].get("moshi", {}).get("refused", 0) for s in sessions]
    refused = sum(per_session)
    errors = [e for c in clients for e in c["errors"]]
    dropped_late = sum(c["dropped_after_1s"] for c in clients)
    gen_lag = max((c["gen_lag"] for c in clients), default=0.0)
    held = (not errors and len(clients) == size and dropped_late == 0 and skipped == 0
            and 100 * late / frames <= MAX_LATE_PCT and gen_lag <= MAX_GEN_LAG_S
            and steps["step_p99_ms"] <= model.frame_s * 1000)
    return {"B": size, "held": held, "step_p50_ms": steps["step_p50_ms"], "step_p90_ms": steps["step_p90_ms"],
            "step_p99_ms": steps["step_p99_ms"], "step_max_ms": steps["step_max_ms"],
            "active_mean": steps["active_mean"], "dropped_frames": refused,
            "dropped_per_session": [min(per_session, default=0), max(per_session, default=0)], "dropped_after_1s": dropped_late,
            "late_pct": round(100 * late / frames, 2), "skipped": skipped, "gen_lag_s": round(gen_lag, 3),
            "received_audio_s_min": min((c["received_s"] for c in clients), default=0.0), "errors": errors[:3]}


async def _clients(url: str, n: int, seconds: float, spread: float) -> list[dict]:
    from fullduplex.server.client import converse

    audio = speech(seconds)

    async def one(i: int) -> dict:
        await asyncio.sleep(spread * i / max(n, 1))
        try:
            run = await asyncio.wait_for(converse(url, audio), seconds + 30)
        except Exception as e:   # noqa: BLE001  a benchmark reports, it does not stop
            return {"errors": [f"{type(e).__name__}: {e}"], "gen_lag": 0.0, "dropped_after_1s": 0, "received_s": 0.0}
        lags = [e for e in run.events if e.kind == "moshi.lag" and e.t > 1.0]
        return {"errors": run.errors, "gen_lag": run.max_send_lag_s, "received_s": round(run.received_audio_s, 2),
                "dropped_after_1s": sum(int(e.data.get("dropped", 0)) for e in lags), "gaps": run.gaps}
    return await asyncio.gather(*(one(i) for i in range(n)))


# -- the whole run ----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_options(parser)
    parser.add_argument("--slots", default=None, help="batch sizes, comma-separated (default CPU 1,2,4,6; "
                                                      "GPU 1,8,16,32,48,64)")
    parser.add_argument("--frames", type=int, default=50, help="raw: batched steps timed per size (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="serve: seconds each client streams (default 10)")
    parser.add_argument("--spread", type=float, default=1.0, help="serve: client starts spread over (default 1 s)")
    parser.add_argument("--raw-only", action="store_true")
    parser.add_argument("--serve-only", action="store_true")
    parser.add_argument("--clients", default=None, help=argparse.SUPPRESS)   # the client process
    parser.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.clients:
        print(json.dumps(asyncio.run(_clients(args.clients, args.n, args.seconds, args.spread))))
        return 0
    import torch
    device = moshi.resolve_device(args.device)
    sizes = [int(s) for s in (args.slots or ("1,8,16,32,48,64" if device.type == "cuda" else "1,2,4,6")).split(",")]
    model, cfg, scratch = load_bench_model(args)
    sampling = sampling_params(cfg.moshi)
    gpu = f", {torch.cuda.get_device_name(model.device)}" if device.type == "cuda" else ""
    print(f"{model.describe()}; torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s){gpu}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    if device.type == "cuda":
        print(f"weights: {torch.cuda.memory_allocated(model.device) / 1e9:.1f} GB allocated; automatic slots for "
              f"this card: {moshi.auto_slots(model)} (~{moshi.per_slot_bytes(model) / 1e9:.2f} GB per slot estimated)",
              flush=True)
    if not args.serve_only:
        print(f"\nraw: one batched step for B slots, {args.frames} steps each (ms)", flush=True)
        for size in sizes:
            print("  " + json.dumps(raw(model, size, args.frames, sampling)), flush=True)
    if not args.raw_only:
        print(f"\nthrough serve: B clients over Opus on loopback, {args.seconds:g} s each "
              f"(load average {os.getloadavg()[0]:.2f})", flush=True)
        for size in sizes:
            row = through_serve(model, cfg.with_(moshi={"slots": size}), size, args.seconds, args.spread)
            print("  " + json.dumps(row), flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:
        print(f"moshi_batch: error: {e}", file=sys.stderr)
        sys.exit(2)
