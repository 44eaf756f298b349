"""CPU per second of call, by model, over the sessions a server recorded.

    .venv/bin/python benchmarks/session_cpu.py DIR [DIR ...]

DIR: a `serve --record` folder (`server_load.py --record DIR`); every ``session.json`` below it is read.
Per model (and in all), the CPU-seconds each session's threads spent on it (``cpu_by_model``, accounted
where the work ran: a shared model is charged to the call that asked) per second of that session's
audio: median and range over the sessions of each DIR, side by side. Asserts nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


def per_second(folder: Path) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {}
    for path in sorted(Path(d) / "session.json" for d, _, names in os.walk(folder, followlinks=True)
                       if "session.json" in names):
        s = json.loads(path.read_text())
        seconds = s.get("audio_s") or 0
        if seconds <= 0:
            continue
        for model, cpu in {**s.get("cpu_by_model", {}), "all": s.get("cpu_accounted_s", 0.0)}.items():
            rows.setdefault(model, []).append(cpu / seconds)
    return rows


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    folders = [Path(a) for a in sys.argv[1:]]
    tables = {f: per_second(f) for f in folders}
    models = sorted({m for t in tables.values() for m in t}, key=lambda m: (m == "all", m))
    print("CPU-s per s of call, median [min-max] over sessions")
    print(f"{'model':12s}" + "".join(f"{f.name[-28:]:>30s}" for f in folders))
    for m in models:
        cells = []
        for f in folders:
            v = tables[f].get(m)
            cells.append(f"{np.median(v):.4f} [{min(v):.3f}-{max(v):.3f}]" if v else "-")
        print(f"{m:12s}" + "".join(f"{c:>30s}" for c in cells))
    print(f"{'sessions':12s}" + "".join(f"{len(next(iter(tables[f].values()), [])):>30d}" for f in folders))


if __name__ == "__main__":
    main()
