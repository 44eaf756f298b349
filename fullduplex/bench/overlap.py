"""FDB v1.5's metrics for the overlap scenarios (``suite_overlap.py``), without GPT-4o.

**Timing, as FDB v1.5's ``get_timing.py``.** User speech = Silero VAD segments of ``input.wav``
(get_speech_timestamps' rule, ``metrics.speech_segments``) merged over gaps <= 0.6 s; the agent's =
those of ``output.wav`` merged over gaps <= 0.5 s. ``stop_intervals`` (FDB's ``latency_stop_list``) =
every overlap of a user and an agent segment (the shortest one per end time); their durations are the
stop latencies: how long the agent kept talking over the user. ``resp_intervals``
(``latency_resp_list``) = [user segment end, the agent's next segment start] (the later user end per
agent start). FDB averages every interval of every sample: ``stop_fdb`` / ``resp_fdb`` per kind.
Ours, at the labelled overlap only: ``stop_latency`` = duration of the stop interval that meets the
annotated overlap (0 when the agent was silent over it), ``resp_latency`` = the response interval that
starts at the user segment holding the overlap (time from the overlap's end to the agent's next speech:
a response, or a resume after a pause).

**Behaviour.** FDB v1.5 has GPT-4o label each output RESPOND / RESUME / UNCERTAIN / UNKNOWN from its
transcript. We classify by rule instead:

- from the agent's event log (``timeline.jsonl``) where it logs playback (every cascade preset and the
  duplex engine). The *answer at the onset* is the last ``playback.start`` at or before the overlap's
  start whose turn had not yet ended (``playback.end``) or been dropped (``bargein``). None:
  ``NOT_SPEAKING`` (the agent was not answering when the overlap came; left out of the rates). After the
  onset: a ``playback.start`` of a later turn = **RESPOND** (it took the overlap as a new turn, even if
  it first finished its answer); else the answer dropped (``bargein``) = **UNCERTAIN** (stopped and
  silent); else **RESUME** (its pieces went on: it talked through, or paused, ``bargein.yield``, and
  resumed, ``bargein.backchannel``); an answer still paused at the end = UNCERTAIN.
- from the transcript where the log has no playback (Moshi, a ws:// agent): the agent's merged speech
  segment holding the overlap onset (none: NOT_SPEAKING). It reaches past the overlap's end = **RESUME**
  (talked through); it ends before, and agent words start after the overlap's end = **RESPOND**; it
  ends and no words follow = **UNCERTAIN**. A pause followed by the *same* answer reads as RESPOND here:
  separating a continuation from a new reply by its content is what FDB asks GPT-4o, which we do not use.

**Words lost to a false stop** (ours): the answer at the onset's planned words (its last ``llm.done``
text, else its synthesised ``tts.piece`` texts) minus the words of its pieces that started playing
(``playback.piece``), when it was dropped; 0 when it went on. Reported for the three kinds where the
agent should go on.
"""

from __future__ import annotations

import math

import numpy as np

from ..events import Event
from ..models.stt import Word
from .answers import local_events
from .metrics import merge_gaps
from .scenarios import OVERLAP_KINDS

USER_MERGE_GAP_S = 0.6    # FDB v1.5 get_timing.py
MODEL_MERGE_GAP_S = 0.5
BEHAVIOURS = ("RESPOND", "RESUME", "UNCERTAIN", "NOT_SPEAKING")
GO_ON_KINDS = ("overlap_backchannel", "overlap_side_talk", "overlap_background")
ROW_KEYS = ("behaviour", "behaviour_source", "stop_latency", "resp_latency", "stop_intervals", "resp_intervals",
            "words_planned", "words_played", "words_lost")

Span = tuple[float, float]


def _merge(segments: list[Span], gap: float) -> list[Span]:
    """FDB's merge: a gap of at most ``gap`` joins two segments."""
    return merge_gaps(sorted(segments), gap, inclusive=True)


def stop_intervals(user: list[Span], model: list[Span]) -> list[list[float]]:
    """Overlaps of merged user and agent segments, one (the shortest) per end time at ms precision."""
    raw, i, j = [], 0, 0
    while i < len(user) and j < len(model):
        s, e = max(user[i][0], model[j][0]), min(user[i][1], model[j][1])
        if e > s:
            raw.append((s, e))
        if user[i][1] < model[j][1]:
            i += 1
        else:
            j += 1
    best: dict[int, Span] = {}
    for s, e in raw:
        key = int(round(e * 1000))
        if key not in best or e - s < best[key][1] - best[key][0]:
            best[key] = (s, e)
    return [[round(s, 3), round(e, 3)] for s, e in sorted(best.values(), key=lambda x: x[1])]


