"""What the duplex engine's ear costs and hears at a pause (issue 17): Moonshine's stream with and without
unasked refreshes, and the words an ask returns at 0.06 s of silence against the words 0.5 s later.

    .venv/bin/python benchmarks/stt_ask.py [--suite out/suite]

Part 1: CPU per second of audio of pushing the test clips in 100 ms batches (the ear's batches), with
refreshes every 0.6 s of audio (the old default) and with none (``SttConfig.partial_interval_s`` 0).
Part 2: at the last two VAD speech ends of every real turn-taking scenario of the suite (up to 6 s of the
turn before each), the words asked for 60 ms into the pause, and whether they are still the words after
0.5 s more audio; timed. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import glob
import statistics
import time
from dataclasses import replace
from pathlib import Path

import soundfile as sf

from fullduplex.audio.frames import SAMPLE_RATE
from fullduplex.config import SttConfig
from fullduplex.models.stt import load_stt
from fullduplex.models.vad import speech_spans
from fullduplex.testing import clips

BATCH = SAMPLE_RATE // 10
CLIPS = ("jfk.wav", "librispeech-2412-153948-0000.wav", "ami-es2011a-headset-40s-46s.wav")


def push_cost(interval_s: float) -> list[float]:
    stt = load_stt(replace(SttConfig(), partial_interval_s=interval_s))
    costs = []
    for name in CLIPS:
        audio = clips.read_clip(Path(__file__).resolve().parents[1] / "tests" / "data", name)
        stream = stt.stream()
        t0 = time.thread_time()
        for i in range(0, len(audio), BATCH):
            stream.push(audio[i:i + BATCH])
        costs.append((time.thread_time() - t0) / (len(audio) / SAMPLE_RATE))
        stream.close()
    return costs


def asks(suite: str) -> None:
    stt = load_stt(SttConfig())
    same = changed = 0
    took = []
    for folder in sorted(glob.glob(f"{suite}/real/turn_taking/*/")):
        audio, _ = sf.read(folder + "input.wav", dtype="float32")
        ends = [e for _, e in speech_spans(audio) if e < len(audio) / SAMPLE_RATE - 0.7]
        for end in ends[-2:]:
            stream = stt.stream()
            cut = int((end + 0.06) * SAMPLE_RATE)
            for i in range(max(0, int((end - 6.0) * SAMPLE_RATE)), cut, BATCH):
                stream.push(audio[i:min(i + BATCH, cut)])
            t0 = time.perf_counter()
            asked = stream.partial().text
            took.append(time.perf_counter() - t0)
            stream.push(audio[cut:cut + SAMPLE_RATE // 2])
            later = stream.partial().text
            stream.close()
            same, changed = (same + 1, changed) if asked == later else (same, changed + 1)
    print(f"asks at 0.06 s of silence: {same + changed}; the same words 0.5 s later: {same}, changed: {changed} "
          f"(a change may also be the speaker going on); ask took median {statistics.median(took) * 1000:.0f} ms, "
          f"max {max(took) * 1000:.0f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="out/suite", help="a suite from `fullduplex bench build-suite` (part 2)")
    args = p.parse_args()
    for interval in (0.6, 0.0):
        costs = push_cost(interval)
        label = f"refreshes every {interval:g} s" if interval else "no refreshes (asked only)"
        print(f"{label}: pushing costs "
              + ", ".join(f"{c:.3f}" for c in costs) + f" CPU-s per s of audio ({', '.join(CLIPS)})")
    if Path(args.suite, "real", "turn_taking").is_dir():
        asks(args.suite)
    else:
        print(f"no real turn-taking scenarios under {args.suite}: part 2 skipped (fullduplex bench build-suite)")


if __name__ == "__main__":
    main()
