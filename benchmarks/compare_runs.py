"""Compare bench runs of the same scenarios, paired: what changed, beyond run-to-run noise.

    python benchmarks/compare_runs.py OUT_A OUT_B [OUT_C ...]     (folders of `fullduplex bench run`, scored)

Per run: FDB turn TOR and latency, the agent's own speech end -> audio, CPU and CPU per model (medians
over scenarios, duplex agent, real scenarios). Then each later run against the first: the median of the
per-scenario latency differences with a bootstrap 95 % interval (runs of the same code differ by
0.1-0.2 s at the median on 2 cores; paired differences are much tighter). Last, gaps inside replies:
a piece that started > 50 ms after the previous piece of the same reply ended (speech not ready in time).
"""

from __future__ import annotations

import glob
import json
import random
import statistics
import sys


def summary(run: str) -> dict:
    d = json.load(open(f"{run}/report.json"))
    s = d["summaries"]["real"]["duplex"]
    scenarios = {x["id"]: x for x in d["scenarios"]["duplex"]}
    cpu: dict[str, list[float]] = {}
    for x in scenarios.values():
        for model, cpu_s in (x.get("cpu_by_model") or {}).items():
            cpu.setdefault(model, []).append(cpu_s / x["audio_s"])
    by_model = " ".join(f"{k} {statistics.median(v):.3f}" for k, v in sorted(cpu.items()))
    print(f"{run}: TOR {s['turn_tor']:.2f} latency {s['turn_latency']:.2f} (p90 {s['turn_latency_p90']:.2f}) "
          f"own {s['response']:.2f} (p90 {s['response_p90']:.2f}) onset {s['answer_onset']:.2f} "
          f"CPU {s['cpu']:.3f} | {by_model}")
    return scenarios


def paired(base: dict, other: dict) -> str:
    diffs = [other[k]["latency"] - base[k]["latency"] for k in base
             if k in other and base[k].get("latency") is not None and other[k].get("latency") is not None]
    random.seed(0)
    boots = sorted(statistics.median(random.choices(diffs, k=len(diffs))) for _ in range(2000))
    return (f"paired median diff {statistics.median(diffs):+.3f} s, 95% CI [{boots[50]:+.3f}, {boots[1949]:+.3f}] "
            f"over {len(diffs)} scenarios; mean {statistics.mean(diffs):+.3f}")


def reply_gaps(run: str) -> str:
    gaps, pairs = [], 0
    for path in glob.glob(f"{run}/duplex/real/*/*/timeline.jsonl"):
        synthesised, last = {}, {}
        for e in map(json.loads, open(path)):
            if e["kind"] == "tts.piece":
                synthesised[(e["turn"], e["index"])] = e["audio_s"]
            elif e["kind"] == "vad.speech_start":
                last = {}   # the user spoke: a pause after it is a yield, not a gap
            elif e["kind"] == "playback.piece":
                prev = last.get(e["turn"])
                if prev is not None and prev[0] == e["index"] - 1:
                    pairs += 1
                    gaps.append(e["t"] - (prev[1] + synthesised.get((e["turn"], prev[0]), 0)))
                last[e["turn"]] = (e["index"], e["t"])
    late = [g for g in gaps if g > 0.05]
    return f"{run}: {pairs} piece->next pairs; late > 50 ms: {len(late)}" + (
        f", median {statistics.median(late):.2f} s, max {max(late):.2f} s" if late else "")


def main() -> None:
    runs = sys.argv[1:]
    if len(runs) < 2:
        sys.exit(__doc__)
    data = {run: summary(run) for run in runs}
    for run in runs[1:]:
        print(f"{run} - {runs[0]}: {paired(data[runs[0]], data[run])}")
    for run in runs:
        print(reply_gaps(run))


if __name__ == "__main__":
    main()
