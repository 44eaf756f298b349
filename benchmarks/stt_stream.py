"""What recognising a turn while it goes on costs, and what it gets right: the duplex ear's two streams.

    .venv/bin/python benchmarks/stt_stream.py [--modes segments,native,whole] [--long]

Each clip is fed as the duplex agent's ear feeds it: 20 ms frames through the project's VAD (Silero +
segmenter, VadConfig), audio to the stream in 100 ms batches, and at every pause (``ask_after_s`` of
silence after speech, DuplexConfig) the words so far are asked for (``partial()``); at the clip's end
one last ask. Modes:

- ``segments``: SttStream (the default): each ask transcribes the audio since the last kept cut; a
  cut is kept at an ask followed by 0.25 s of quiet, after a stretch of >= ``segment_min_s``.
- ``native``: Moonshine's own stream with partials every 0.6 s of audio (the ear before issue 17's cut).
- ``whole``: at every ask, the whole turn transcribed again (what a non-streaming recogniser would do).

Per mode: pooled WER of the last ask's words against the reference (the five tests/data clips),
process CPU seconds per second of audio (2 cores, single-threaded Moonshine), and the wall time of an
ask (the ear's answer at a pause: the agent decides nothing until it is in), median and p90.
``--long`` adds the car-repair call's caller channel (238 s, ../shared/data; no reference, CPU and
ask time only): one long turn, as if the agent never took the floor.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fullduplex.audio.io import read_user_audio  # noqa: E402
from fullduplex.config import SttConfig  # noqa: E402
from fullduplex.models.stt import MoonshineStt, SttStream  # noqa: E402
from fullduplex.testing.clips import FRAME, pause_asks, read_clip, reference_text  # noqa: E402
from fullduplex.textnorm import word_errors  # noqa: E402

DATA = ROOT / "tests" / "data"
CLIPS = ["jfk", "librispeech-2412-153948-0000", "ljspeech-LJ002-0020", "ljspeech-LJ002-0035",
         "ami-es2011a-headset-40s-46s"]
LONG = ROOT.parent / "shared" / "data" / "conversations" / "phone-auto-repairs-49" / "channels" / "caller.wav"
BATCH = 1600   # the ear's 100 ms batch


class Whole(SttStream):
    """Every ask transcribes the whole turn again: no cut is ever kept."""

    def _keep_cut(self, audio: np.ndarray) -> None:
        pass


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def feed(stream, clip: np.ndarray, asks: set[int]) -> tuple[str, list[float]]:
    """The ear's way: 100 ms batches, and at an ask the rest pushed first; returns the last words and ask times."""
    pending, ask_ms, text = [], [], ""
    for i in range(len(clip) // FRAME):
        pending.append(clip[i * FRAME:(i + 1) * FRAME])
        if sum(len(p) for p in pending) >= BATCH:
            stream.push(np.concatenate(pending))
            pending = []
        if i in asks or i == len(clip) // FRAME - 1:
            t0 = time.perf_counter()
            if pending:
                stream.push(np.concatenate(pending))
                pending = []
            text = stream.partial().text
            ask_ms.append((time.perf_counter() - t0) * 1000)
    stream.close()
    return text, ask_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", default="segments,native,whole")
    ap.add_argument("--long", action="store_true", help="add the 238 s caller channel (CPU and ask time only)")
    args = ap.parse_args()
    clips = {stem: read_clip(DATA, f"{stem}.wav") for stem in CLIPS}
    if args.long:
        clips["phone-caller-238s"] = read_user_audio(LONG)[0]
    asks = {stem: pause_asks(clip) for stem, clip in clips.items()}
    print(f"{len(clips)} clips, {sum(len(c) for c in clips.values()) / 16000:.0f} s of audio, "
          f"{sum(len(a) + 1 for a in asks.values())} asks", file=sys.stderr)
    stt = {"segments": MoonshineStt(SttConfig()), "native": MoonshineStt(SttConfig(stream="native", partial_interval_s=0.6))}
    stt["whole"] = stt["segments"]
    stt["segments"].transcribe(clips["jfk"][:16000])   # warm
    print("| stream | WER (5 clips) | CPU-s per s of audio | ask ms median / p90 / max |")
    print("|---|---|---|---|")
    for mode in args.modes.split(","):
        model = stt[mode]
        errors = words = 0
        ask_ms, cpu, audio_s = [], 0.0, 0.0
        for stem, clip in clips.items():
            stream = Whole(model) if mode == "whole" else model.stream()
            c0 = cpu_s()
            text, ms = feed(stream, clip, asks[stem])
            cpu += cpu_s() - c0
            audio_s += len(clip) / 16000
            ask_ms += ms
            if stem in CLIPS:
                e, n = word_errors(reference_text(DATA, stem), text)
                errors, words = errors + e, words + n
            print(f"  {mode} {stem}: {len(ms)} asks, {text[:70]!r}", file=sys.stderr)
        p90 = float(np.percentile(ask_ms, 90))
        print(f"| {mode} | {errors / words:.3f} ({errors}/{words}) | {cpu / audio_s:.3f} | "
              f"{statistics.median(ask_ms):.0f} / {p90:.0f} / {max(ask_ms):.0f} |")


if __name__ == "__main__":
    main()
