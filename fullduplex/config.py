"""Typed configuration: one dataclass per component, and these class bodies are the one defaults table.

Every default a user might want to change lives here, with the reason for its value. The CLI only
overrides fields; engines and models read only their own section.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant in a spoken conversation. "
    "Answer in one or two short sentences of plain spoken English, with no lists or markup."
)
# Alternatives compared by benchmarks/llm_replies.py (not the default). ASR: tells the model what its input
# is (speech recognition: fragments, misheard words) and what to do then. PLAIN: fewer, more concrete
# instructions, for models too small to follow several at once.
ASR_SYSTEM_PROMPT = (
    "You are a friendly voice assistant in a spoken conversation. The user's words come from speech "
    "recognition, so they may be a fragment or contain misheard words. If you can tell what the user means, "
    "answer it; if not, ask one short question to clarify. Never repeat the user's words back. "
    "Reply in one or two short, complete sentences of plain spoken English, with no lists or markup."
)
PLAIN_SYSTEM_PROMPT = (
    "You are a helpful friend talking out loud. Reply with one short, complete sentence in your own words "
    "that answers or responds to what was just said."
)


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5         # Silero speech probability that opens speech
    neg_threshold: float = 0.35    # and the lower one that closes it (hysteresis, as Silero's VADIterator)
    min_speech_ms: int = 96        # three 32 ms chunks: a click or a breath is not speech
    hangover_ms: int = 160         # gaps shorter than this stay inside one speech segment


@dataclass(frozen=True)
class SttConfig:
    backend: str = "moonshine"     # "moonshine" (tiny-en, streaming) | "whisper-tiny" | "whisper-base"
    threads: int = 1               # CPU threads for Whisper (CTranslate2); two cores are shared by every model
    partial_interval_s: float = 0.0  # seconds of audio between unasked refreshes of a streaming recogniser's partial
                                     # transcript (0: only when asked). Moonshine re-transcribes the whole open line each
                                     # time: refreshes every 0.6 s were nearly all its cost (0.20-0.38 CPU-s per s of a
                                     # monologue, 0.003 without), and the engine reads words only at pauses, where it
                                     # asks for a transcript of everything heard (issue 17: a call 0.41 -> 0.34 CPU-s/s).
                                     # Set it for live captions while the user talks
    single_thread: bool = True     # Moonshine's ONNX runtime computes on the calling thread only. Its own pool (two more
                                   # threads) spins: it cost as much CPU again as the caller and was slower, not faster,
                                   # on a busy 2-core box (measured: 0.33 -> 0.21 CPU-s per s of audio, issue 17)


@dataclass(frozen=True)
class LlmConfig:
    backend: str = "smollm2"       # an embedded GGUF ("smollm2", ...) | "gguf" (your file) | "openai" (any OpenAI-compatible endpoint)
    gguf: str = ""                 # path of a .gguf chat model, for backend "gguf"
    base_url: str = field(default_factory=lambda: os.environ.get("FULLDUPLEX_LLM_URL", "http://127.0.0.1:8080/v1"))
    model: str = field(default_factory=lambda: os.environ.get("FULLDUPLEX_LLM_MODEL", "default"))
    api_key: str = field(default_factory=lambda: os.environ.get("FULLDUPLEX_LLM_KEY", os.environ.get("OPENAI_API_KEY", "")), repr=False)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = 60           # a spoken turn, not an essay
    min_tokens: int = 8            # the end of the reply is not allowed before this many tokens (llama.cpp only):
                                   # a reply of <= 3 words is no turn to Full-Duplex-Bench ("I'm ready.")
    temperature: float = 0.3
    repeat_penalty: float = 1.2    # llama.cpp: a token among the reply's last 64 made less likely, so the small model does
                                   # not loop ("No, no, no, no, ..."); 1.0: off. Acceptable replies 61 -> 64 % on the dev
                                   # turns, 40 -> 54 % on held-out ones by the judge's first word, which is 3x too kind:
                                   # by hand 19 % and 20 % at 1.2 (benchmarks/llm_replies.py; issue 15)
    brief_when_contended: bool = True   # a reply that has said a whole sentence ends there when another call's answer
                                   # waits for the shared embedded LLM (a loaded server; never with one call): the rest
                                   # of replies was 80 % of what answers waited behind. 12 calls over 15 s, 9 alternating
                                   # pairs: answers 1.10 vs 2.13 s (engine median; 9 of 9), ~1 reply in 5 one sentence
                                   # long (issue 17). False: it lets the answer in and goes on when its audio runs low
    threads: int = 1               # llama.cpp with more threads stalls 10-45 s beside the ONNX models on 2 cores (measured here)
    context_tokens: int = 2048
    requantize: str = "q8_0"       # the embedded SmolLM2 (shipped as Q4_1) rewritten once into the cache as Q8_0: the same
                                   # weights, a prompt read 2.2x and decoded 1.2-1.5x as fast on one core; "": as shipped
                                   # (models/llm.py REQUANTIZE; issue 17)
    timeout_s: float = 10.0        # HTTP backends: connect/read timeout
    history_turns: int = 6         # user/agent exchanges kept in the prompt
    kept_contexts: int = 16        # llama.cpp: evaluated prompts of conversations kept across the others' requests
                                   # (~5 MB each), so a conversation's history is not evaluated again (issue 17)
    contexts: int = 1              # llama.cpp contexts (a KV cache each, the weights shared), made as calls ask at once:
                                   # each decodes one reply on its own core. 1 on 2 cores: with 2, two calls' answers
                                   # came no sooner at 2-4 calls and at 6 one run of two fell behind the frame clock
                                   # (25 % late frames: both cores decoding, none for the audio path; issue 17)


@dataclass(frozen=True)
class TtsConfig:
    backend: str = "piper"         # "piper" (en_US-joe-medium) | "espeak" (robotic, ~15 ms)
    threads: int = 1               # ONNX intra-op threads for Piper
    length_scale: float = 1.0      # >1 speaks slower
    kept_pieces: int = 256         # Piper: audio of short pieces kept by text and said again without synthesis (~60 KB
                                   # per second of speech; replies repeat their openings across calls: issue 17)


@dataclass(frozen=True)
class TurnConfig:
    silence_ms: int = 700          # the classic fixed end-of-turn threshold of VAD pipelines
    model: str = ""                # the predictive turn model's file ("": the committed fullduplex/turn/data/turn.json)


@dataclass(frozen=True)
class DuplexConfig:
    """When the full-duplex engine (and the predictive cascade) takes the floor, and when it backchannels.

    The floor is taken after a silence of ``min_silence_s + max_extra_s * (1 - p)^2``, p being the turn
    model's P(user done): sure -> a short gap, unsure -> up to the fallback. The waits are the best
    *measured live* of those tried on the real dev bench (92 scenarios, docs/bench): with the committed
    model, 0.2 + 1.6 s gave pause TOR 0.24; the real-trained model with waits fitted offline
    (``turn/tuning.py``: 0.3 + 0.9 s and 0.3 + 1.2 s) answered later and took more long holds (0.33).
    Offline, on the real pauses, these waits cut off 37 % of holds at 0.61 s mean delay (docs/turn/report.md).
    The backchannel spacing keeps the agent below the real listeners' rate.
    """
    min_silence_s: float = 0.20    # never take the floor in a shorter gap: gaps inside phrases are this short
    max_extra_s: float = 1.6       # an unsure model waits up to 1.8 s: real mid-turn pauses of 1.4-2 s are held
    draft_p: float = 0.0           # draft a reply in every pause: P at a real turn end's first decision is < 0.25 two
                                   # times in three, so waiting for P drafted late (dev bench: the decision -> audio
                                   # gap fell from 0.57 s to 0.28 s median); a draft is dropped if the user goes on
    draft_p_busy: float = 0.5      # ... but while other conversations' requests hold the shared LLM (a loaded server), only
                                   # from this P: a dropped draft spends the CPU their answers wait for (issue 17)
    draft_pieces: int = 1          # pieces of a draft synthesised before the floor is taken; the rest waits as text
                                   # and is spoken after the first (a dropped draft costs one piece of TTS; issue 17)
    bc_min_speech_s: float = 2.0   # backchannel: user speech since the turn began or the last backchannel
    bc_min_gap_s: float = 5.0      # ... and time since the last one. Measured on the real dev bench: 6.3 a minute of
                                   # user speech, the real listeners 7.0 (8 s spacing gave 1.7: too few)
    bc_pause_s: tuple[float, float] = (0.18, 0.6)   # ... inside a pause this long (real ones start 0.14-0.58 s in)
    bc_max_p_done: float = 0.6     # ... while the user is likely holding the floor
    ask_after_s: float = 0.06      # silence before the ear is asked for the words up to the pause (one VAD chunk and a bit)
    p_every_s: float = 0.06        # how often the turn model is asked again during a pause
    tail_s: float = 10.0           # trailing audio the turn model reads (Smart Turn: 8 s before the pause)
    backchannel_max_s: float = 1.0  # user speech over the agent longer than this is a barge-in, whatever it says;
                                    # shorter, it is one only with a stop-cue or a question (``claims_the_floor``):
                                    # listener tokens ("mm-hm", "oh okay", "yeah yeah") last up to ~1 s
    resume_after_s: float = 0.35   # silence after a short overlap before the answer resumes: the user may go on
                                   # ("Eight, [0.16 s] the press yard": resumed at once, the turn lost its first word)
    background_db: float = 8.0     # speech over the agent this far below the user's own level (``UserLevel``) is not
                                   # the user (a TV, someone across the room): talked through. Judged on the overlap
                                   # heard out (``backchannel_max_s``): the user's own overlaps there are -5..+7 dB,
                                   # background 10-20 dB below (FDB v1.5). 0: off
    background_onset_db: float = 12.0  # ... and at the onset, on ~0.1 s, not yielding at all: a short window is noisy
                                   # (the user's soft onsets reach 9 dB below), so only clearly distant speech


@dataclass(frozen=True)
class ParallelConfig:
    """The fast + slow LLM pair (architecture 2): when the slow reply replaces or amends the fast one."""
    keep_similarity: float = 0.5   # word-level similarity above which the slow reply adds nothing worth a change
    amend_similarity: float = 0.85  # the slow opening must say what was spoken (one changed word in four is a correction)
    connector: str = "Actually,"   # how a person corrects course mid-reply
    slow_timeout_s: float = 12.0   # a slow model slower than this leaves the fast reply standing


@dataclass(frozen=True)
class RuntimeConfig:
    frame_ms: int = 20             # one tick of both streams; 20 ms is Opus's and WebRTC's frame
    tail_s: float = 6.0            # silence `simulate` appends so the agent can answer a recording that ends on speech
    max_reply_s: float = 30.0      # bound on buffered agent audio per reply


@dataclass(frozen=True)
class MoshiConfig:
    """Kyutai's Moshi (architecture 5 on a GPU). Sampling defaults are Moshi's own (``LMGen``)."""

    checkpoint_dir: str = ""       # a local folder in Moshi's layout (config.json, LM, Mimi, tokenizer); wins over hf_repo
    hf_repo: str = "kyutai/moshiko-pytorch-bf16"   # used only when checkpoint_dir is empty (needs network)
    device: str = "auto"           # "auto" (CUDA when present, else CPU: not real time), "cpu", "cuda", "cuda:N"
    dtype: str = "auto"            # "auto" (bf16 on GPU, float32 on CPU) | "bfloat16" | "float16" | "float32"
    temp: float = 0.8              # audio token temperature
    temp_text: float = 0.7         # text (inner monologue) temperature
    top_k: int = 250               # audio top-k
    top_k_text: int = 25           # text top-k
    seed: int | None = None        # sampling seed per session (None: not seeded)
    queue_frames: int = 2          # 80 ms frames waiting for the model; beyond this, frames are dropped (reported)
    playout_frames: int = 2        # decoded 80 ms frames buffered for playback; beyond this, the oldest audio is dropped
    threads: int = 1               # CPU torch threads: two cores are shared by everything (0: torch's default)
    slots: int = 0                 # conversations batched on one model (0: 1 on a CPU, from free memory on CUDA)


@dataclass(frozen=True)
class Config:
    vad: VadConfig = field(default_factory=VadConfig)
    stt: SttConfig = field(default_factory=SttConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    # The slow, larger model of the parallel pair (architecture 2); same context, longer replies allowed.
    slow_llm: LlmConfig = field(default_factory=lambda: LlmConfig(backend="qwen2.5-coder-1.5b", max_tokens=80,
                                                                  temperature=0.2))
    tts: TtsConfig = field(default_factory=TtsConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    duplex: DuplexConfig = field(default_factory=DuplexConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    moshi: MoshiConfig = field(default_factory=MoshiConfig)

    def with_(self, **sections) -> "Config":
        """``cfg.with_(turn=TurnConfig(silence_ms=500))`` or ``cfg.with_(turn={"silence_ms": 500})``."""
        updates = {}
        for name, value in sections.items():
            current = getattr(self, name)
            updates[name] = replace(current, **value) if isinstance(value, dict) else value
        return replace(self, **updates)
