"""Answers and backchannels: the floor numbers FDB's word rules cannot give.

FDB's turn latency takes the agent's first word *anywhere* in the output and clips it at 0, so an agent
that talks in the user's mid-turn pause scores 0 s; its pause TOR counts any words spanning >= 1 s, so
two "mm-hm"s a few seconds apart score as a takeover. Both read words only. Here what the agent said is
split into *utterances*, each an answer or a backchannel, from one of two sources (each row's
``answer_source`` says which was used):

- ``events``, the agent's own event log (``timeline.jsonl``), wherever it logs its playback: the cascade
  presets (sequential, streaming, parallel, predictive) and the duplex engine. A ``playback.start`` is
  an answer starting at its ``t`` (the time its first sample plays in ``output.wav``); a
  ``backchannel`` event is a backchannel over [t, t + audio_s]. This is the architecture's own
  decision, so an LLM reply that happens to be "Okay." is still an answer.
- ``transcript``, where the log has neither kind of event (Moshi logs only its text stream; a ws://
  agent's events are stamped on the server's clock, not the recorded output's): the agent's words (the
  same Whisper words FDB's numbers use) joined into utterances across pauses shorter than 0.5 s; an
  utterance shorter than 1 s (FDB's turn span) made only of backchannel words ("mm-hm", "yeah", "I
  see": ``engines.floor_policy.is_backchannel``) is a backchannel, any other is an answer. An
  interrupt scenario's words cover only the output after the interruption, so there its backchannel
  count is left undefined.

Per scenario (None where undefined):

- turn_taking: ``answer_onset`` = start of the first answer at or after the labelled turn end - the
  turn end (None when no answer starts after it); ``answer_early`` = 1 when an answer started before the
  turn end, while the user still held the floor (0 otherwise).
- pause: ``answer_in_pause`` = 1 when an answer started inside the labelled pause [start, end];
  ``pause_answered`` = 1 when an answer started anywhere in the scenario (the answers-only twin of FDB's
  pause TOR: it counts a reply that starts over the user's continuation too).
- every kind: ``agent_bcs``, the backchannels in the scenario. Aggregated as a rate pooled over
  scenarios: sum of backchannels / sum of user-speech minutes (VAD on the input).

The reference is what the real listeners did in the recordings (``listener_backchannels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engines.floor_policy import is_backchannel
from ..events import Event
from ..models.stt import Word
from ..turn import labels
from ..turn.labels import BACKCHANNEL_MAX_S, RESUME_WITHIN_S

JOIN_GAP_S = 0.5       # words closer than this are one utterance (as the stop latency joins VAD segments)
BC_MAX_S = 1.0         # a backchannel utterance is shorter than FDB's turn span
# reference: a listener's segment this short can be a backchannel, when the floor holder spoke up to
# FLOOR_RESUME_S before it and goes on within that after (the same bounds label the turn model's pauses)
LISTENER_BC_MAX_S = BACKCHANNEL_MAX_S
FLOOR_RESUME_S = RESUME_WITHIN_S

ANSWER_KEYS = ("answer_source", "answer_onset", "answer_early", "answer_in_pause", "pause_answered", "agent_bcs")


@dataclass(frozen=True)
class Utterance:
    start: float
    end: float | None      # None: an answer from the event log (only its start is used)
    kind: str              # "answer" | "backchannel"
    text: str = ""


# --- what the agent said -----------------------------------------------------------------------

def local_events(events: list[Event]) -> list[Event]:
    """The agent's own events: not those a server or client stamped on its own clock (a ws:// run)."""
    return [e for e in events if e.data.get("origin") not in ("server", "client")]


def from_events(events: list[Event]) -> list[Utterance] | None:
    """Answers and backchannels from the agent's event log; None when the log records no playback
    (then the transcript has to do)."""
    local = local_events(events)
    if not any(e.kind in ("playback.start", "backchannel") for e in local):
        return None
    out = []
    for e in local:
        if e.kind == "playback.start":
            out.append(Utterance(e.t, None, "answer", str(e.data.get("text", ""))))
        elif e.kind == "backchannel":
            out.append(Utterance(e.t, e.t + float(e.data.get("audio_s", 0.0)), "backchannel",
                                 str(e.data.get("text", ""))))
    return sorted(out, key=lambda u: u.start)


def from_words(words: list[Word]) -> list[Utterance]:
    """Words joined into utterances across short pauses, each classified by its words and length."""
    groups: list[list[Word]] = []
    for w in sorted(words, key=lambda w: w.start):
        if groups and w.start - groups[-1][-1].end < JOIN_GAP_S:
            groups[-1].append(w)
        else:
            groups.append([w])
    out = []
    for g in groups:
        text = " ".join(w.text.strip() for w in g)
        start, end = g[0].start, max(w.end for w in g)
        short = end - start < BC_MAX_S
        out.append(Utterance(start, end, "backchannel" if short and is_backchannel(text) else "answer", text))
    return out


def utterances(events: list[Event] | None, words: list[Word]) -> tuple[list[Utterance], str]:
    """(utterances, source): the event log when it records playback, else the words."""
    logged = from_events(events or [])
    return (logged, "events") if logged is not None else (from_words(words), "transcript")


# --- per scenario ------------------------------------------------------------------------------