def resp_intervals(user: list[Span], model: list[Span]) -> list[list[float]]:
    """[user segment end, the agent's next segment start]; per agent start, the latest user end."""
    best: dict[int, list[float]] = {}
    for _, ue in user:
        nxt = next((s for s, _ in model if s > ue), None)
        if nxt is None:
            continue
        key = int(round(nxt * 1000))
        if key not in best or ue > best[key][0]:
            best[key] = [round(ue, 3), round(nxt, 3)]
    return [iv for _, iv in sorted(best.items(), key=lambda kv: kv[1][1])]


def timing(user_segments: list[Span], agent_segments: list[Span], overlap: Span) -> dict:
    user = _merge(user_segments, USER_MERGE_GAP_S)
    model = _merge(agent_segments, MODEL_MERGE_GAP_S)
    stops, resps = stop_intervals(user, model), resp_intervals(user, model)
    o_start, o_end = overlap
    hit = [e - s for s, e in stops if s < o_end and e > o_start]
    holder = next((u for u in user if u[0] < o_end and u[1] > o_start), None)
    resp = next((b - a for a, b in resps if holder is not None and abs(a - round(holder[1], 3)) < 1e-6), None)
    return {"stop_intervals": stops, "resp_intervals": resps, "stop_latency": hit[0] if hit else 0.0,
            "resp_latency": resp}


# --- behaviour --------------------------------------------------------------------------------

def logs_playback(events: list[Event] | None) -> bool:
    return any(e.kind == "playback.start" for e in local_events(events or []))


def _n_words(text: str) -> int:
    return len(str(text).split())


def from_events(events: list[Event], overlap: Span) -> dict:
    """Behaviour and words lost, from the agent's event log (see the module docstring)."""
    evs = sorted(local_events(events), key=lambda e: e.t)
    onset = overlap[0]
    row = {"behaviour_source": "events", "words_planned": None, "words_played": None, "words_lost": None}
    answer = None
    for e in evs:
        if e.t > onset:
            break
        if e.kind == "playback.start":
            answer = e.turn
        elif e.kind in ("playback.end", "bargein") and e.turn == answer:
            answer = None
    if answer is None:
        return {**row, "behaviour": "NOT_SPEAKING"}
    after = [e for e in evs if e.t > onset]
    dropped = any(e.kind == "bargein" and e.turn == answer for e in after)
    ended = any(e.kind == "playback.end" and e.turn == answer for e in after)
    state = "playing"
    for e in after:
        if e.turn != answer:
            continue
        if e.kind == "bargein.yield":
            state = "paused"
        elif e.kind in ("bargein.backchannel", "playback.piece"):
            state = "playing"
    if any(e.kind == "playback.start" and e.turn is not None and e.turn != answer for e in after):
        behaviour = "RESPOND"
    elif dropped or (state == "paused" and not ended):
        behaviour = "UNCERTAIN"
    else:
        behaviour = "RESUME"
    done = [e for e in evs if e.kind == "llm.done" and e.turn == answer]
    pieces = {e.data.get("index"): e.data.get("text", "") for e in evs if e.kind == "tts.piece" and e.turn == answer}
    planned = _n_words(done[-1].data.get("text", "")) if done else sum(_n_words(t) for t in pieces.values())
    played_pieces = {e.data.get("index"): e.data.get("text", "") for e in evs
                     if e.kind == "playback.piece" and e.turn == answer}
    played = sum(_n_words(t) for t in played_pieces.values())
    lost = max(planned - played, 0) if dropped else 0
    return {**row, "behaviour": behaviour, "words_planned": planned, "words_played": played, "words_lost": lost}


def from_transcript(agent_segments: list[Span], words: list[Word], overlap: Span) -> dict:
    """Behaviour from the agent's speech and words (no playback in its log; see the module docstring)."""
    model = _merge(agent_segments, MODEL_MERGE_GAP_S)
    o_start, o_end = overlap
    row = {"behaviour_source": "transcript", "words_planned": None, "words_played": None, "words_lost": None}
    holder = next((m for m in model if m[0] <= o_start < m[1]), None)
    if holder is None:
        return {**row, "behaviour": "NOT_SPEAKING"}
    if holder[1] > o_end:
        return {**row, "behaviour": "RESUME"}
    later = [w for w in words if w.start >= max(o_end, holder[1])]
    return {**row, "behaviour": "RESPOND" if later else "UNCERTAIN"}


def overlap_metrics(user_segments: list[Span], agent_segments: list[Span], overlap: Span,
                    events: list[Event] | None, words: list[Word]) -> dict:
    """Every ``ROW_KEYS`` number of one overlap scenario."""
    row = dict.fromkeys(ROW_KEYS)
    row.update(timing(user_segments, agent_segments, overlap))
    if logs_playback(events):
        row.update(from_events(events, overlap))
    else:
        row.update(from_transcript(agent_segments, words, overlap))
    return row


# --- aggregation ------------------------------------------------------------------------------

