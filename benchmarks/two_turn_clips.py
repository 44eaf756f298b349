"""Two-turn calls for `server_load.py --clip`: a test clip, 7 s of silence, another test clip.

One-sentence clients all ask the same thing at the same moment, which hides what load does to a call that
goes on (its history, a second answer while other calls speak). These three calls ask twice, differently:

    .venv/bin/python benchmarks/two_turn_clips.py build/two-turn
    .venv/bin/python benchmarks/server_load.py --agents duplex --clients 4 --repeat 1 --tail 7 \
        --clip build/two-turn/a.wav,build/two-turn/b.wav,build/two-turn/c.wav
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
GAP_S = 7.0
CALLS = {   # name: (first turn, second turn), test clips (tests/data/LICENSES.md)
    "a": ("ami-es2011a-headset-40s-46s", "ljspeech-LJ002-0035"),
    "b": ("ljspeech-LJ002-0020", "ami-es2011a-headset-40s-46s"),
    "c": ("ljspeech-LJ002-0035", "ljspeech-LJ002-0020"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for a.wav, b.wav, c.wav")
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    for name, (first, second) in CALLS.items():
        parts = [sf.read(DATA / f"{clip}.wav", dtype="float32") for clip in (first, second)]
        rate = parts[0][1]
        audio = np.concatenate([parts[0][0], np.zeros(int(GAP_S * rate), np.float32), parts[1][0]])
        sf.write(out / f"{name}.wav", audio, rate)
        print(f"{out / name}.wav: {first} + {GAP_S:.0f} s + {second} ({len(audio) / rate:.1f} s)")


if __name__ == "__main__":
    main()
