"""Pictures for the bench report: each scenario's two streams on one time axis, and a summary.

A scenario picture shows, top to bottom: the user's speech (VAD on input.wav) with the annotated
event shaded, the agent's speech (VAD on output.wav) with its transcribed words, and the agent's
decisions from its timeline (end of turn, playback start, barge-ins, backchannels).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from ..audio.recorder import read_timeline  # noqa: E402
from . import metrics  # noqa: E402
from .runner import scenario_dir  # noqa: E402
from .scenarios import Scenario  # noqa: E402

MARKERS = {"turn.end": ("end of turn", "tab:red"), "playback.start": ("agent starts", "tab:green"),
           "bargein": ("barge-in", "tab:purple"), "backchannel": ("backchannel", "tab:orange")}


def plot_scenario(path: Path, scenario: Scenario, agent: str, output_wav: Path, timeline: Path | None,
                  words: list[dict], row: dict) -> None:
    user = metrics.speech_segments(scenario.input_path)
    bot = metrics.speech_segments(output_wav)
    duration = row.get("output_s") or max([e for _, e in user + bot] + [1.0])
    fig, ax = plt.subplots(figsize=(12, 2.8))
    if scenario.span:
        s, e = scenario.span
        ax.axvspan(s, max(e, s + 0.05), color="gold", alpha=0.35, label=scenario.kind.replace("_", " "))
    ax.broken_barh([(s, e - s) for s, e in user], (1.1, 0.8), color="tab:blue", label="user speech")
    ax.broken_barh([(s, e - s) for s, e in bot], (0.1, 0.8), color="tab:gray", label=f"{agent} speech")
    for i, w in enumerate(words):
        ax.text(w["start"], 0.5 + 0.25 * (i % 2 - 0.5), w["text"], fontsize=7, va="center")
    seen = set()
    if timeline is not None and timeline.exists():
        for ev in read_timeline(timeline):
            if ev.kind in MARKERS:
                label, colour = MARKERS[ev.kind]
                ax.axvline(ev.t, color=colour, lw=1, ls="--", label=None if ev.kind in seen else label)
                seen.add(ev.kind)
    ax.set_xlim(0, duration)
    ax.set_ylim(0, 2)
    ax.set_yticks([0.5, 1.5], [agent, "user"])
    ax.set_xlabel("seconds")
    headline = ", ".join(f"{k}={row[k]:.2f}" for k in ("tor", "latency", "stop_latency", "bc_freq")
                         if isinstance(row.get(k), (int, float)))
    ax.set_title(f"{scenario.id}  [{headline}]", fontsize=9)
    ax.legend(loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_scenarios(out_dir: Path, scenarios: list[Scenario], rows: dict[str, list[dict]]) -> None:
    by_id = {s.id: s for s in scenarios}
    for agent, agent_rows in rows.items():
        for row in agent_rows:
            scenario = by_id[row["id"]]
            folder = scenario_dir(out_dir, agent, scenario)
            target = out_dir / "plots" / agent / (scenario.id.replace("/", "__") + ".png")
            if not target.exists():
                plot_scenario(target, scenario, agent, folder / "output.wav", folder / "timeline.jsonl",
                              row.get("words", []), row)


def plot_summary(path: Path, summaries: dict[str, dict]) -> None:
    panels = [("turn_latency", "turn-taking latency (s) ↓"), ("pause_tor", "pause TOR ↓"),
              ("bc_freq", "backchannels per s ↑"), ("interrupt_tor", "interruption TOR ↑"),
              ("stop_latency", "stop latency (s) ↓"), ("cpu", "CPU s per s of audio")]
    agents = list(summaries)
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3))
    for ax, (key, title) in zip(axes, panels):
        values = [summaries[a].get(key) or 0.0 for a in agents]
        ax.bar(range(len(agents)), values, color="tab:blue")
        ax.set_xticks(range(len(agents)), agents, rotation=30, fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
