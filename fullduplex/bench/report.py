"""``fullduplex bench report DIR``: score every finished scenario run and write the comparison.

Scores are cached per scenario run (``score.json`` beside its ``output.wav``, with the words used),
so a report after a resumed run transcribes only what is new. Writes into DIR:
``report.md`` (architectures x metrics, medians and p90, FDB's published rows for reference; then
the floor decisions beside FDB's word-based numbers: answers vs backchannels, ``answers.py``, with the
real listeners' backchannel rate from the shared recordings' RTTMs), ``report.json`` (every number,
per scenario and aggregated), ``plots/<agent>/<scenario>.png`` (both streams on one time axis) and
``summary.png``.

The answer numbers are not cached in ``score.json``: they are recomputed on every report from the
cached words and the run's ``timeline.jsonl`` (cheap), so older cached scores get them too.
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
from . import answers, metrics, overlap
from .runner import BENCH_FILE, RUN_FILE, scenario_dir
from .scenarios import OVERLAP_KINDS, Scenario, load_suite
from .suite import DEFAULT_DATA_DIR

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

# Floor decisions beside FDB's word-based numbers (answers.py): answers vs backchannels.
FLOOR_COLUMNS = [
    ("turn_latency", "FDB turn latency s ↓ med (p90)", "{:.2f}"),
    ("answer_onset", "answer onset s ↓ med (n)", "{:.2f}"),
    ("answer_early", "answer before turn end ↓", "{:.0%}"),
    ("pause_tor", "FDB pause TOR ↓", "{:.2f}"),
    ("answer_in_pause", "answer in pause ↓", "{:.0%}"),
    ("pause_answered", "answer anywhere in pause scenario ↓", "{:.0%}"),
    ("agent_bc_per_user_min", "agent BCs per user-min (pooled)", "{:.1f}"),
    ("answer_sources", "answers from", "{}"),
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
            row.update(answer_row(scenario, row, folder / "timeline.jsonl"))
            if scenario.kind in OVERLAP_KINDS:
                row.update(overlap_row(scenario, row, folder))
            row["recordings"] = list(scenario.recordings)
            rows.setdefault(agent, []).append(row)
    if not rows:
        raise UserError(f"{out_dir}: no finished scenario runs to report; run `fullduplex bench run` first")
    return rows


def answer_row(scenario: Scenario, row: dict, timeline: Path) -> dict:
    """Answers vs backchannels for one scored run: its event log where it logs playback, else its words."""
    events = read_timeline(timeline) if timeline.exists() else []
    words = [Word(w["text"], w["start"], w["end"]) for w in row.get("words", [])]
    return answers.score_answers(scenario.kind, scenario.span, events, words)


def overlap_row(scenario: Scenario, row: dict, folder: Path) -> dict:
    """FDB v1.5's numbers for one overlap run (``overlap.py``): recomputed on every report, as answers are."""
    timeline = folder / "timeline.jsonl"
    events = read_timeline(timeline) if timeline.exists() else []
    words = [Word(w["text"], w["start"], w["end"]) for w in row.get("words", [])]
    return overlap.overlap_metrics(metrics.speech_segments(scenario.input_path),
                                   metrics.speech_segments(folder / "output.wav"), scenario.span, events, words)


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
        **_answer_summary(rows),
        "by_kind": agg,
    }


def _answer_summary(rows: list[dict]) -> dict:
    a = answers.aggregate_answers(rows)
    return {"answer_onset": a["answer_onset_median"], "answer_onset_n": a["answer_onset_n"],
            "answer_onset_of": a["turns"], "answer_early": a["answer_early"],
            "answer_in_pause": a["answer_in_pause"], "pause_answered": a["pause_answered"],
            "agent_bcs": a["agent_bcs"], "agent_bc_per_user_min": a["bc_per_user_min"],
            "answer_sources": ", ".join(f"{k} {v}" for k, v in sorted(a["sources"].items())) or None}


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
    if key == "answer_onset":   # how many turn scenarios had an answer after the end, of how many
        return f"{text} ({summary.get('answer_onset_n')} of {summary.get('answer_onset_of')})"
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


def floor_table(summaries: dict[str, dict]) -> str:
    head = "| agent | n | " + " | ".join(h for _, h, _ in FLOOR_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(FLOOR_COLUMNS) + 2)]
    for agent, s in summaries.items():
        lines.append(f"| **{agent}** | {s['n']} | " + " | ".join(_cell(s, k, f) for k, _, f in FLOOR_COLUMNS) + " |")
    return "\n".join(lines)


