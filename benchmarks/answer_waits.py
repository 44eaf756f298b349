"""Where the duplex agent's answers waited: each step from the user's speech end to the answer's first sound.

    .venv/bin/python benchmarks/answer_waits.py DIR [DIR ...]

DIR: a bench output folder or a `serve --record` folder (`server_load.py --record DIR`); every
``timeline.jsonl`` below it is read. For every turn the agent took (``turn.end``), from its event log:

  words     speech end -> the words up to the pause are in (the ear's answer to the pause's ask: the
            first ``stt.partial`` of the turn after the speech end; missing where the words did not change)
  decide    speech end -> ``turn.end`` (the floor rule: silence, P(done))
  first tok the answer's draft start -> its LLM's first token (waits for the shared LLM included)
  audio     the first token -> the first piece's audio (``tts.first_audio``; the shared Piper)
  answer    speech end -> ``playback.start`` (the engine-measured latency)

Medians and 90th percentiles over the turns; asserts nothing. Under load each step's growth against
one call alone says which shared model the answers queue at.

Where the sessions' ``session.json`` give ``clock_zero`` (the wall-clock time of their t = 0; servers since
this field), their timelines are laid on one clock, and for each answer's wait for its first LLM token
the LLM tokens that other calls got meanwhile are counted by what they were for: an *answer* (its turn
ended, nothing of it playing yet), a *continuation* (the rest of a reply already playing) or a *draft*
(a turn not yet ended). One llama.cpp context writes one token at a time, so this is what the waiting
answer waited behind.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

STEPS = ("words", "decide", "first tok", "audio", "answer")


def waits(rows: list[dict]) -> list[dict[str, float]]:
    out = []
    for end in (r for r in rows if r["kind"] == "turn.end"):
        turn, speech_end, t_end = end.get("turn"), end["speech_end"], end["t"]
        mine = [r for r in rows if r.get("turn") == turn]
        later = lambda kind, after: next((r["t"] for r in mine if r["kind"] == kind and r["t"] >= after), None)  # noqa: E731
        drafts = [r["t"] for r in mine if r["kind"] == "draft.start" and r["t"] <= t_end + 1e-6]
        draft = drafts[-1] if drafts else t_end
        first = later("llm.first_token", draft)
        audio = later("tts.first_audio", first) if first is not None else None
        play = later("playback.start", t_end)
        step = {"words": later("stt.partial", speech_end), "decide": t_end, "answer": play}
        row = {k: v - speech_end for k, v in step.items() if v is not None}
        if first is not None:
            row["first tok"] = first - draft
        if audio is not None:
            row["audio"] = audio - first
        out.append(row)
    return out


def token_uses(rows: list[dict], zero: float) -> list[tuple[float, str]]:
    """(wall-clock time, what for) of each LLM token of one call: answer, continuation or draft."""
    ended = {r.get("turn"): r["t"] for r in rows if r["kind"] == "turn.end"}
    playing = {}
    for r in rows:
        if r["kind"] == "playback.start":
            playing.setdefault(r.get("turn"), r["t"])
    out = []
    for r in rows:
        if r["kind"] == "llm.token":
            turn, t = r.get("turn"), r["t"]
            use = ("draft" if t < ended.get(turn, float("inf")) else
                   "continuation" if t >= playing.get(turn, float("inf")) else "answer")
            out.append((zero + t, use))
    return out


def behind(calls: list[tuple[list[dict], float]]) -> dict[str, int]:
    """Tokens the other calls got while each answer waited for its first token, by what they were for."""
    counts = {"answer": 0, "continuation": 0, "draft": 0}
    uses = [token_uses(rows, zero) for rows, zero in calls]
    for i, (rows, zero) in enumerate(calls):
        for end in (r for r in rows if r["kind"] == "turn.end"):
            mine = [r for r in rows if r.get("turn") == end.get("turn")]
            first = next((r["t"] for r in mine if r["kind"] == "llm.first_token" and r["t"] >= end["t"]), None)
            if first is None or first - end["t"] <= 0:
                continue
            lo, hi = zero + end["t"], zero + first
            for j, other in enumerate(uses):
                if j != i:
                    for t, use in other:
                        counts[use] += lo <= t < hi
    return counts


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    for folder in argv:
        rows, calls = [], []
        paths = [Path(d) / "timeline.jsonl" for d, _, files in os.walk(folder, followlinks=True) if "timeline.jsonl" in files]
        for path in sorted(paths):
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            rows += waits(lines)
            info = path.with_name("session.json")
            zero = json.loads(info.read_text()).get("clock_zero") if info.exists() else None
            if zero is not None:
                calls.append((lines, zero))
        print(f"{folder}: {len(rows)} turns taken")
        for step in STEPS:
            values = [r[step] for r in rows if step in r]
            if values:
                print(f"  {step:10s} median {np.median(values):5.2f} s  p90 {np.percentile(values, 90):5.2f} s  (n={len(values)})")
        if len(calls) > 1:
            counts = behind(calls)
            total = sum(counts.values()) or 1
            print("  while answers waited for their first token (turn end -> it), the other calls' LLM tokens were for: "
                  + ", ".join(f"{k} {v} ({100 * v / total:.0f} %)" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
