"""``fullduplex demo``: the five CPU architectures on the same real phone calls, to read and to hear.

The demo set ships inside the package (``demo_suite/``, ~2 MB, licences beside it), so a plain clone
benches real conversations with no ``../shared/data``. It was chosen by a written rule, before any
result was seen (``DEMO_RULE``; ``pick_demo_set`` applies it; ``fullduplex bench demo-set`` rewrites
the folder from a dev suite built with ``bench build-suite``).

``run_demo`` runs the bench on it (real time, resumable, like ``bench run``), scores it, and writes
beside the report: ``listen/<agent>/<scenario>.wav`` (the conversation in stereo: user left, agent
right) and ``index.html`` (the plain-language summary, the summary chart, and per scenario each
architecture's timeline picture with its audio player).
"""

from __future__ import annotations

import html
import json
import shutil
import time
from pathlib import Path

import numpy as np

from ..audio.io import read_user_audio, write_text, write_wav
from ..config import Config
from ..errors import UserError
from . import metrics
from .report import report
from .runner import run_bench, scenario_dir
from .scenarios import KINDS, META, Scenario, load_suite
from .suite import LICENCE_FILES

DEMO_SUITE = Path(__file__).resolve().parent / "demo_suite"
DEMO_AGENTS = ("sequential", "streaming", "parallel", "predictive", "duplex")
# The two-party telephone recordings of the dev suite: one caller on a phone line is what a voice
# agent hears. In the rule's order of preference.
DEMO_RECORDINGS = ("pyannote-sample", "phone-auto-repairs-49")
PER_KIND = 2
MIN_SPEECH_S = 1.0   # the caller's speech before the event: a turn a person could answer (not a lone "Hello?")
DEMO_LICENCE_FILES = {"pyannote-sample": LICENCE_FILES["pyannote"],
                      "phone-auto-repairs-49": LICENCE_FILES["amazon-transcribe"]}

DEMO_RULE = (
    "For each kind of scenario (pause, turn_taking, interrupt, backchannel), take the real scenarios cut "
    f"from the two-party telephone recordings ({', '.join(DEMO_RECORDINGS)}): one voice agent hears one "
    "caller on a phone line. Of those, the ones where the caller speaks at least "
    f"{MIN_SPEECH_S:g} s (Silero VAD) before the event (a turn a person could answer, not a lone \"Hello?\"). "
    "Per kind, the earliest such scenario of each recording (scenario names carry their start time); where "
    f"one recording has none of a kind, the next earliest of the other, so every kind has {PER_KIND}. "
    "Nothing else is looked at (no result of any agent)."
)

KIND_TESTS = {  # what each kind asks of the agent, for the page
    "pause": "the caller pauses mid-turn: the agent should stay quiet",
    "turn_taking": "the caller finishes a turn: the agent should answer, quickly",
    "interrupt": "the caller cuts in while the agent talks: the agent should stop, quickly, and respond",
    "backchannel": "the caller holds the floor: the agent may say \"mm-hm\", but should not take over",
}


# -- the demo set ---------------------------------------------------------------------------------
def pick_demo_set(scenarios: list[Scenario]) -> list[Scenario]:
    """``DEMO_RULE`` applied to a suite's scenarios (deterministic, blind to results)."""
    picked: list[Scenario] = []
    for kind in KINDS:
        by_recording = {r: sorted((s for s in scenarios if s.source == "real" and s.kind == kind
                                   and s.recordings == (r,) and _speech_before_event(s) >= MIN_SPEECH_S),
                                  key=lambda s: s.id) for r in DEMO_RECORDINGS}
        chosen = [group.pop(0) for group in by_recording.values() if group]
        spare = sorted((s for group in by_recording.values() for s in group), key=lambda s: s.id)
        chosen += spare[: PER_KIND - len(chosen)]
        if len(chosen) < PER_KIND:
            raise UserError(f"the suite has {len(chosen)} real {kind} scenario(s) from {', '.join(DEMO_RECORDINGS)}; "
                            f"the demo needs {PER_KIND}: build it with `fullduplex bench build-suite`")
        picked += chosen
    return sorted(picked, key=lambda s: s.id)


def _speech_before_event(scenario: Scenario) -> float:
    """Seconds of the caller's speech (Silero VAD) before the annotated event (all of it without one)."""
    end = scenario.span[0] if scenario.span else float("inf")
    return sum(max(0.0, min(e, end) - s) for s, e in metrics.speech_segments(scenario.input_path))


def write_demo_set(suite_dir: str | Path, out_dir: str | Path = DEMO_SUITE) -> list[Scenario]:
    """Copy the scenarios the rule picks from ``suite_dir`` into ``out_dir`` (replaced), with the
    licence texts their audio needs and a LICENCES.md naming each file's origin and licence."""
    suite, out = Path(suite_dir), Path(out_dir)
    scenarios, _ = load_suite(suite)
    picked = pick_demo_set(scenarios)
    if out.exists():
        shutil.rmtree(out)
    rows = []
    for s in picked:
        shutil.copytree(s.dir, out / s.id)
        meta = json.loads((s.dir / META).read_text())
        rows.append(f"| `{s.id}` | {meta['origin']} | {meta['licence']} |")
    (out / "licenses").mkdir(parents=True, exist_ok=True)
    for name in DEMO_LICENCE_FILES.values():
        shutil.copy2(suite / "licenses" / name, out / "licenses" / name)
    write_text(out / "LICENCES.md", "\n".join([
        "# The demo set: real telephone scenarios and their licences", "", DEMO_RULE, "",
        "| scenario | cut from | licence |", "|---|---|---|", *rows, "",
        "`pyannote-sample`: the 2-speaker telephone sample shipped in pyannote-audio (MIT, "
        "`licenses/pyannote-audio.MIT.txt`). `phone-auto-repairs-49`: a role-played car-repair phone call "
        "from aws-samples/amazon-transcribe-live-call-analytics (Apache-2.0, "
        "`licenses/amazon-transcribe-live-call-analytics.Apache-2.0.txt`). Each scenario is an edited cut "
        "(the other speaker replaced by silence); its `meta.json` names the span it came from.", ""]))
    return picked