def reference_line(ref: dict | None) -> str:
    """The real listeners' backchannel rate, for the agents' column beside it."""
    if ref is None or ref["all"]["per_min"] is None:
        return "Real listeners' backchannel rate: no conversations folder with RTTMs found."
    a, two = ref["all"], ref["two_party"]
    text = (f"Real listeners in the recordings (RTTM: a segment of at most {answers.LISTENER_BC_MAX_S:g} s by a "
            f"non-floor speaker while the floor holder goes on within {answers.FLOOR_RESUME_S:g} s): "
            f"**{a['per_min']:.1f} backchannels per minute of floor-holder speech** ({a['backchannels']} in "
            f"{a['floor_min']:.1f} min, {a['recordings']} recordings)")
    if two["per_min"] is not None:
        text += (f"; two-speaker recordings only {two['per_min']:.1f} ({two['backchannels']} in "
                 f"{two['floor_min']:.1f} min, {two['recordings']} recordings)")
    return text + (". A rough reference: sparse AMI labels miss backchannels, and a short answer (\"yes.\") "
                   "between the other's sentences counts as one.")


def report(out_dir: str | Path, suite_dir: str | Path | None = None, stt=None, plots: bool = True,
           log=print, data_dir: str | Path | None = None) -> dict:
    """Score, aggregate and write the report. ``data_dir``: the shared data whose conversations/ give
    the real listeners' backchannel rate (default ../shared/data beside the repo)."""
    out = Path(out_dir)
    if not out.is_dir():
        raise UserError(f"{out}: no such bench output folder")
    if suite_dir is None:
        if not (out / BENCH_FILE).exists():
            raise UserError(f"{out}: {BENCH_FILE} is missing; pass --suite with the suite the run used")
        suite_dir = _json(out / BENCH_FILE)["suite"]
    scenarios, _ = load_suite(suite_dir)
    all_rows = score_runs(out, scenarios, stt, log)
    rows = {a: [r for r in rs if r.get("kind") not in OVERLAP_KINDS] for a, rs in all_rows.items()}
    rows = {a: rs for a, rs in rows.items() if rs}
    overlap_rows = {a: [r for r in rs if r.get("kind") in OVERLAP_KINDS] for a, rs in all_rows.items()}
    overlap_rows = {a: rs for a, rs in overlap_rows.items() if rs}
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
    reference = answers.reference_rate(Path(data_dir or DEFAULT_DATA_DIR) / "conversations")
    md += ["## Floor decisions: answers vs backchannels", "",
           "Beside FDB's word-based numbers: *answer onset* is the first agent answer (not a backchannel) "
           "starting after the labelled turn end (median, with how many turn scenarios had one); *answer before "
           "turn end* the share of turn scenarios where an answer started while the user held the floor; "
           "*answer in pause* the share of pause scenarios with an answer starting inside the labelled pause. "
           "Answers and backchannels come from the agent's event log, or from its transcript where the log has "
           "no playback events (`fullduplex/bench/answers.py`).", "", reference_line(reference), ""]
    for group, table in summaries.items():
        if table:
            md += [f"### {group} scenarios", "", floor_table(table), ""]
    overlap_summaries = {g: {a: overlap.aggregate([r for r in rs if keep(r)]) for a, rs in overlap_rows.items()
                             if any(keep(r) for r in rs)} for g, keep in groups.items()}
    if overlap_rows:
        md += ["## Overlap while the agent speaks (FDB v1.5)", "",
               "Each scenario: the user's turn, then 2.5 s after it ends (the agent mid-answer) an interruption, "
               "a backchannel, side talk or background speech. Rates are over the scenarios where the agent was "
               "answering at the overlap's onset (n); RESPOND/RESUME/UNCERTAIN come from the agent's event log "
               "(or its transcript where it logs no playback), by rule, not FDB's GPT-4o (`fullduplex/bench/"
               "overlap.py`). Stop and response latencies as FDB's get_timing.py (mean over every interval), and "
               "ours at the labelled overlap (median). Published rows are FDB v1.5's own figures on its own data.",
               ""]
        for group, table in overlap_summaries.items():
            if table:
                md += [f"### {group} scenarios", "", overlap.markdown_tables(table, published=(group != "synthetic")), ""]
    write_text(out / "report.md", "\n".join(md))
    doc = {"suite": str(suite_dir), "summaries": summaries, "published": PUBLISHED,
           "overlap_summaries": overlap_summaries, "overlap_published": overlap.PUBLISHED,
           "listener_reference": reference,
           "scenarios": {a: [{k: v for k, v in r.items() if k != "words"} for r in rs] for a, rs in all_rows.items()}}
    write_text(out / "report.json", json.dumps(doc, indent=1, default=float))
    if plots:
        from .plots import plot_scenarios, plot_summary
        plot_scenarios(out, scenarios, all_rows)
        if summaries["all"]:
            plot_summary(out / "summary.png", summaries["all"])
    return {"markdown": "\n".join(md), "summaries": summaries, "rows": all_rows, "overlap_summaries": overlap_summaries}
