"""``fullduplex bench report DIR``: score every finished scenario run and write the comparison.

Scores are cached per scenario run (``score.json`` beside its ``output.wav``, with the words used),
so a report after a resumed run transcribes only what is new. Writes into DIR:
``report.md`` (architectures x metrics, medians and p90, FDB's published rows for reference),
``report.json`` (every number, per scenario and aggregated), ``plots/<agent>/<scenario>.png`` (both
streams on one time axis) and ``summary.png``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..audio.io import write_text
from ..audio.recorder import read_timeline
from ..runtime.latency import breakdown
from ..errors import UserError
from ..models.stt import Word
from . import metrics
from .runner import BENCH_FILE, RUN_FILE, scenario_dir
from .scenarios import Scenario, load_suite

SCORE_FILE = "score.json"

# Full-Duplex-Bench v1 README (published figures, on FDB's own data; Candor = real speech).
# Keys as ours; pause TOR is the Candor (real) column, the synthetic one is in "pause_tor_synthetic".
PUBLISHED = {
    "dGSLM": {"pause_tor": 0.935, "pause_tor_synthetic": 0.934, "bc_tor": 0.691, "bc_freq": 0.015, "bc_jsd": 0.934,
              "turn_tor": 0.975, "turn_latency": 0.352, "interrupt_tor": 0.917, "interrupt_latency": 2.531},
    "Moshi": {"pause_tor": 0.980, "pause_tor_synthetic": 0.985, "bc_tor": 1.000, "bc_freq": 0.001, "bc_jsd": 0.957,
              "turn_tor": 0.941, "turn_latency": 0.265, "interrupt_tor": 1.000, "interrupt_latency": 0.257},
    "Freeze-Omni": {"pause_tor": 0.481, "pause_tor_synthetic": 0.642, "bc_tor": 0.636, "bc_freq": 0.001,
                    "bc_jsd": 0.997, "turn_tor": 0.336, "turn_latency": 0.953, "interrupt_tor": 0.867,
                    "interrupt_latency": 1.409},
    "Gemini Live": {"pause_tor": 0.310, "pause_tor_synthetic": 0.255, "bc_tor": 0.091, "bc_freq": 0.012,
                    "bc_jsd": 0.896, "turn_tor": 0.655, "turn_latency": 1.301, "interrupt_tor": 0.891,
                    "interrupt_latency": 1.183},
    # From the 2026 version of the FDB README (only these cells were published there).
    "PersonaPlex": {"pause_tor_synthetic": 0.584, "bc_freq": 0.025, "bc_jsd": 0.649, "turn_latency": 0.070},
    "GPT-Realtime": {"pause_tor_synthetic": 0.010, "bc_freq": 0.007, "turn_latency": 1.470},
}

COLUMNS = [  # (key in the summary, header, format)
    ("pause_tor", "pause TOR ↓", "{:.2f}"),
    ("turn_tor", "turn TOR ↑", "{:.2f}"),
    ("turn_latency", "turn latency s ↓ med (p90)", "{:.2f}"),
    ("bc_tor", "BC TOR ↓", "{:.2f}"),
    ("bc_freq", "BC freq /s ↑", "{:.3f}"),
    ("bc_jsd", "BC JSD ↓", "{:.2f}"),
    ("interrupt_tor", "interrupt TOR ↑", "{:.2f}"),
    ("interrupt_latency", "interrupt latency s ↓", "{:.2f}"),
    ("stop_latency", "stop latency s ↓", "{:.2f}"),
    ("during_user", "audible in user speech", "{:.0%}"),
    ("bc_per_user_min", "BC per user-min", "{:.1f}"),
    ("cpu", "CPU s/s", "{:.2f}"),
    ("jobs_refused", "jobs refused", "{:.0f}"),
    ("response", "own timeline: speech end → audio s", "{:.2f}"),
]


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _words_for(scenario: Scenario, output: Path, stt) -> list[Word]:
    if scenario.kind == "interrupt":  # FDB transcribes only what follows the interruption
        return metrics.transcribe_words(output, stt, start_s=scenario.span[1])
    return metrics.transcribe_words(output, stt)


def score_runs(out_dir: Path, scenarios: list[Scenario], stt=None, log=print) -> dict[str, list[dict]]:
    """{agent: [score row + run stats]} for every finished run; computes missing scores."""
    rows: dict[str, list[dict]] = {}
    agents = sorted(p.name for p in out_dir.iterdir() if p.is_dir() and p.name != "plots")
    for agent in agents:
        for scenario in scenarios:
            folder = scenario_dir(out_dir, agent, scenario)
            if not (folder / RUN_FILE).exists():
                continue
            score_path = folder / SCORE_FILE
            if score_path.exists():
                row = _json(score_path)
            else:
                words = _words_for(scenario, folder / "output.wav", stt)
                row = metrics.score_scenario(scenario, folder / "output.wav", stt, words=words)
                row["words"] = [asdict(w) for w in words]
                write_text(score_path, json.dumps(row, indent=1, default=float))
            row.update({k: v for k, v in _json(folder / RUN_FILE).items() if k not in row})
            row.update(timeline_stats(folder / "timeline.jsonl"))
            rows.setdefault(agent, []).append(row)
    if not rows:
        raise UserError(f"{out_dir}: no finished scenario runs to report; run `fullduplex bench run` first")
    return rows


def timeline_stats(path: Path) -> dict:
    """What the agent's own timeline says: response latency per answered turn (end of user speech ->
    agent audio, the pipeline's view), and the fast/slow pair's decisions."""
    if not path.exists():
        return {}
    events = read_timeline(path)
    responses = [t.response for t in breakdown(events) if t.response is not None]
    decisions = [e.data.get("decision") for e in events if e.kind == "parallel.decision"]
    slow = [e.data["slow_elapsed_s"] for e in events if e.kind == "parallel.decision" and "slow_elapsed_s" in e.data]
    return {"responses": responses, "decisions": decisions, "slow_elapsed": slow,
            "backchannels_played": sum(e.kind == "backchannel" for e in events),
            "bargeins": sum(e.kind == "bargein" for e in events)}


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def summarise(rows: list[dict]) -> dict:
    """One agent's headline numbers (the table's columns) from its scenario rows."""
    agg = metrics.aggregate(rows)
    get = lambda kind, key: agg.get(kind, {}).get(key)  # noqa: E731
    cpu = [r["cpu_per_audio_s"] for r in rows if r.get("cpu_per_audio_s") is not None]
    step99 = [r["step_p99_ms"] for r in rows if r.get("step_p99_ms") is not None]
    return {
        "n": len(rows),
        "pause_tor": get("pause", "tor"),
        "turn_tor": get("turn_taking", "tor"),
        "turn_latency": get("turn_taking", "latency_median"),
        "turn_latency_p90": get("turn_taking", "latency_p90"),
        "turn_latency_mean": get("turn_taking", "latency_mean"),
        "bc_tor": get("backchannel", "tor"),
        "bc_freq": get("backchannel", "bc_freq_mean"),
        "bc_jsd": get("backchannel", "bc_jsd_mean"),
        "interrupt_tor": get("interrupt", "tor"),
        "interrupt_latency": get("interrupt", "latency_median"),
        "interrupt_latency_p90": get("interrupt", "latency_p90"),
        "stop_latency": get("interrupt", "stop_latency_median"),
        "stop_latency_p90": get("interrupt", "stop_latency_p90"),
        "during_user": get("all", "speech_during_user_share_mean"),
        "bc_per_user_min": get("all", "bc_per_user_min_mean"),
        "cpu": float(np.median(cpu)) if cpu else None,
        "response": _median([x for r in rows for x in r.get("responses", [])]),
        "response_p90": (float(np.percentile([x for r in rows for x in r.get("responses", [])], 90))
                         if any(r.get("responses") for r in rows) else None),
        "overrides": _override_rate(rows),
        "slow_elapsed": _median([x for r in rows for x in r.get("slow_elapsed", [])]),
        "step_p99_ms": float(np.max(step99)) if step99 else None,
        "queue_fill": max((r["queue_fill"] for r in rows if r.get("queue_fill") is not None), default=None),
        "jobs_refused": sum(r.get("jobs_refused", 0) for r in rows),
        "by_kind": agg,
    }


def _override_rate(rows: list[dict]) -> float | None:
    decisions = [d for r in rows for d in r.get("decisions", [])]
    if not decisions:
        return None
    return sum(d in ("replace", "amend", "replace_unheard") for d in decisions) / len(decisions)


def _cell(summary: dict, key: str, fmt: str) -> str:
    value = summary.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = fmt.format(value)
    p90 = summary.get(f"{key}_p90")
    return f"{text} ({fmt.format(p90)})" if p90 is not None else text


def markdown_table(summaries: dict[str, dict], published: bool = True) -> str:
    head = "| agent | n | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for agent, s in summaries.items():
        lines.append(f"| **{agent}** | {s['n']} | " + " | ".join(_cell(s, k, f) for k, _, f in COLUMNS) + " |")
    if published:
        for name, s in PUBLISHED.items():
            s = dict(s)
            if s.get("pause_tor") is None and s.get("pause_tor_synthetic") is not None:
                s["pause_tor"] = s["pause_tor_synthetic"]
            lines.append(f"| *{name} (published, FDB data)* | | " + " | ".join(_cell(s, k, f) for k, _, f in COLUMNS) + " |")
    return "\n".join(lines)


def report(out_dir: str | Path, suite_dir: str | Path | None = None, stt=None, plots: bool = True,
           log=print) -> dict:
    out = Path(out_dir)
    if not out.is_dir():
        raise UserError(f"{out}: no such bench output folder")
    if suite_dir is None:
        if not (out / BENCH_FILE).exists():
            raise UserError(f"{out}: {BENCH_FILE} is missing; pass --suite with the suite the run used")
        suite_dir = _json(out / BENCH_FILE)["suite"]
    scenarios, _ = load_suite(suite_dir)
    rows = score_runs(out, scenarios, stt, log)
    groups = {"all": lambda r: True, "real": lambda r: r.get("source") == "real",
              "synthetic": lambda r: r.get("source") == "synthetic"}
    summaries = {g: {a: summarise([r for r in rs if keep(r)]) for a, rs in rows.items() if any(keep(r) for r in rs)}
                 for g, keep in groups.items()}
    md = ["# fullduplex bench report", "",
          f"Suite: `{suite_dir}`. Medians (p90 in brackets) for latencies; TOR is the mean rate, BC freq and "
          "JSD means, as FDB reports them. ↑/↓: higher/lower is better. Published rows are FDB v1's own "
          "figures on its own data (Candor/ICC), for reference, not measured here.", ""]
    for group, table in summaries.items():
        if table:
            md += [f"## {group} scenarios", "", markdown_table(table, published=(group != "synthetic")), ""]
    write_text(out / "report.md", "\n".join(md))
    doc = {"suite": str(suite_dir), "summaries": summaries, "published": PUBLISHED,
           "scenarios": {a: [{k: v for k, v in r.items() if k != "words"} for r in rs] for a, rs in rows.items()}}
    write_text(out / "report.json", json.dumps(doc, indent=1, default=float))
    if plots:
        from .plots import plot_scenarios, plot_summary
        plot_scenarios(out, scenarios, rows)
        plot_summary(out / "summary.png", summaries["all"])
    return {"markdown": "\n".join(md), "summaries": summaries, "rows": rows}