def _mean(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else None


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def aggregate(rows: list[dict]) -> dict:
    """Per overlap kind: ``n``, ``judged`` (rows not NOT_SPEAKING), ``respond``/``resume``/``uncertain``
    rates over the judged rows, ``not_speaking`` count, FDB's ``stop_fdb``/``resp_fdb`` (mean over every
    interval), our ``stop_latency``/``resp_latency`` medians at the overlap, ``words_lost`` (mean per
    judged row) and ``sources``."""
    out = {}
    kinds = sorted({r["kind"] for r in rows if str(r.get("kind", "")).startswith("overlap_")})
    for kind in kinds:
        group = [r for r in rows if r.get("kind") == kind]
        judged = [r for r in group if r.get("behaviour") not in (None, "NOT_SPEAKING")]
        rate = (lambda b: sum(r["behaviour"] == b for r in judged) / len(judged) if judged else None)
        stops = [e - s for r in group for s, e in (r.get("stop_intervals") or [])]
        resps = [e - s for r in group for s, e in (r.get("resp_intervals") or [])]
        sources: dict[str, int] = {}
        for r in group:
            if r.get("behaviour_source"):
                sources[r["behaviour_source"]] = sources.get(r["behaviour_source"], 0) + 1
        out[kind] = {
            "n": len(group), "judged": len(judged), "not_speaking": len(group) - len(judged),
            "respond": rate("RESPOND"), "resume": rate("RESUME"), "uncertain": rate("UNCERTAIN"),
            "stop_fdb": float(np.mean(stops)) if stops else None,
            "resp_fdb": float(np.mean(resps)) if resps else None,
            "stop_latency": _median([r.get("stop_latency") for r in judged]),
            "resp_latency": _median([r.get("resp_latency") for r in judged]),
            "words_lost": _mean([r.get("words_lost") for r in judged]),
            "sources": sources,
        }
    return out


# FDB v1.5's published rates (its README/paper, on its own data): respond to an interruption, resume
# after a user backchannel, after side talk, after background speech.
PUBLISHED = {
    "Moshi": (0.50, 0.06, 0.19, 0.07),
    "Freeze-Omni": (0.72, 0.80, 0.25, 0.25),
    "Gemini Live": (0.33, 0.93, 0.99, 0.30),
    "cascaded finite-state system": (0.69, 0.98, 0.44, 0.36),
}


def _fmt(v, fmt="{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def markdown_tables(summaries: dict[str, dict], published: bool = True) -> str:
    """The v1.5 table (rates, with published rows) and the timing table, from ``aggregate`` per agent."""
    head = ("| agent | respond to interruption ↑ | resume after user BC ↑ | resume after side talk ↑ | "
            "resume after background ↑ | words lost to false stops (BC / side / bg) ↓ | not speaking at onset |")
    lines = [head, "|" + "---|" * 7]
    order = OVERLAP_KINDS
    for agent, agg in summaries.items():
        def cell(kind, key):
            a = agg.get(kind)
            if not a:
                return "–"
            return f"{_fmt(a[key])} (n={a['judged']})"
        lost = " / ".join(_fmt(agg.get(k, {}).get("words_lost"), "{:.1f}") for k in GO_ON_KINDS)
        ns = " / ".join(f"{agg[k]['not_speaking']} of {agg[k]['n']}" if k in agg else "–" for k in order)
        lines.append(f"| **{agent}** | {cell(order[0], 'respond')} | {cell(order[1], 'resume')} | "
                     f"{cell(order[2], 'resume')} | {cell(order[3], 'resume')} | {lost} | {ns} |")
    if published:
        for name, (r, b, s, g) in PUBLISHED.items():
            lines.append(f"| *{name} (published, FDB's data)* | {r:.2f} | {b:.2f} | {s:.2f} | {g:.2f} | | |")
    timing_head = ("| agent | kind | judged of n | respond | resume | uncertain | stop latency at overlap s (median) | "
                   "response/resume latency s (median) | FDB stop latency s (mean, all intervals) | "
                   "FDB response latency s (mean, all intervals) | from |")
    t = [timing_head, "|" + "---|" * 11]
    for agent, agg in summaries.items():
        for kind in order:
            a = agg.get(kind)
            if not a:
                continue
            src = ", ".join(f"{k} {v}" for k, v in sorted(a["sources"].items()))
            t.append(f"| {agent} | {kind.removeprefix('overlap_')} | {a['judged']} of {a['n']} | {_fmt(a['respond'])} | "
                     f"{_fmt(a['resume'])} | {_fmt(a['uncertain'])} | {_fmt(a['stop_latency'])} | "
                     f"{_fmt(a['resp_latency'])} | {_fmt(a['stop_fdb'])} | {_fmt(a['resp_fdb'])} | {src} |")
    return "\n".join(lines) + "\n\n" + "\n".join(t)
