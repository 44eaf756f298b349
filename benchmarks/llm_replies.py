"""Which embedded chat model and system prompt give a voice agent replies that make sense, and how fast.

    .venv/bin/python benchmarks/llm_replies.py [--models smollm2,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b]
        [--prompts default,asr,plain] [--turns benchmarks/data/llm_turns.json] [--limit N]
        [--repeat-penalty X] [--out benchmarks/results/llm_replies.json]
    .venv/bin/python benchmarks/llm_replies.py --replies EARLIER.json [--brief] [--labels FILE]   # judge again

Each model answers every user turn of benchmarks/data/llm_turns.json (dev-scenario transcripts and
everyday requests; see benchmarks/llm_turns.py) once per system prompt, as the agent calls it: through
the agent's own ``LlamaCppLlm`` with its LlmConfig (format, max_tokens 60, temperature 0.3, repeat
penalty, seed 0, threads 1), one turn with no history. ``--turns benchmarks/data/llm_turns_heldout.json``:
turns no setting was chosen on (``llm_turns.py --held-out``).

A reply is **acceptable** when all three hold:

(a) complete: the reply as spoken, i.e. everything the agent's piece cutter (text_pieces, first_clause
    as the duplex engine) hands to the voice, with the 60-token cut, has >= 4 words and ends with
    . ! or ? (closing quotes allowed). A reply cut off by max_tokens mid-sentence fails; so does one of
    <= 3 words, which Full-Duplex-Bench does not count as a turn.
(b) not an echo: fewer than 3/4 of the reply's content words (words not in a small list of function
    words, lower-cased, plural "s" dropped) are words the user said, and it does not copy a run of
    >= 4 consecutive user words that makes up half of the reply or more. Why: an echo is a reply
    whose substance is the user's own words, a parrot ("I'm the marketing expert." -> "I'm the
    marketing expert.") or a restatement ("Put it on the desk." -> "Put the desk on the desk.",
    "is there an Iger roll" -> "Yes, there is an Iger roll."): all their content words are the user's.
    At 3/4 a reply brings at most one word of its own per three it takes; a clarifying question that
    quotes a few words ("What do you mean by 'all that is desk'?") or an answer that repeats the
    question's subject and goes on stays below. Contentless filler ("I'm here to help!") is not an
    echo; the judge fails it.
(c) on topic: the judge, the largest embedded model (qwen2.5-coder-1.5b, temperature 0, 2 threads:
    the judge is not timed), gets the fixed rubric JUDGE_SYSTEM (what is good and bad, six worked
    examples that are not in the turn set) and JUDGE_PROMPT with the user turn and the spoken reply;
    its first word is parsed: "yes" passes, anything else fails. Verdicts are cached by (user, reply).

Speed, per model with threads=1 on this machine's otherwise idle cores (in the agent the VAD, STT and
TTS share the two cores): time from the request to the first token, and to the first clause (the first
piece the duplex engine would speak: TextPieces(first_clause=True)); decode tokens/s (stream chunks
after the first / their time); resident memory of the loaded model (RSS growth from before loading
to after a warm-up reply). The system prompt's KV cache is reused between turns, as in the agent.

Prints a markdown table (acceptable % with a 95 % Wilson interval, each criterion's pass rate,
first clause ms median / p90, tok/s, MB); progress goes to stderr; --out keeps every reply and verdict.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fullduplex.config import (ASR_SYSTEM_PROMPT, DEFAULT_SYSTEM_PROMPT, PLAIN_SYSTEM_PROMPT,  # noqa: E402
                               LlmConfig)
from fullduplex.engines.text_pieces import TextPieces, ends_sentence  # noqa: E402
from fullduplex.models.llm import CUT_OFF, EMBEDDED_GGUF, LlamaCppLlm, _gguf_path  # noqa: E402

PROMPTS = {"default": DEFAULT_SYSTEM_PROMPT, "asr": ASR_SYSTEM_PROMPT, "plain": PLAIN_SYSTEM_PROMPT}
JUDGE_MODEL = "qwen2.5-coder-1.5b"
JUDGE_SYSTEM = (
    "You check the replies of a voice assistant. The user's words come from speech recognition, so they may be "
    "a fragment or contain misheard words.\n"
    "A reply is GOOD when it responds to what the user said and makes sense: it answers the question, reacts "
    "to the statement, or asks a relevant question to clarify it.\n"
    "A reply is BAD when it is about something the user did not mention, ignores the user's words, makes no "
    "sense, says something plainly false, apologises or refuses for no reason, or is generic filler that "
    "would fit anything.\n"
    "Examples:\n"
    'User: "Why do cats purr?" Reply: "Cats purr when they are content, and sometimes to calm themselves." -> yes\n'
    'User: "so where were we" Reply: "I\'m sorry for your loss." -> no\n'
    'User: "I just moved to Ohio." Reply: "Oh nice, how are you finding it so far?" -> yes\n'
    'User: "pass me the the" Reply: "Sorry, pass you what?" -> yes\n'
    'User: "How do I water a cactus?" Reply: "Cactus are a kind of plant in the house." -> no\n'
    'User: "it was a long day" Reply: "I\'m here to help you with any questions you have." -> no\n'
    "Answer with one word: yes for a GOOD reply, no for a BAD one."
)
JUDGE_PROMPT = 'User: "{user}" Reply: "{reply}" ->'
# The judge says "yes" to almost anything (44 of 60 hand-checked replies, where a reader passes 20); a second,
# stricter reading asks for a clear yes: log-odds of yes over no above 2 (e^2 = 7.4 : 1). This threshold was
# chosen after reading those 60 (agreement 43/60 against 30/60), so the strict numbers are indicative only.
STRICT_LOG_ODDS = 2.0

FUNCTION_WORDS = set("""
a an the and or but so if then than that this these those there here it its it's i i'm i've i'll i'd me my mine
you you're you've you'll your yours we we're our us he she him her his they them their is am are was were be been
being do does did done have has had having will would can could should shall may might must not no yes yeah oh
ok okay um uh well just to of in on at by for with from as about into up out over what which who whom whose when
where why how all any some very too also really let let's don't can't i'm that's what's it's there's
""".split())
MIN_WORDS = 4
ECHO_TAKEN = 0.75   # share of the reply's content words that the user said
ECHO_RUN = 4        # words copied in a row
_WORD = re.compile(r"[a-z0-9']+")
_END = re.compile(r"[.!?][\"'”’)\]]*$")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def _content(ws: list[str]) -> set[str]:
    return {w[:-1] if w.endswith("s") and len(w) > 3 else w for w in ws if w not in FUNCTION_WORDS}


def longest_shared_run(a: list[str], b: list[str]) -> int:
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def complete(spoken: str) -> bool:
    return len(words(spoken)) >= MIN_WORDS and bool(_END.search(spoken.strip()))


def first_sentence(pieces: list[str]) -> list[str]:
    """The pieces up to the first that ends a sentence (all of them where none does), by the rule the agent
    ends a brief reply on."""
    end = next((i for i, p in enumerate(pieces) if ends_sentence(p)), len(pieces) - 1)
    return pieces[:end + 1]


def echo(user: str, spoken: str) -> bool:
    rw, uw = words(spoken), words(user)
    mine = _content(rw)
    taken = len(mine & _content(uw)) / len(mine) if mine else 0.0
    run = longest_shared_run(rw, uw)
    return taken >= ECHO_TAKEN or (run >= ECHO_RUN and run >= len(rw) / 2)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return ((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))] if xs else float("nan")


def _llama(backend: str, threads: int, cfg: LlmConfig):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as LlamaCppLlm
    import llama_cpp
    return llama_cpp.Llama(model_path=str(_gguf_path(backend)), n_ctx=cfg.context_tokens, n_threads=threads,
                           n_threads_batch=threads, verbose=False)


def reply(llm: LlamaCppLlm, system: str, user: str) -> dict:
    """One streamed reply, as the duplex engine writes and speaks it (``TalkingConversation.generate``:
    the first piece may end at a clause, a repeated sentence stops the reply, a reply cut off by the
    token limit does not end on half a sentence), timed as the engine would see it."""
    cutter = TextPieces(first_clause=True)  # the duplex engine's cutter
    pieces, n, t_first, t_clause, cut_off = [], 0, None, None, False
    t0 = time.perf_counter()
    stream = llm.stream([{"role": "system", "content": system}, {"role": "user", "content": user}])
    for text in stream:
        if text is CUT_OFF:
            cut_off = True
            continue
        now = time.perf_counter()
        n += 1
        t_first = t_first if t_first is not None else now
        out = cutter.push(text)
        if out and t_clause is None:
            t_clause = now
        pieces += out
        if cutter.looping:
            stream.close()
            break
    t_end = time.perf_counter()
    pieces += cutter.flush(cut_off)
    t_clause = t_clause if t_clause is not None else t_end  # the whole reply was one piece: spoken at the end
    return {"reply": " ".join(pieces), "pieces": pieces, "tokens": n,
            "finish": "loop" if cutter.looping else "length" if cut_off else "stop",
            "first_token_ms": round(1000 * ((t_first or t_end) - t0), 1),
            "first_clause_ms": round(1000 * (t_clause - t0), 1),
            "tok_s": round((n - 1) / (t_end - t_first), 2) if n > 1 and t_end > t_first else None}


def judge(llm, user: str, spoken: str, yes_no: tuple[list[int], list[int]]) -> tuple[bool, str, float]:
    """The verdict (first word "yes"), what the judge wrote, and its log-odds of yes over no for that word."""
    first_scores = []

    def keep(input_ids, scores):
        if not first_scores:
            first_scores.append(np.array(scores, dtype=np.float64))
        return scores
    out = llm.create_chat_completion(messages=[{"role": "system", "content": JUDGE_SYSTEM},
                                               {"role": "user", "content": JUDGE_PROMPT.format(user=user, reply=spoken)}],
                                     max_tokens=3, temperature=0.0, seed=0, logits_processor=[keep])
    text = out["choices"][0]["message"]["content"].strip()
    first = (words(text) or [""])[0]
    s = first_scores[0]
    top = s.max()
    lse = lambda ids: top + np.log(np.exp(s[ids] - top).sum())  # noqa: E731
    return first == "yes", text, round(float(lse(yes_no[0]) - lse(yes_no[1])), 3)


def summarise(rows: list[dict]) -> dict:
    n = len(rows)
    ok = sum(r["acceptable"] for r in rows)
    clause = [r["first_clause_ms"] for r in rows]
    toks = [r["tok_s"] for r in rows if r["tok_s"]]
    lo, hi = wilson(ok, n)
    return {"n": n, "acceptable": ok, "acceptable_pct": 100 * ok / n if n else 0, "wilson95": [100 * lo, 100 * hi],
            "complete_pct": 100 * sum(r["complete"] for r in rows) / n,
            "not_echo_pct": 100 * sum(not r["echo"] for r in rows) / n,
            "on_topic_pct": 100 * sum(r["on_topic"] for r in rows) / n,
            "first_token_ms_median": statistics.median(r["first_token_ms"] for r in rows),
            "first_clause_ms_median": statistics.median(clause), "first_clause_ms_p90": percentile(clause, 0.9),
            "tok_s_median": statistics.median(toks) if toks else None,
            "cut_by_max_tokens_pct": 100 * sum(r["finish"] == "length" for r in rows) / n,
            "stopped_looping_pct": 100 * sum(r["finish"] == "loop" for r in rows) / n,
            "acceptable_strict_pct": 100 * sum(r.get("acceptable_strict", r["acceptable"]) for r in rows) / n,
            "wilson95_strict": [100 * x for x in wilson(sum(r.get("acceptable_strict", r["acceptable"]) for r in rows), n)]}


def table(summary: dict) -> str:
    lines = ["| model | prompt | acceptable | 95 % CI | complete | not echo | on topic | first clause ms (median / p90) "
             "| first token ms | tok/s | RSS MB | acceptable, strict judge |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in summary.items():
        model, prompt = key.split("|")
        lines.append(f"| {model} | {prompt} | {s['acceptable_pct']:.0f} % ({s['acceptable']}/{s['n']}) "
                     f"| {s['wilson95'][0]:.0f}–{s['wilson95'][1]:.0f} % | {s['complete_pct']:.0f} % "
                     f"| {s['not_echo_pct']:.0f} % | {s['on_topic_pct']:.0f} % "
                     f"| {s['first_clause_ms_median']:.0f} / {s['first_clause_ms_p90']:.0f} "
                     f"| {s['first_token_ms_median']:.0f} | {s['tok_s_median'] or 0:.1f} | {s['rss_mb']:.0f} "
                     f"| {s['acceptable_strict_pct']:.0f} % ({s['wilson95_strict'][0]:.0f}–{s['wilson95_strict'][1]:.0f}) |")
    return "\n".join(lines)


def generate(models: list[str], prompts: list[str], turns: list[dict], cfg: LlmConfig) -> tuple[list[dict], dict]:
    """Every model's reply to every turn under every prompt, timed; one model loaded at a time."""
    rows: list[dict] = []
    memory: dict[str, float] = {}
    t_start = time.time()
    for model in models:
        gc.collect()
        before = rss_mb()
        llm = LlamaCppLlm(replace(cfg, backend=model))   # the agent's own model, format and sampling
        reply(llm, PROMPTS[prompts[0]], "Hello, can you hear me?")  # warm-up (pages in the weights)
        memory[model] = rss_mb() - before
        print(f"[{time.time() - t_start:5.0f} s] {model}: loaded, +{memory[model]:.0f} MB RSS", file=sys.stderr)
        for prompt in prompts:
            # The system prompt's KV is computed once per conversation and reused (llama.cpp's prefix cache):
            # time the steady state, with it already cached.
            reply(llm, PROMPTS[prompt], "Hi.")
            for i, turn in enumerate(turns):
                r = reply(llm, PROMPTS[prompt], turn["text"])
                r.update(model=model, prompt=prompt, turn=turn["id"], source=turn["source"], user=turn["text"])
                r["complete"], r["echo"] = complete(r["reply"]), echo(turn["text"], r["reply"])
                rows.append(r)
                print(f"[{time.time() - t_start:5.0f} s] {model}/{prompt} {i + 1}/{len(turns)} "
                      f"{r['first_clause_ms']:.0f} ms: {turn['text'][:40]!r} -> {r['reply'][:70]!r}", file=sys.stderr)
        del llm
    return rows, memory