def answer_metrics(kind: str, span: tuple[float, float] | None, utts: list[Utterance],
                   source: str = "events") -> dict:
    """The ``ANSWER_KEYS`` numbers of one scenario of ``kind`` with its annotated ``span``."""
    row = dict.fromkeys(ANSWER_KEYS)
    row["answer_source"] = source
    answers = [u.start for u in utts if u.kind == "answer"]
    if not (kind == "interrupt" and source == "transcript"):   # those words start at the interruption end
        row["agent_bcs"] = sum(u.kind == "backchannel" for u in utts)
    if kind == "turn_taking" and span is not None:
        end = span[0]   # FDB's turn end: the first number of the pair
        after = [t for t in answers if t >= end]
        row["answer_onset"] = after[0] - end if after else None
        row["answer_early"] = int(any(t < end for t in answers))
    elif kind == "pause" and span is not None:
        start, end = span
        row["answer_in_pause"] = int(any(start <= t <= end for t in answers))
        row["pause_answered"] = int(bool(answers))
    return row


def score_answers(kind: str, span, events: list[Event] | None, words: list[Word]) -> dict:
    utts, source = utterances(events, words)
    return answer_metrics(kind, span, utts, source)


def aggregate_answers(rows: list[dict]) -> dict:
    """Medians and rates over a group's rows: ``answer_onset_median`` (and ``_n``: turns with an answer
    after the end, of ``turns``), ``answer_early`` (share of turn scenarios), ``answer_in_pause`` and
    ``pause_answered`` (shares of pause scenarios), ``bc_per_user_min`` pooled over every row with a
    backchannel count, and ``sources`` (how many rows each source scored)."""
    turns = [r for r in rows if r.get("kind") == "turn_taking" and r.get("answer_early") is not None]
    pauses = [r for r in rows if r.get("kind") == "pause" and r.get("answer_in_pause") is not None]
    onsets = [r["answer_onset"] for r in turns if r.get("answer_onset") is not None]
    counted = [r for r in rows if r.get("agent_bcs") is not None and r.get("user_speech_s")]
    speech_min = sum(r["user_speech_s"] for r in counted) / 60
    sources: dict[str, int] = {}
    for r in rows:
        if r.get("answer_source"):
            sources[r["answer_source"]] = sources.get(r["answer_source"], 0) + 1
    share = lambda group, key: float(np.mean([r[key] for r in group])) if group else None  # noqa: E731
    return {
        "turns": len(turns),
        "answer_onset_median": float(np.median(onsets)) if onsets else None,
        "answer_onset_p90": float(np.percentile(onsets, 90)) if onsets else None,
        "answer_onset_n": len(onsets),
        "answer_early": share(turns, "answer_early"),
        "pauses": len(pauses),
        "answer_in_pause": share(pauses, "answer_in_pause"),
        "pause_answered": share(pauses, "pause_answered"),
        "agent_bcs": sum(r["agent_bcs"] for r in counted),
        "bc_per_user_min": sum(r["agent_bcs"] for r in counted) / speech_min if speech_min > 0 else None,
        "sources": sources,
    }


# --- the reference: real listeners -------------------------------------------------------------

Segment = tuple[str, float, float]   # (speaker, start, end)


def read_rttm(path: str | Path) -> list[Segment]:
    return [(spk, s, e) for s, e, spk in labels.read_rttm(path)]


def listener_backchannels(segs: list[Segment], max_s: float = LISTENER_BC_MAX_S,
                          resume_s: float = FLOOR_RESUME_S) -> list[Segment]:
    """The listeners' backchannels in one recording's who-speaks-when: a segment of at most ``max_s`` by
    one speaker while another holds the floor: that other speaker talked at most ``resume_s`` before it
    (or through it) and goes on at most ``resume_s`` after it ends (or through it)."""
    out = []
    for spk, s, e in segs:
        if e - s > max_s:
            continue
        others = [(a, b) for o, a, b in segs if o != spk]
        before = any(a < s and b >= s - resume_s for a, b in others)
        after = any(b > e and a <= e + resume_s for a, b in others)
        if before and after:
            out.append((spk, s, e))
    return out


def _union_s(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for a, b in sorted(spans):
        a = max(a, reach)
        if b > a:
            total += b - a
            reach = b
    return total


def listener_rate(segs: list[Segment]) -> dict:
    """Backchannels and floor-holder speech (the union of every other segment) of one recording."""
    bcs = listener_backchannels(segs)
    floor_s = _union_s([(a, b) for spk, a, b in segs if (spk, a, b) not in bcs])
    return {"backchannels": len(bcs), "floor_s": floor_s, "speakers": len({s for s, _, _ in segs}),
            "per_min": len(bcs) / (floor_s / 60) if floor_s > 0 else None}


def reference_rate(conversations: str | Path) -> dict | None:
    """The real listeners' backchannels per minute of floor-holder speech over the recordings in
    ``conversations`` (one folder each with an .rttm). A recording shipped twice (the same RTTM in two
    folders, as AMI ES2003a/b are in the shared data) counts once. ``all`` pools every recording;
    ``two_party`` those with two speakers (in a meeting several listeners backchannel one speaker, an
    agent is one listener). None when there is no such folder."""
    folder = Path(conversations)
    if not folder.is_dir():
        return None
    per, seen = {}, {}
    for conv in sorted(p for p in folder.iterdir() if p.is_dir()):
        rttms = sorted(conv.glob("*.rttm"))
        if not rttms:
            continue
        segs = read_rttm(rttms[0])
        key = tuple(segs)
        if key in seen:
            continue
        seen[key] = conv.name
        per[conv.name] = listener_rate(segs)

    def pool(names):
        n = sum(per[k]["backchannels"] for k in names)
        floor_s = sum(per[k]["floor_s"] for k in names)
        return {"recordings": len(names), "backchannels": n, "floor_min": floor_s / 60,
                "per_min": n / (floor_s / 60) if floor_s > 0 else None}

    return {"all": pool(list(per)), "two_party": pool([k for k, v in per.items() if v["speakers"] == 2]),
            "recordings": per}
