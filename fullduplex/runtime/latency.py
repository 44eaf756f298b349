"""The per-turn latency breakdown, read off the event timeline.

Every stage is measured from the end of the user's speech (the VAD's last speech sample before the
end-of-turn decision), so the columns add up the way a user experiences them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..events import Event

# (column, event kind) in pipeline order
STAGES = [
    ("end_of_turn", "turn.end"),
    ("final_transcript", "stt.final"),
    ("first_llm_token", "llm.first_token"),
    ("last_llm_token", "llm.done"),
    ("first_tts_audio", "tts.first_audio"),
    ("agent_audio", "playback.start"),
]


@dataclass
class TurnLatency:
    turn: int
    speech_end: float
    stages: dict[str, float | None]   # seconds after speech_end; None if the stage never happened
    user_text: str = ""
    agent_text: str = ""

    @property
    def response(self) -> float | None:
        return self.stages.get("agent_audio")


def breakdown(events: list[Event]) -> list[TurnLatency]:
    turns: list[TurnLatency] = []
    last_end = {e.turn: e for e in events if e.kind == "turn.end"}   # a resumed turn ends again later
    for end in last_end.values():
        mine = [e for e in events if e.turn == end.turn]
        speech_end = float(end.data.get("speech_end", end.t))
        stages: dict[str, float | None] = {}
        for column, kind in STAGES:
            hit = next((e for e in mine if e.kind == kind and e.t >= end.t - 1e-9), None)
            stages[column] = None if hit is None else round(hit.t - speech_end, 3)
        user = next((e.data.get("text", "") for e in mine if e.kind == "stt.final" and e.t >= end.t - 1e-9), "")
        # What the user heard (an override may have changed it), else what the LLM wrote.
        agent = next((e.data.get("text", "") for e in mine if e.kind == "playback.end"),
                     next((e.data.get("text", "") for e in mine if e.kind == "llm.done"), ""))
        turns.append(TurnLatency(end.turn, speech_end, stages, user, agent))
    return turns


def format_breakdown(turns: list[TurnLatency]) -> str:
    if not turns:
        return "no user turn ended (the agent heard no speech followed by enough silence)"
    head = ["turn", "speech end"] + [c.replace("_", " ") for c, _ in STAGES]
    rows = [[str(t.turn), f"{t.speech_end:.2f}s"] + ["-" if t.stages[c] is None else f"+{t.stages[c]:.2f}"
                                                      for c, _ in STAGES] for t in turns]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    for t in turns:
        lines.append(f"  turn {t.turn}: user: {t.user_text!r}")
        lines.append(f"  {' ' * len(str(t.turn))}      agent: {t.agent_text!r}")
    answered = [t.response for t in turns if t.response is not None]
    if answered:
        lines.append(f"median response latency (end of user speech -> agent audio): {np.median(answered):.2f} s "
                     f"over {len(answered)} answered turn(s)")
    return "\n".join(lines)
