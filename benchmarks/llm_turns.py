"""Build the fixed user-turn set of the chat-model comparison (benchmarks/data/llm_turns.json).

    .venv/bin/python benchmarks/llm_turns.py [--suite out/suite] [--out benchmarks/data/llm_turns.json]
    .venv/bin/python benchmarks/llm_turns.py --held-out [--data ../shared/data]

The turns are what the agent would receive, not what was said: each real and synthetic dev
scenario's user speech is cut where the agent is meant to answer and transcribed with the agent's
own recogniser (Moonshine tiny-en, streaming in 32 ms chunks from the VAD's speech start less the
pre-roll), so meeting audio gives fragments, as live.

- real turn_taking: the input up to the labelled end of the turn (+0.3 s, the last word's tail);
- real interrupt: two turns, the context (up to the interruption: the agent answers it during the
  silence) and the interruption itself (what the agent answers after the barge-in);
- synthetic turn_taking: as real turn_taking (Piper speech of fullduplex.bench.suite_synthetic's script);
- everyday: spoken requests an embedded agent can answer without the internet, written here.

``--held-out`` builds a second set instead (benchmarks/data/llm_turns_heldout.json) that no setting of
the agent's LLM was chosen on: real speech the dev suite does not use (the 30 clips of
``shared/data/vad/ten-vad-testset``: LibriSpeech, GigaSpeech, DNS Challenge), each transcribed whole as
above, plus everyday requests written apart from the first set's (``EVERYDAY_HELD_OUT``, written before
any reply to them was seen).

Turns whose transcript is empty, or the same words as an earlier turn's (the pyannote sample's
scenarios overlap), are left out (recorded in ``skipped_*``). The JSON is committed; this
script documents how it was made and rebuilds it when the suite changes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fullduplex.audio.frames import SAMPLE_RATE  # noqa: E402
from fullduplex.audio.io import read_user_audio  # noqa: E402
from fullduplex.config import SttConfig  # noqa: E402
from fullduplex.engines.talker import PREROLL_S  # noqa: E402
from fullduplex.models.stt import load_stt  # noqa: E402
from fullduplex.models.vad import CHUNK  # noqa: E402
from fullduplex.models.vad import speech_spans  # noqa: E402

TAIL_S = 0.3

EVERYDAY = [
    "What's a good name for a cat?",
    "How do I boil an egg?",
    "Can you help me plan my morning?",
    "Tell me a joke.",
    "I'm tired today.",
    "How long should I nap in the afternoon?",
    "What can I make with rice and eggs?",
    "I can't fall asleep at night. Any tips?",
    "How do I say thank you in French?",
    "What's a fun thing to do on a rainy Sunday?",
    "Give me an idea for a birthday present for my sister.",
    "How many minutes should I walk every day?",
    "I'm nervous about a job interview tomorrow.",
    "What's the difference between a frog and a toad?",
    "Can you suggest a book for a long train ride?",
    "How do I keep basil alive on a windowsill?",
]


EVERYDAY_HELD_OUT = [
    "How do I get rid of hiccups?",
    "What should I pack for a weekend at the beach?",
    "My tomato plants have yellow leaves.",
    "Is it okay to drink coffee in the evening?",
    "Can you remind me what a haiku is?",
    "I just finished a marathon!",
    "What's a quick lunch I can make at work?",
    "How do I clean a cast iron pan?",
    "My dog won't stop barking at night.",
    "What's the best way to learn to play guitar?",
    "I locked myself out of my car.",
    "How far is the moon from the earth?",
    "Any ideas for a first date?",
    "Why do leaves change color in the fall?",
    "I'm bored.",
    "How do I calm down before a speech?",
    "What's a good stretch for a sore back?",
    "Can you explain what a mortgage is?",
    "My kid has a cold. What should I do?",
    "What's a nice way to say no to a party invitation?",
]
HELD_OUT_CLIPS = ("vad/ten-vad-testset",)   # not shared/data/asr: the dev suite's real scenarios use those


def _cut(audio, start_s: float, end_s: float):
    """The span, from the VAD's first speech start less the agent's pre-roll (as the live recogniser
    gets it: Moonshine hears "You" in a leading silence)."""
    clip = audio[max(0, int(start_s * SAMPLE_RATE)):int(end_s * SAMPLE_RATE)]
    spans = speech_spans(clip)
    if spans:
        clip = clip[max(0, int((spans[0][0] - PREROLL_S) * SAMPLE_RATE)):]
    return clip


def _stream_text(stt, clip) -> str:
    """The final transcript of Moonshine's stream fed 32 ms chunks, as the engines feed it (the
    whole-utterance mode differs: it hears "You" in the pre-roll's silence)."""
    stream = stt.stream()
    for i in range(0, len(clip), CHUNK):
        stream.push(clip[i:i + CHUNK])
    stream.partial()    # the engines ask at the pause (the stream refreshes only when asked: SttConfig)
    return stream.finish().text.strip()


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def build(suite: Path) -> dict:
    stt = load_stt(SttConfig(backend="moonshine"))
    turns, skipped, duplicates, seen = [], [], [], set()

    def add(source: str, scenario: Path, audio, start_s: float, end_s: float, reference: str | None) -> None:
        text = _stream_text(stt, _cut(audio, start_s, end_s))
        where = f"{scenario.relative_to(suite.parent)} {start_s:.2f}-{end_s:.2f} s"
        if not text or _key(text) in seen:
            (skipped if not text else duplicates).append(where)
            return
        seen.add(_key(text))
        turns.append({"id": f"{source}/{scenario.name}" + ("" if source != "real-interrupt" else
                                                          ("#context" if start_s == 0 else "#interrupt")),
                      "source": source, "text": text, "from": where, "reference": reference})
        print(f"{source:22s} {text!r}", file=sys.stderr)

    for kind, source in (("real/turn_taking", "real-turn"), ("synthetic/turn_taking", "synthetic-turn")):
        for scenario in sorted((suite / kind).iterdir()):
            audio, _ = read_user_audio(scenario / "input.wav")
            end = json.loads((scenario / "turn_taking.json").read_text())[0]["timestamp"][0]
            meta = json.loads((scenario / "meta.json").read_text())
            reference = meta.get("transcript") or (" ".join(meta["script"]) if "script" in meta else None)
            add(source, scenario, audio, 0.0, end + TAIL_S, reference)
    for scenario in sorted((suite / "real/interrupt").iterdir()):
        audio, _ = read_user_audio(scenario / "input.wav")
        label = json.loads((scenario / "interrupt.json").read_text())[0]
        start, end = label["timestamp"]
        add("real-interrupt", scenario, audio, 0.0, start, label["context"])
        add("real-interrupt", scenario, audio, start, end + TAIL_S, label["interrupt"])
    for i, text in enumerate(EVERYDAY):
        turns.append({"id": f"everyday/{i:02d}", "source": "everyday", "text": text, "from": "written for this set",
                      "reference": text})
    return {"about": "User turns for benchmarks/llm_replies.py, built by benchmarks/llm_turns.py: dev-suite speech "
                     "transcribed by Moonshine tiny-en, cut where the agent answers, plus everyday requests",
            "stt": stt.name, "turns": turns, "skipped_empty": skipped, "skipped_duplicate": duplicates}