def judge_all(rows: list[dict], cfg: LlmConfig) -> None:
    judge_llm = _llama(JUDGE_MODEL, 2, cfg)  # the judge is not timed: both cores

    def single(ws: list[str]) -> list[int]:
        return [t[0] for w in ws for t in [judge_llm.tokenize(w.encode(), add_bos=False, special=False)] if len(t) == 1]
    yes_no = (single(["yes", "Yes"]), single(["no", "No"]))
    verdicts: dict[tuple[str, str], tuple[bool, str, float]] = {}
    t_start = time.time()
    for i, r in enumerate(rows):
        r["complete"], r["echo"] = complete(r["reply"]), echo(r["user"], r["reply"])  # the current rules
        key = (r["user"], r["reply"])
        if key not in verdicts:
            verdicts[key] = judge(judge_llm, *key, yes_no)
        r["on_topic"], r["judge_said"], r["judge_log_odds"] = verdicts[key]
        r["on_topic_strict"] = r["judge_log_odds"] > STRICT_LOG_ODDS
        r["acceptable"] = r["complete"] and not r["echo"] and r["on_topic"]
        r["acceptable_strict"] = r["complete"] and not r["echo"] and r["on_topic_strict"]
        if (i + 1) % 20 == 0:
            print(f"[{time.time() - t_start:5.0f} s] judged {i + 1}/{len(rows)}", file=sys.stderr)