# -- the run --------------------------------------------------------------------------------------
def run_demo(out_dir: str | Path, agents: tuple[str, ...] = DEMO_AGENTS, cfg: Config | None = None,
             suite_dir: str | Path = DEMO_SUITE, log=print) -> dict:
    """Bench ``agents`` on the demo set in real time, score it, write the page; returns the report (with
    ``demo``: each agent's summary, in the order of ``agents``)."""
    out = Path(out_dir)
    run = run_bench(list(agents), suite_dir, out, cfg, log=log)
    if run.failed:
        raise UserError(f"{len(run.failed)} scenario run(s) failed: {run.failed[0]}")
    log(f"ran {run.ran} scenario run(s) in {run.wall_s / 60:.1f} min (kept {run.skipped} finished ones); "
        "scoring (Whisper base word timestamps) and drawing the timelines ...")
    t0 = time.monotonic()
    result = report(out, suite_dir, log=log)
    summaries = {a: result["summaries"]["all"][a] for a in agents if a in result["summaries"]["all"]}
    result["demo"] = summaries   # in the order asked for: the page's and the printed summary's
    write_page(out, load_suite(suite_dir)[0], summaries)
    log(f"scored and wrote the page in {time.monotonic() - t0:.0f} s")
    return result


def stereo_conversation(scenario: Scenario, output_wav: Path, target: Path) -> Path:
    """The user's channel left and the agent's right, as a person would listen to the call."""
    user, _ = read_user_audio(scenario.input_path)
    agent, _ = read_user_audio(output_wav)
    both = np.zeros((max(len(user), len(agent)), 2), np.float32)
    both[: len(user), 0], both[: len(agent), 1] = user, agent
    write_wav(target, both)
    return target


# -- what a person reads ------------------------------------------------------------------------
LINES = [  # (summary key, the question in plain words, how to show the number)
    ("answer_onset", "answered after the caller finished (median)", lambda v: f"{v:.2f} s"),
    ("pause_tor", "took the floor at a mid-turn pause", lambda v: f"{v:.0%} of pauses"),
    ("during_user", "was audible while the caller spoke", lambda v: f"{v:.0%} of the caller's speech"),
    ("stop_latency", "stopped after the caller cut in (median)", lambda v: f"{v:.2f} s"),
]


def plain_summary(summaries: dict[str, dict]) -> str:
    """A few lines a newcomer can read: each question, each architecture's answer (lower is better)."""
    n = max((s["n"] for s in summaries.values()), default=0)
    out = [f"On {n} real phone-call scenarios, in real time on this machine (lower is better on every line):"]
    width = max(len(a) for a in summaries) if summaries else 0
    for key, question, show in LINES:
        out.append(f"  {question}:")
        for agent, s in summaries.items():
            value = s.get(key)
            out.append(f"    {agent:<{width}}  {'–' if value is None else show(value)}")
    return "\n".join(out)


def _table_html(summaries: dict[str, dict]) -> str:
    head = "".join(f"<th>{html.escape(a)}</th>" for a in summaries)
    rows = []
    for key, question, show in LINES:
        cells = "".join(f"<td>{'–' if s.get(key) is None else html.escape(show(s[key]))}</td>"
                        for s in summaries.values())
        rows.append(f"<tr><th>{html.escape(question)}</th>{cells}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def write_page(out_dir: Path, scenarios: list[Scenario], summaries: dict[str, dict]) -> Path:
    """``index.html``: the summary, then per scenario each architecture's picture and conversation."""
    out = Path(out_dir)
    parts = []
    for s in sorted(scenarios, key=lambda s: (KINDS.index(s.kind), s.id)):
        meta = json.loads((s.dir / META).read_text()) if (s.dir / META).exists() else {}
        items = []
        for agent in summaries:
            folder = scenario_dir(out, agent, s)
            if not (folder / "output.wav").exists():
                continue
            name = s.id.replace("/", "__")
            wav = stereo_conversation(s, folder / "output.wav", out / "listen" / agent / f"{name}.wav")
            picture = out / "plots" / agent / f"{name}.png"
            items.append(f'<div class="run"><h4>{html.escape(agent)}</h4>'
                         f'<img src="{picture.relative_to(out).as_posix()}" alt="{html.escape(agent)} timeline">'
                         f'<audio controls preload="metadata" src="{wav.relative_to(out).as_posix()}"></audio></div>')
        parts.append(f'<section><h3>{html.escape(s.id)}</h3><p>{html.escape(KIND_TESTS[s.kind])}. '
                     f'<small>{html.escape(meta.get("origin", ""))} — {html.escape(meta.get("licence", ""))}'
                     f'</small></p>{"".join(items)}</section>')
    chart = '<img src="summary.png" alt="summary chart">' if (out / "summary.png").exists() else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fullduplex demo</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:1em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
.run img{{width:100%}}.run audio{{width:100%}}section{{margin-top:2em}}</style></head><body>
<h1>Five voice-agent architectures on the same real phone calls</h1>
<p>Each conversation ran in real time on this machine; every latency includes the real compute.
Headphones: the caller is on the left, the agent on the right.</p>
{_table_html(summaries)}
{chart}
<p><small>How the scenarios were chosen: {html.escape(DEMO_RULE)}</small></p>
{"".join(parts)}
</body></html>
"""
    path = out / "index.html"
    write_text(path, page)
    return path