def build_held_out(data: Path) -> dict:
    stt = load_stt(SttConfig(backend="moonshine"))
    turns, skipped = [], []
    for folder in HELD_OUT_CLIPS:
        for wav in sorted((data / folder).glob("*.wav")):
            audio, _ = read_user_audio(wav)
            text = _stream_text(stt, _cut(audio, 0.0, len(audio) / SAMPLE_RATE))
            if not text:
                skipped.append(str(wav.relative_to(data)))
                continue
            turns.append({"id": f"held-out/{wav.stem}", "source": "real-clip", "text": text,
                          "from": str(wav.relative_to(data)), "reference": None})
            print(f"real-clip {text!r}", file=sys.stderr)
    for i, text in enumerate(EVERYDAY_HELD_OUT):
        turns.append({"id": f"everyday-held-out/{i:02d}", "source": "everyday", "text": text,
                      "from": "written for this set", "reference": text})
    return {"about": "Held-out user turns for benchmarks/llm_replies.py, built by benchmarks/llm_turns.py --held-out: "
                     "real clips outside the dev suite transcribed by Moonshine tiny-en, plus everyday requests",
            "stt": stt.name, "turns": turns, "skipped_empty": skipped, "skipped_duplicate": []}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", type=Path, default=ROOT / "out" / "suite")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "llm_turns.json")
    ap.add_argument("--held-out", action="store_true",
                    help="build the held-out set from --data instead (default out: benchmarks/data/llm_turns_heldout.json)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    if args.held_out:
        if args.out == ap.get_default("out"):
            args.out = ROOT / "benchmarks" / "data" / "llm_turns_heldout.json"
        data = build_held_out(args.data)
    else:
        data = build(args.suite)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(data['turns'])} turns -> {args.out} ({len(data['skipped_empty'])} empty and "
          f"{len(data['skipped_duplicate'])} repeated transcripts left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
