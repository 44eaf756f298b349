"""Would decoding several conversations' replies in one llama.cpp batch save CPU? (issue 17)

    .venv/bin/python benchmarks/llm_batch.py [--threads 1] [--repeat 3]

The embedded LLM (SmolLM2-135M as the agent runs it: Q8_0, one thread) on one llama.cpp context that
holds up to 16 sequences (one per conversation, ``n_seq_max``, a unified KV cache). Two tables, medians
of ``--repeat`` runs:

1. one reply, k tokens per ``llama_decode`` call (k = 1 is decoding, k > 1 a prompt read in chunks);
2. S replies decoded together: one token of each of S sequences per call, after a 34-token prompt each,
   in ms per call and per reply-token; "serial" is S single-token calls.

Batching pays where a call's cost grows slower than its tokens. It decides whether the agent decodes its
conversations' replies in one batch: at load the LLM is busy ~60 % of the time (0.05 CPU-s per second
of a call, 12 calls, ~11 ms per token), so a batch would hold one or two replies most of the time.
~1 min.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llama_cpp  # noqa: E402

from fullduplex.config import LlmConfig  # noqa: E402
from fullduplex.models.llm import _gguf_path, requantized  # noqa: E402

PROMPT = (b"<|im_start|>system\nYou are a helpful voice assistant. Answer briefly.<|im_end|>\n"
          b"<|im_start|>user\nTell me about the weather in Paris today please.<|im_end|>\n<|im_start|>assistant\n")
MAX_SEQ = 16


class Batcher:
    """A context for ``MAX_SEQ`` sequences and one reusable batch; ``decode`` times one call."""

    def __init__(self, llama, threads: int) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = 4096, 512, 512
        params.n_seq_max, params.kv_unified = MAX_SEQ, True
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(llama._model.model, params)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(512, 0, MAX_SEQ)

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)

    def decode(self, items: list[tuple[int, int, int, bool]]) -> float:
        """(token, position, sequence, wants logits) for each token: the call's seconds."""
        b = self.batch
        b.n_tokens = len(items)
        for i, (token, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
            b.seq_id[i][0] = seq
        t0 = time.perf_counter()
        if llama_cpp.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")
        return time.perf_counter() - t0


def chunk_ms(bat: Batcher, k: int) -> float:
    """ms per call of k tokens of one sequence (a prompt read k at a time)."""
    bat.clear()
    calls = max(3, 64 // k)
    spent = sum(bat.decode([(100 + i, c * k + i, 0, i == k - 1) for i in range(k)]) for c in range(calls))
    return spent / calls * 1e3


def together_ms(bat: Batcher, prompt: list[int], s: int, steps: int = 20) -> tuple[float, float]:
    """(ms per call of one token for each of s sequences, ms for the same tokens one call each)."""
    bat.clear()
    n = len(prompt)
    for seq in range(s):
        bat.decode([(t, i, seq, i == n - 1) for i, t in enumerate(prompt)])
    batched = sum(bat.decode([(100 + k, n + k, seq, True) for seq in range(s)]) for k in range(steps)) / steps
    serial = sum(bat.decode([(200 + k, n + steps + k, seq, True)]) for k in range(steps) for seq in range(s)) / steps
    return batched * 1e3, serial * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = LlmConfig()
    gguf = requantized(llama_cpp, _gguf_path(cfg.backend), cfg.requantize)
    llama = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, n_threads=args.threads, verbose=False)
    bat = Batcher(llama, args.threads)
    prompt = llama.tokenize(PROMPT, add_bos=False, special=True)
    median = statistics.median
    print(f"{gguf.name}, {args.threads} thread(s), median of {args.repeat}")
    print("one reply, k tokens per call:")
    for k in (1, 2, 4, 8, 16, 32, 64):
        ms = median(chunk_ms(bat, k) for _ in range(args.repeat))
        print(f"  k={k:3d}: {ms:6.1f} ms per call, {ms / k:5.2f} ms per token")
    print(f"S replies decoded together (one token each per call, after a {len(prompt)}-token prompt each):")
    for s in (1, 2, 3, 4, 8, 12, 16):
        runs = [together_ms(bat, prompt, s) for _ in range(args.repeat)]
        batched, serial = median(r[0] for r in runs), median(r[1] for r in runs)
        print(f"  S={s:2d}: {batched:6.1f} ms per call = {batched / s:5.2f} ms per reply-token; serial {serial:6.1f} ms "
              f"(batched/serial {batched / serial:.2f})")


if __name__ == "__main__":
    main()
