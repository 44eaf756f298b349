"""Per-frame time of Moshi: Mimi encode + ``LMGen.step`` + Mimi decode for one 80 ms frame.

    .venv/bin/python benchmarks/moshi_frame.py                        # tiny random checkpoint, CPU
    .venv/bin/python benchmarks/moshi_frame.py --dir CHECKPOINT        # a real checkpoint folder
    .venv/bin/python benchmarks/moshi_frame.py --full --device cuda    # Moshi 7B's architecture, random bf16 weights
    ... --agent                                                        # also: 10 s through the agent, in real time

Prints p50/p90/max per stage over --frames frames (after a warm-up) and whether the model keeps real
time (p90 of the whole frame within 80 ms). ``--agent`` then streams speech through ``--agent moshi``
itself (a batch of one slot, resampling, playout) on the wall clock and prints its ``moshi.summary``;
``benchmarks/moshi_batch.py`` measures B conversations on one batch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fullduplex.config import Config  # noqa: E402
from fullduplex.errors import UserError  # noqa: E402
from fullduplex.models import moshi  # noqa: E402


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Which Moshi to time (shared with benchmarks/moshi_batch.py)."""
    parser.add_argument("--dir", default=None, help="a Moshi checkpoint folder (default: a fresh tiny random one)")
    parser.add_argument("--full", action="store_true", help="Moshi 7B's architecture with random weights (a GPU: "
                                                            "~16 GB of weights)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, float32 on CPU), bfloat16, float32")
    parser.add_argument("--threads", type=int, default=1, help="CPU torch threads (default 1, as the agent)")


def load_bench_model(args: argparse.Namespace):
    """(model, its Config, the scratch folder of a tiny checkpoint: keep it alive while the model is used)."""
    import torch
    if args.full and moshi.resolve_device(args.device).type != "cuda":
        raise UserError("--full needs a CUDA GPU (--device cuda): the 7B model's weights alone are 15-30 GB and "
                        "it takes seconds per frame on a CPU")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    scratch = tempfile.TemporaryDirectory(prefix="moshi-tiny-")   # removed when the script ends
    folder = "" if args.full else str(args.dir or moshi.make_tiny(Path(scratch.name) / "tiny"))
    cfg = Config().with_(moshi={"checkpoint_dir": folder, "device": args.device, "dtype": args.dtype,
                                "threads": args.threads})
    model = moshi.random_full_size(args.device, args.dtype) if args.full else moshi.load_moshi(cfg.moshi)
    return model, cfg, scratch


def frame_times(model, frames: int, seed: int = 0) -> dict[str, list[float]]:
    import torch

    torch.manual_seed(seed)
    moshi.reset_streaming(model)
    gen = model.gen
    rng = np.random.default_rng(seed)
    times: dict[str, list[float]] = {"encode": [], "lm_step": [], "decode": [], "frame": []}
    sync = (lambda: torch.cuda.synchronize(model.device)) if model.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for i in range(frames + 3):   # the first 3 frames fill the delays and warm caches: not counted
            x = torch.from_numpy((0.05 * rng.standard_normal(model.frame_size)).astype(np.float32))
            x = x.to(model.device)[None, None]
            t0 = time.perf_counter()
            codes = model.mimi.encode(x)
            sync()
            t1 = time.perf_counter()
            tokens = gen.step(codes[:, :, :1])
            sync()
            t2 = time.perf_counter()
            if tokens is not None:
                model.mimi.decode(tokens[:, 1:]).cpu()
            t3 = time.perf_counter()
            if i >= 3:
                for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    value_ms = value * 1000
                    times[key].append(value_ms)
    return times


def through_agent(model, cfg: Config, seconds: float) -> dict:
    import soundfile as sf

    from fullduplex.engines import ModelStack, make_agent
    from fullduplex.models.moshi import adopt
    from fullduplex.runtime.runner import run_agent

    clip, _ = sf.read(ROOT / "tests" / "data" / "jfk.wav", dtype="float32")
    audio = np.resize(clip, int(seconds * 16000)).astype(np.float32)
    adopt(model, cfg.moshi)        # the model measured above serves the agent's call
    agent = make_agent("moshi", ModelStack(cfg), cfg)
    result = run_agent(agent, audio)
    summary = next(e for e in result.events if e.kind == "moshi.summary").data
    summary["step_p99_ms"] = round(result.step_percentile(99), 2)
    summary["late_frames"] = result.late_frames
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_options(parser)
    parser.add_argument("--frames", type=int, default=100, help="frames to time (default 100 = 8 s of audio)")
    parser.add_argument("--agent", action="store_true", help="also stream 10 s through the agent in real time")
    args = parser.parse_args()

    import torch
    if args.frames < 1:
        raise UserError("--frames must be at least 1")
    model, cfg, scratch = load_bench_model(args)
    print(f"{model.describe()}; loaded in {model.load_s:.1f} s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU thread(s)"
          + (f", {torch.cuda.get_device_name(model.device)}" if model.device.type == "cuda" else ""))
    times = frame_times(model, args.frames)
    budget = model.frame_s * 1000
    print(f"per {budget:.0f} ms frame, over {args.frames} frames (ms):   p50     p90     max")
    for stage, values in times.items():
        print(f"  {stage:10s}                              {np.percentile(values, 50):7.2f} "
              f"{np.percentile(values, 90):7.2f} {max(values):7.2f}")
    p90 = float(np.percentile(times["frame"], 90))
    print(f"real time: {'yes' if p90 <= budget else 'NO'} (p90 {p90:.1f} ms of a {budget:.0f} ms budget; "
          f"real-time factor {np.percentile(times['frame'], 50) / budget:.2f})")
    if args.agent:
        cfg = cfg.with_(moshi={"slots": 1})   # one call: a batch of one
        print("through the agent, 10 s in real time:", through_agent(model, cfg, 10.0))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:
        print(f"moshi_frame: error: {e}", file=sys.stderr)
        sys.exit(2)
