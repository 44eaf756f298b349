"""What one llama.cpp model costs the conversations that share it (issue 17).

    .venv/bin/python benchmarks/llm_shared.py [--seqs 1,2,3,4] [--tokens 24] [--threads 1] [--exchanges 4]

1. Conversations taking turns at the one context (``KeptContexts``): two calls with ``--exchanges``
   user/agent exchanges of history ask in turn, 8 requests, with ``LlmConfig.kept_contexts`` 0 (the
   context re-evaluates each call's history when the other has used it) and 16 (kept and brought
   back). Prints the time to the first token and to the end of each reply.
2. Decoding several conversations' replies in one batch: the embedded model (SmolLM2-135M), one context
   with one KV sequence per conversation, on llama.cpp's low-level API: each of B conversations has its
   own prompt (the system prompt, a different user turn); the prompts are evaluated in one batch, then B
   replies are decoded greedily, one token of each per ``llama_decode``. Against the same B replies one
   after another (what one shared context with a lock does). Prints per-conversation milliseconds for
   the prompt and per token, and the speed-up. A measurement of the lever, not an engine: sampling is
   argmax, no min_tokens, no stop strings.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fullduplex.config import DEFAULT_SYSTEM_PROMPT  # noqa: E402
from fullduplex.models.llm import _gguf_path  # noqa: E402

QUESTIONS = ["What time does the library open on Sunday?", "Can you help me book a table for two tonight?",
             "My car makes a strange noise when I brake.", "How do I reset my password?",
             "What's the weather like in Paris in May?", "I'd like to change my flight to Friday."]


class Batched:
    def __init__(self, seqs: int, threads: int) -> None:
        import llama_cpp as L
        self.L = L
        L.llama_backend_init()
        mparams = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(str(_gguf_path("smollm2")).encode(), mparams)
        cparams = L.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = 1024 * seqs, 512 * seqs, 512
        cparams.n_seq_max, cparams.n_threads, cparams.n_threads_batch = seqs, threads, threads
        cparams.kv_unified = True
        self.ctx = L.llama_init_from_model(self.model, cparams)
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.eos = L.llama_vocab_eos(self.vocab)
        self.batch = L.llama_batch_init(512 * seqs, 0, seqs)

    def tokenize(self, text: str) -> list[int]:
        buf = (self.L.llama_token * 4096)()
        n = self.L.llama_tokenize(self.vocab, text.encode(), len(text.encode()), buf, 4096, True, True)
        return list(buf[:n])

    def decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        """items: (token, position, sequence, wants logits)."""
        b = self.batch
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, logits
            b.seq_id[i][0] = seq
        b.n_tokens = len(items)
        if self.L.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def argmax(self, i: int) -> int:
        ptr = self.L.llama_get_logits_ith(self.ctx, i)
        return int(np.argmax(np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (self.n_vocab,))))

    def clear(self) -> None:
        self.L.llama_memory_clear(self.L.llama_get_memory(self.ctx), True)

    def run(self, prompts: list[list[int]], tokens: int, together: bool) -> tuple[float, float, list[list[int]]]:
        """(prompt seconds, decode seconds, the replies' tokens)."""
        self.clear()
        groups = [list(range(len(prompts)))] if together else [[s] for s in range(len(prompts))]
        prompt_s = decode_s = 0.0
        replies: list[list[int]] = [[] for _ in prompts]
        for group in groups:
            t0 = time.perf_counter()
            items, last = [], {}
            for s in group:
                for pos, tok in enumerate(prompts[s]):
                    items.append((tok, pos, s, pos == len(prompts[s]) - 1))
                    if pos == len(prompts[s]) - 1:
                        last[s] = len(items) - 1
            self.decode(items)
            nxt = {s: self.argmax(last[s]) for s in group}
            t1 = time.perf_counter()
            for step in range(tokens):
                for s in group:
                    replies[s].append(nxt[s])
                self.decode([(nxt[s], len(prompts[s]) + step, s, True) for s in group])
                nxt = {s: self.argmax(i) for i, s in enumerate(group)}
            prompt_s += t1 - t0
            decode_s += time.perf_counter() - t1
        return prompt_s, decode_s, replies


def chat_prompt(question: str) -> str:
    return (f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
            "<|im_start|>assistant\n")


def taking_turns(exchanges: int) -> None:
    from fullduplex.config import LlmConfig
    from fullduplex.models.llm import load_llm

    def history(topic: str) -> list[dict]:
        messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}]
        for i in range(exchanges):
            messages += [{"role": "user", "content": f"Tell me more about {topic}, part {i}. I want details."},
                         {"role": "assistant", "content": f"Sure. {topic} is interesting, and part {i} covers its "
                                                          "history and its uses today."}]
        return messages
    print(f"two calls with {exchanges} exchanges of history asking in turn (SmolLM2-135M, 1 thread):")
    for kept in (0, 16):
        llm = load_llm(LlmConfig(kept_contexts=kept))
        first, whole = [], []
        for i in range(4):
            for topic in ("gardening", "sailing"):
                t0 = time.perf_counter()
                stream = llm.stream(history(topic) + [{"role": "user", "content": f"And in winter? ({i})"}])
                next(stream)
                first.append(time.perf_counter() - t0)
                for _ in stream:
                    pass
                whole.append(time.perf_counter() - t0)
        print(f"  kept_contexts {kept:2d}: first token s {[round(x, 2) for x in first]}; whole reply s "
              f"{[round(x, 2) for x in whole]}; after the first two: median first token "
              f"{statistics.median(first[2:]):.2f} s, reply {statistics.median(whole[2:]):.2f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqs", default="1,2,3,4", help="conversations decoded together")
    ap.add_argument("--tokens", type=int, default=24, help="reply tokens per conversation (a first clause is ~8-12)")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (the engine uses 1)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--exchanges", type=int, default=4, help="history of each call in part 1")
    args = ap.parse_args()
    taking_turns(args.exchanges)
    levels = [int(x) for x in args.seqs.split(",")]
    llm = Batched(max(levels), args.threads)
    prompts = [llm.tokenize(chat_prompt(q)) for q in QUESTIONS]
    print(f"SmolLM2-135M, {args.threads} thread(s), prompts {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
          f"{args.tokens} reply tokens each, median of {args.repeat}")
    print(" B  one-by-one: prompt ms  per token ms (all B)   batched: prompt ms  per step ms (all B)   speed-up  same replies")
    for b in levels:
        alone = [llm.run(prompts[:b], args.tokens, together=False) for _ in range(args.repeat)]
        batch = [llm.run(prompts[:b], args.tokens, together=True) for _ in range(args.repeat)]
        pa, da = statistics.median(r[0] for r in alone), statistics.median(r[1] for r in alone)
        pb, db = statistics.median(r[0] for r in batch), statistics.median(r[1] for r in batch)
        same = sum(x == y for x, y in zip(alone[0][2], batch[0][2]))
        print(f"{b:2d}  {1000 * pa:20.0f}  {1000 * da / args.tokens:24.1f}   {1000 * pb:17.0f}  {1000 * db / args.tokens:20.1f}"
              f"   {(pa + da) / (pb + db):7.2f}x  {same}/{b}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