def agreement(rows: list[dict], labels_file: Path) -> dict:
    """The judge against the hand-given verdicts of labels_file, on the pairs this run judged."""
    labels = {(x["user"], x["reply"]): x["on_topic"] for x in json.loads(labels_file.read_text())["labels"]}
    judged = {(r["user"], r["reply"]): r for r in rows if (r["user"], r["reply"]) in labels}
    out = {"n": len(judged), "hand_yes": sum(labels[k] for k in judged),
           # acceptable with the hand's verdict for (c): the number to trust where every reply is labelled
           "hand_acceptable": sum(r["complete"] and not r["echo"] and labels[k] for k, r in judged.items())}
    for field in ("on_topic", "on_topic_strict"):
        out[field] = {"agree": sum(r[field] == labels[k] for k, r in judged.items()),
                      "judge_yes": sum(r[field] for r in judged.values()),
                      "both_yes": sum(r[field] and labels[k] for k, r in judged.items())}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(EMBEDDED_GGUF), help="comma-separated embedded backends")
    ap.add_argument("--prompts", default=",".join(PROMPTS), help=f"comma-separated, of {', '.join(PROMPTS)}")
    ap.add_argument("--turns", type=Path, default=ROOT / "benchmarks" / "data" / "llm_turns.json")
    ap.add_argument("--limit", type=int, default=0, help="only the first N turns (quick trials)")
    ap.add_argument("--out", type=Path, default=None, help="JSON with every reply, verdict and the summary")
    ap.add_argument("--replies", type=Path, default=None,
                    help="judge the replies of an earlier --out again (no generation; keeps its timings)")
    ap.add_argument("--labels", type=Path, default=ROOT / "benchmarks" / "data" / "llm_judge_labels.json",
                    help="hand-given on-topic verdicts to check the judge against (llm_hand_labels_rp12.json: every "
                         "reply of the default setting to the dev and held-out turns, whole and --brief)")
    ap.add_argument("--repeat-penalty", type=float, default=None,
                    help=f"llama.cpp's repeat penalty (default: the agent's, {LlmConfig().repeat_penalty}; 1.0: off)")
    ap.add_argument("--brief", action="store_true",
                    help="with --replies: judge each reply as far as its first whole sentence (what a reply says when "
                         "it ends there because other calls' answers wait for the model: brief_when_contended)")
    ap.add_argument("--no-judge", action="store_true", help="generate and time only (criterion c counts as passed)")
    args = ap.parse_args()
    models, prompts = args.models.split(","), args.prompts.split(",")
    for p in prompts:
        if p not in PROMPTS:
            ap.error(f"unknown prompt {p!r}; choose from {', '.join(PROMPTS)}")
    for m in models:
        if m not in EMBEDDED_GGUF:
            ap.error(f"unknown model {m!r}; choose from {', '.join(EMBEDDED_GGUF)}")
    cfg = LlmConfig() if args.repeat_penalty is None else LlmConfig(repeat_penalty=args.repeat_penalty)
    check = None
    if args.replies:  # judge again the replies of an earlier run (no generation, no timing)
        earlier = json.loads(args.replies.read_text())
        rows = [r for r in earlier["replies"] if r["model"] in models and r["prompt"] in prompts]
        memory = {key.split("|")[0]: s["rss_mb"] for key, s in earlier["summary"].items()}
        if args.brief:
            for r in rows:
                r["pieces"] = first_sentence(r["pieces"])
                r["reply"] = " ".join(r["pieces"])
                r["complete"], r["echo"] = complete(r["reply"]), echo(r["user"], r["reply"])   # also for --no-judge
    elif args.brief:
        ap.error("--brief judges the replies of an earlier run: give --replies FILE")
    else:
        turns = json.loads(args.turns.read_text())["turns"]
        turns = turns[:args.limit] if args.limit else turns
        rows, memory = generate(models, prompts, turns, cfg)
    if args.no_judge:
        for r in rows:
            r["on_topic"], r["judge_said"] = True, None
            r["acceptable"] = r["acceptable_strict"] = r["complete"] and not r["echo"]   # not an earlier judge's
    else:
        judge_all(rows, cfg)
        if args.labels.exists():
            check = agreement(rows, args.labels)
            print(f"judge vs hand labels ({check['n']} pairs, {check['hand_yes']} yes by hand): first word agrees on "
                  f"{check['on_topic']['agree']} (says yes {check['on_topic']['judge_yes']}), strict on "
                  f"{check['on_topic_strict']['agree']} (says yes {check['on_topic_strict']['judge_yes']}); acceptable "
                  f"with the hand's verdicts {check['hand_acceptable']} of {check['n']} labelled")
    summary = {}
    for model in models:
        for prompt in prompts:
            s = summarise([r for r in rows if r["model"] == model and r["prompt"] == prompt])
            s["rss_mb"] = memory[model]
            summary[f"{model}|{prompt}"] = s
    print(table(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "turns_file": str(args.turns.relative_to(ROOT))
            if args.turns.is_relative_to(ROOT) else str(args.turns), "config": {
                "max_tokens": cfg.max_tokens, "temperature": cfg.temperature, "threads": cfg.threads,
                "repeat_penalty": cfg.repeat_penalty, "requantize": cfg.requantize},
            "prompts": {p: PROMPTS[p] for p in prompts}, "judge": {"model": JUDGE_MODEL, "system": JUDGE_SYSTEM,
                                                                  "prompt": JUDGE_PROMPT, "strict_log_odds": STRICT_LOG_ODDS},
            "judge_check": check if check else None, "summary": summary, "replies": rows}, indent=1, ensure_ascii=False) + "\n")
        print(f"replies and verdicts -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
