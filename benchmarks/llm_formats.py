"""The embedded SmolLM2 in other llama.cpp formats: speed on one core, and how far its replies move.

    .venv/bin/python benchmarks/llm_formats.py [--formats q8_0,q6_k,q4_k,iq4_nl,q4_0,f16]

SmolLM2's package ships Q4_1. Each format here is that file rewritten by llama.cpp's own quantizer
(``allow_requantize``: the Q4_1 values written again, nothing re-learned). For each, on one thread:
prompt evaluation and decoding in ms per token (best of 3: 32 tokens in one batch, then 32 one at a
time), and against the shipped file, teacher-forced on its own greedy replies (<= 40 tokens) to the 70
user turns of ``benchmarks/data/llm_turns.json``: how often the next-token argmax agrees and the mean
KL divergence (nats per token). An exact F16 copy of the Q4_1 values is the floor of what arithmetic
alone moves (llama.cpp quantizes activations for Q4_1 dot products). ~3 min.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import llama_cpp  # noqa: E402
from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # noqa: E402

from fullduplex.config import DEFAULT_SYSTEM_PROMPT  # noqa: E402
from fullduplex.models import llm as llm_module  # noqa: E402

FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K", "q4_k": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
          "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "iq4_nl": "LLAMA_FTYPE_MOSTLY_IQ4_NL", "f16": "LLAMA_FTYPE_MOSTLY_F16"}
TEXT = " the knight rode on and on through the dark forest until he found the cave of the old dragon" * 6


def load(path: Path, logits_all: bool = False):
    return llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=1, n_threads_batch=1,
                           logits_all=logits_all, verbose=False)


def speed(path: Path) -> tuple[float, float]:
    model = load(path)
    tokens = model.tokenize(TEXT.encode(), add_bos=False)
    prompt = decode = float("inf")
    for _ in range(3):
        model.reset()
        t0 = time.perf_counter()
        model.eval(tokens[:32])
        prompt = min(prompt, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for token in tokens[32:64]:
            model.eval([token])
        decode = min(decode, time.perf_counter() - t0)
    return prompt / 32 * 1000, decode / 32 * 1000


def log_probs(model, prompt: list[int], reply: list[int]) -> np.ndarray:
    model.reset()
    model.eval(prompt + reply)
    scores = np.array(model.scores[len(prompt) - 1:len(prompt) + len(reply) - 1], dtype=np.float64)
    scores -= scores.max(1, keepdims=True)
    return scores - np.log(np.exp(scores).sum(1, keepdims=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--formats", default="q8_0,q6_k,q4_k,iq4_nl,q4_0,f16", help=f"comma-separated, of {', '.join(FTYPES)}")
    args = ap.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FTYPES]
    if unknown:
        raise SystemExit(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FTYPES)}")
    shipped = llm_module._gguf_path("smollm2")
    turns = json.loads((ROOT / "benchmarks" / "data" / "llm_turns.json").read_text())["turns"]

    ref = load(shipped, logits_all=True)
    text = lambda token: ref.detokenize([token], special=True).decode()  # noqa: E731
    chat = Jinja2ChatFormatter(template=ref.metadata["tokenizer.chat_template"], eos_token=text(ref.token_eos()),
                               bos_token=text(ref.token_bos()))
    pairs = []
    for turn in turns:
        prompt = chat(messages=[{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                                {"role": "user", "content": turn["text"]}]).prompt
        prompt_tokens = ref.tokenize(prompt.encode(), add_bos=False, special=True)
        reply = ref.create_completion(prompt_tokens, max_tokens=40, temperature=0.0)["choices"][0]["text"]
        reply_tokens = ref.tokenize(reply.encode(), add_bos=False)
        if reply_tokens:
            pairs.append((prompt_tokens, reply_tokens, log_probs(ref, prompt_tokens, reply_tokens)))
    ref = None
    n = sum(len(r) for _, r, _ in pairs)
    prompt_ms, decode_ms = speed(shipped)
    print(f"SmolLM2-135M-Instruct, {len(pairs)} replies, {n} reply tokens; one thread, {os.cpu_count()} cores")
    print(f"{'format':<16} {'MB':>5} {'prompt ms/tok':>13} {'decode ms/tok':>13} {'top-1 agree':>11} {'KL nats/tok':>11}")
    print(f"{'q4_1 (shipped)':<16} {shipped.stat().st_size / 1e6:>5.0f} {prompt_ms:>13.2f} {decode_ms:>13.2f} "
          f"{'1':>11} {'0':>11}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats:
            path = Path(tmp) / f"{fmt}.gguf"
            if not llm_module.quantize(llama_cpp, shipped, path, FTYPES[fmt]):
                print(f"{fmt}: llama.cpp could not write it")
                continue
            prompt_ms, decode_ms = speed(path)
            model = load(path, logits_all=True)
            agree = kl = 0.0
            for prompt_tokens, reply_tokens, ref_lp in pairs:
                lp = log_probs(model, prompt_tokens, reply_tokens)
                agree += float((lp.argmax(1) == ref_lp.argmax(1)).sum())
                kl += float((np.exp(ref_lp) * (ref_lp - lp)).sum())
            del model
            print(f"{fmt:<16} {path.stat().st_size / 1e6:>5.0f} {prompt_ms:>13.2f} {decode_ms:>13.2f} "
                  f"{agree / n:>11.3f} {kl / n:>11.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
