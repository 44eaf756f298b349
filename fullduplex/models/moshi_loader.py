"""Kyutai's Moshi, loaded through the ``moshi`` package (never a copy of its code).

A checkpoint comes from a local folder in the layout Moshi's ``CheckpointInfo`` reads (``config.json``
naming the LM weights, the Mimi weights and the sentencepiece text tokenizer) or, where there is
network, a Hugging Face repo. Everything is checked before the big files load, so a wrong folder
fails in one clear line. ``make_tiny`` writes a checkpoint of Moshi's architecture with a tiny config
and *random weights* (for tests and CPU demos), loaded through exactly the same path.

Loaded models are pooled per (source, device, dtype): a streaming session owns one while it runs
(Moshi keeps its streaming state inside its modules), and the next session reuses it.

Nothing here imports torch at module import time; ``fullduplex`` stays light without the extra.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import MoshiConfig
from ..errors import MissingPackage, UserError

PURPOSE = "the Moshi agent (--agent moshi)"
CONFIG_NAME = "config.json"
MOSHI_7B_TEXT_CARD = 32000        # Moshi 7B's text vocabulary, for legacy folders without config.json
TINY_NAME = "fullduplex-tiny-moshi"
RANDOM_WARNING = "its weights are RANDOM (a test checkpoint: it produces noise and gibberish text, not speech)"


def note(msg: str) -> None:
    print(f"fullduplex: note: {msg}", file=sys.stderr, flush=True)


def _torch():
    try:
        import torch
    except ImportError:
        raise MissingPackage("torch", PURPOSE) from None
    return torch


def _moshi_loaders(device_type: str):
    """Import ``moshi.models.loaders`` (not ``moshi.server``: it runs its main() on import)."""
    if device_type == "cpu":
        # torch.compile on CPU costs ~5 s at the first step and gains nothing here; Moshi reads this
        # variable when its modules are imported.
        os.environ.setdefault("NO_TORCH_COMPILE", "1")
    _torch()
    try:
        from moshi.models import loaders
    except ImportError as e:
        missing = (e.name or "moshi").split(".")[0]
        if missing != "moshi":   # one of moshi's own dependencies
            raise MissingPackage(missing, PURPOSE) from None
        raise UserError(f"{PURPOSE} needs the Python package 'moshi' (0.2.13), which is not installed: run "
                        "`make install` (it installs torch 2.13.0, then `pip install --no-deps moshi==0.2.13`)") from None
    return loaders


# -- device and dtype -------------------------------------------------------------------------------
def resolve_device(requested: str):
    torch = _torch()
    req = (requested or "auto").strip().lower()
    if req == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(req)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise UserError(f"device {requested!r} was requested but no CUDA GPU is available "
                            f"(torch {torch.__version__}, {build}): use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {requested!r} does not exist: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UserError(f"device {requested!r} is not supported: use auto, cpu, cuda or cuda:N")
    return device


def resolve_dtype(requested: str, device):
    torch = _torch()
    req = (requested or "auto").strip().lower()
    if req == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32   # bf16 matmuls are slow on CPU
    dtypes = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
              "float32": torch.float32, "fp32": torch.float32}
    if req not in dtypes:
        raise UserError(f"unknown dtype {requested!r}: use auto, bfloat16, float16 or float32")
    return dtypes[req]


# -- finding a checkpoint ---------------------------------------------------------------------------
def _read_config(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not a readable JSON file ({e})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a JSON object (Moshi's LM config), not {type(raw).__name__}")
    return raw


def checkpoint_from_dir(folder: str | Path, loaders) -> Any:
    """A ``CheckpointInfo`` for a local folder; every file it names must be there (no network is used)."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise UserError(f"Moshi checkpoint folder {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder: --moshi-dir takes the folder holding {CONFIG_NAME}, "
                        "the LM and Mimi weights and the text tokenizer")
    config_path = folder / CONFIG_NAME
    raw = _read_config(config_path) if config_path.is_file() else None
    get = (lambda key, default: raw.get(key, default)) if raw is not None else (lambda key, default: default)
    wanted = {
        "LM weights": get("moshi_name", loaders.MOSHI_NAME),
        "Mimi weights": get("mimi_name", loaders.MIMI_NAME),
        "text tokenizer": get("tokenizer_name", loaders.TEXT_TOKENIZER_NAME),
    }
    optional = {"Mimi config": get("mimi_config_name", None), "LoRA weights": get("lora_name", None)}
    wanted.update({role: name for role, name in optional.items() if name})
    for role, name in wanted.items():
        if not isinstance(name, str) or not name:
            raise UserError(f"{config_path}: the file name of the {role} must be a non-empty string, not {name!r}")
    missing = [f"{name} ({role})" for role, name in wanted.items() if not (folder / name).is_file()]
    if raw is None:
        if len(missing) == 3:
            raise UserError(f"{folder} is not a Moshi checkpoint: it has no {CONFIG_NAME} (nor the files of "
                            "Moshi 7B's legacy layout); expected config.json naming the LM weights, the Mimi "
                            "weights and the text tokenizer, or `fullduplex moshi make-tiny DIR` for a test one")
        missing.insert(0, CONFIG_NAME)
    if missing:
        raise UserError(f"Moshi checkpoint {folder} is incomplete: missing {', '.join(missing)}")
    paths = {role: folder / name for role, name in wanted.items()}
    if raw is None:   # Moshi 7B's legacy layout: no config, the default file names
        note(f"{folder} has no {CONFIG_NAME}: loading it as the original Moshi 7B")
        return loaders.CheckpointInfo(paths["LM weights"], paths["Mimi weights"], paths["text tokenizer"])
    # Every file is given as a Path, so CheckpointInfo never asks the hub for anything.
    return loaders.CheckpointInfo.from_hf_repo(
        str(folder), moshi_weights=paths["LM weights"], mimi_weights=paths["Mimi weights"],
        tokenizer=paths["text tokenizer"], config_path=config_path,
        mimi_config_path=paths.get("Mimi config"), lora_weights=paths.get("LoRA weights"))


def checkpoint_from_hub(repo: str, loaders) -> Any:
    try:
        return loaders.CheckpointInfo.from_hf_repo(repo)
    except Exception as e:  # network, authentication, missing repo: all the same to the user
        raise UserError(f"could not fetch the Moshi checkpoint {repo!r} from the Hugging Face hub "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}); without "
                        "network, copy the repo's files to a folder and pass it with --moshi-dir") from None


# -- the loaded model --------------------------------------------------------------------------------
@dataclass
class MoshiModel:
    mimi: Any                # moshi.models.MimiModel
    lm: Any                  # moshi.models.LMModel
    tokenizer: Any           # sentencepiece.SentencePieceProcessor
    info: Any                # moshi.models.loaders.CheckpointInfo
    device: Any
    dtype: Any
    source: str
    random_weights: bool
    load_s: float
    gen: Any = None          # moshi.models.LMGen, streaming for good; each session resets it (as Moshi's server)
    key: tuple = ()
    in_use: bool = field(default=False, repr=False)

    @property
    def sample_rate(self) -> int:
        return int(self.mimi.sample_rate)

    @property
    def frame_size(self) -> int:
        return int(self.mimi.frame_size)

    @property
    def frame_s(self) -> float:
        return self.frame_size / self.sample_rate

    def describe(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        text = f"Moshi from {self.source} on {self.device} ({dtype})"
        if self.random_weights:
            text += f": {RANDOM_WARNING}"
        return text

    def text_piece(self, token: int) -> str | None:
        """The inner-monologue text of one token, or None for padding and control tokens."""
        if self.tokenizer is None or token in (self.lm.text_padding_token_id, self.lm.end_of_text_padding_id):
            return None
        if token < 0 or token >= self.tokenizer.vocab_size():
            return None
        if self.tokenizer.is_control(token) or self.tokenizer.is_unknown(token):
            return None
        return self.tokenizer.id_to_piece(token).replace("\u2581", " ")


def _source(cfg: MoshiConfig) -> str:
    return str(Path(cfg.checkpoint_dir).expanduser().resolve()) if cfg.checkpoint_dir else f"hf://{cfg.hf_repo}"


def _sampling(cfg: MoshiConfig) -> dict:
    return {"temp": cfg.temp, "temp_text": cfg.temp_text, "top_k": cfg.top_k, "top_k_text": cfg.top_k_text}


def load_moshi(cfg: MoshiConfig, warmup_frames: int = 2) -> MoshiModel:
    """Load (and warm up) Mimi, the LM and the tokenizer described by ``cfg``."""
    torch = _torch()
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    loaders = _moshi_loaders(device.type)
    t0 = time.perf_counter()
    info = checkpoint_from_dir(cfg.checkpoint_dir, loaders) if cfg.checkpoint_dir else checkpoint_from_hub(cfg.hf_repo, loaders)
    source = _source(cfg)
    try:
        tokenizer = info.get_text_tokenizer()
    except (OSError, RuntimeError) as e:
        raise UserError(f"{info.tokenizer} is not a sentencepiece text tokenizer ({e})") from None
    text_card = (info.lm_config or {}).get("text_card", MOSHI_7B_TEXT_CARD)
    if tokenizer.vocab_size() != text_card:
        raise UserError(f"the Moshi checkpoint {source} does not fit together: its LM config has a text vocabulary "
                        f"of {text_card} tokens (text_card) but the tokenizer {Path(info.tokenizer).name} has "
                        f"{tokenizer.vocab_size()}")
    random_weights = bool((info.model_id or {}).get("random_weights"))
    if device.type == "cpu" and not random_weights:
        note("Moshi runs on the CPU here: real time needs a CUDA GPU (the 7B model takes seconds per 80 ms frame on a CPU)")
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        mimi = info.get_mimi(device=device)
        lm = info.get_moshi(device=device, dtype=dtype)
    except Exception as e:  # mismatched shapes, unknown config keys, a truncated file: the files are wrong
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"could not load the Moshi checkpoint {source}: {type(e).__name__}: {first[:300]}") from None
    model = MoshiModel(mimi, lm, tokenizer, info, device, dtype, source, random_weights, load_s=0.0,
                       key=(source, str(device), str(dtype), tuple(_sampling(cfg).items())))
    start_streaming(model, {**(info.lm_gen_config or {}), **_sampling(cfg)})
    warmup(model, warmup_frames)
    model.load_s = time.perf_counter() - t0
    if random_weights:
        note(f"loaded {model.describe()}")
    return model


def start_streaming(model: MoshiModel, sampling: dict) -> None:
    """One ``LMGen`` per loaded model, streaming for good (on CUDA its graphs are captured once)."""
    from moshi.models import LMGen

    model.gen = LMGen(model.lm, **sampling)
    model.mimi.streaming_forever(1)
    model.gen.streaming_forever(1)


def reset_streaming(model: MoshiModel) -> None:
    """A fresh conversation: both streaming states back to their start."""
    model.mimi.reset_streaming()
    model.gen.reset_streaming()


def warmup(model: MoshiModel, frames: int) -> None:
    """A few frames of silence, so the first real frame is not the slowest (CUDA graphs, caches)."""
    torch = _torch()
    with torch.no_grad():
        for _ in range(frames):
            chunk = torch.zeros(1, 1, model.frame_size, dtype=torch.float32, device=model.device)
            codes = model.mimi.encode(chunk)
            tokens = model.gen.step(codes[:, :, :1])
            if tokens is not None:
                model.mimi.decode(tokens[:, 1:])
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    reset_streaming(model)


def random_full_size(device: str = "auto", dtype: str = "auto") -> MoshiModel:
    """Moshi 7B's architecture (Moshi's own default configs) with RANDOM weights and no tokenizer.

    For speed measurements where the real weights are not at hand: the compute is the real model's.
    """
    torch = _torch()
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    loaders = _moshi_loaders(dev.type)
    t0 = time.perf_counter()
    mimi = loaders.get_mimi(None, device=dev)
    lm = loaders.get_moshi_lm(None, device=dev, dtype=dt)
    info = loaders.CheckpointInfo(Path("random"), Path("random"), Path("random"))
    model = MoshiModel(mimi, lm, None, info, dev, dt, "Moshi 7B architecture", True, 0.0)
    start_streaming(model, {})
    warmup(model, 4)
    model.load_s = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return model


# -- one pool of loaded models per process ------------------------------------------------------------
_pool: dict[tuple, list[MoshiModel]] = {}
_failed: dict[tuple, UserError] = {}   # a checkpoint that failed to load fails at once next time (bench: per scenario)
_pool_lock = threading.Lock()


def acquire(cfg: MoshiConfig) -> MoshiModel:
    """A loaded model for one streaming session: a free pooled one, else a new one (loaded now)."""
    device = resolve_device(cfg.device)
    key = (_source(cfg), str(device), str(resolve_dtype(cfg.dtype, device)), tuple(_sampling(cfg).items()))
    with _pool_lock:
        for model in _pool.get(key, []):
            if not model.in_use:
                model.in_use = True
                return model
        if key in _failed:
            raise _failed[key]
    try:
        model = load_moshi(cfg)
    except UserError as e:
        with _pool_lock:
            _failed[key] = e
        raise
    model.in_use = True
    with _pool_lock:
        _pool.setdefault(model.key, []).append(model)
    return model


def release(model: MoshiModel) -> None:
    with _pool_lock:
        model.in_use = False


def clear_pool() -> None:
    with _pool_lock:
        _pool.clear()
        _failed.clear()


# -- the tiny random checkpoint -----------------------------------------------------------------------
TINY_TEXT_VOCAB = 128
# Moshi's architecture at toy sizes: Mimi keeps 24 kHz and 12.5 Hz (1920-sample frames) and the real
# convolution strides, with 4 filters and one 32-wide transformer layer; the LM keeps the text stream, the
# depformer, and the user/agent split of the audio codebooks (4 + 4 instead of 8 + 8).
TINY_MIMI = {
    "sample_rate": 24000, "channels": 1, "frame_rate": 12.5,
    "seanet": {"channels": 1, "dimension": 32, "causal": True, "n_filters": 4, "n_residual_layers": 1,
               "activation": "ELU", "compress": 2, "dilation_base": 2, "disable_norm_outer_blocks": 0,
               "kernel_size": 7, "residual_kernel_size": 3, "last_kernel_size": 3, "norm": "none",
               "pad_mode": "constant", "ratios": [8, 6, 5, 4], "true_skip": True},
    "quantizer": {"dimension": 16, "n_q": 8, "bins": 128, "input_dimension": 32, "output_dimension": 32},
    "transformer": {"d_model": 32, "num_heads": 2, "num_layers": 1, "causal": True, "layer_scale": 0.01,
                    "context": 250, "conv_layout": True, "max_period": 10000, "gating": "none",
                    "norm": "layer_norm", "positional_embedding": "rope", "dim_feedforward": 64,
                    "input_dimension": 32, "output_dimensions": [32]},
}
TINY_LM = {
    "dim": 64, "text_card": TINY_TEXT_VOCAB, "existing_text_padding_id": 3, "n_q": 8, "dep_q": 4, "card": 128,
    "num_heads": 4, "num_layers": 2, "hidden_scale": 4.125, "causal": True, "layer_scale": None, "context": 250,
    "max_period": 10000, "gating": "silu", "norm": "rms_norm_f32", "positional_embedding": "rope",
    "depformer_dim": 32, "depformer_dim_feedforward": 64, "depformer_num_heads": 2, "depformer_num_layers": 1,
    "depformer_layer_scale": None, "depformer_multi_linear": True, "depformer_context": 4,
    "depformer_max_period": 10000, "depformer_gating": "silu", "depformer_pos_emb": "none",
    "depformer_weights_per_step": True, "delays": [0, 0, 1, 1, 1, 0, 1, 1, 1],
}
TINY_FILES = {"moshi_name": "model.safetensors", "mimi_name": "mimi.safetensors",
              "tokenizer_name": "tokenizer.model", "mimi_config_name": "mimi_config.json"}
TOKENIZER_TEXT = """\
A voice agent that listens while it speaks does not wait for the end of a turn.
Both streams always flow: the user's audio comes in and the agent's audio goes out, frame by frame.
Moshi models the user's stream and its own at twelve and a half frames a second, with an inner monologue of text.
It can say mm-hm while you talk, stop when you interrupt, and answer within a fifth of a second.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow.
These weights are random: this checkpoint exists to test the loading and streaming code, not to talk.
"""


def tiny_tokenizer(vocab_size: int = TINY_TEXT_VOCAB) -> bytes:
    """A sentencepiece BPE model trained on a built-in paragraph: the same bytes every time.

    Ids 0 and 3 are ``<unk>`` and ``<pad>``, the two ids Moshi uses as text padding.
    """
    try:
        import sentencepiece as spm
    except ImportError:
        raise MissingPackage("sentencepiece", PURPOSE) from None
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_TEXT.splitlines()), model_writer=out, vocab_size=vocab_size,
        model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=3, num_threads=1, character_coverage=1.0,
        normalization_rule_name="identity", input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2)
    return out.getvalue()


def make_tiny(folder: str | Path, seed: int = 0) -> Path:
    """Write a Moshi checkpoint with a tiny config and random weights into ``folder``."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        config = folder / CONFIG_NAME
        ours = config.is_file() and _read_config(config).get("model_id", {}).get("name") == TINY_NAME
        if not ours:
            raise UserError(f"{folder} is not empty: give make-tiny an empty or new folder")
    torch = _torch()
    loaders = _moshi_loaders("cpu")
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / TINY_FILES["tokenizer_name"]).write_bytes(tiny_tokenizer(TINY_LM["text_card"]))
    (folder / TINY_FILES["mimi_config_name"]).write_text(json.dumps(TINY_MIMI, indent=1))
    torch.manual_seed(seed)
    lm = loaders.get_moshi_lm(None, lm_kwargs=TINY_LM, device="cpu", dtype=torch.float32)
    num_codebooks = max(TINY_LM["dep_q"], TINY_LM["n_q"] - TINY_LM["dep_q"])
    mimi = loaders.get_mimi(None, TINY_MIMI, device="cpu", num_codebooks=num_codebooks)
    save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, str(folder / TINY_FILES["moshi_name"]))
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, str(folder / TINY_FILES["mimi_name"]))
    config = {**TINY_LM, **TINY_FILES, "model_type": "moshi",
              "model_id": {"name": TINY_NAME, "random_weights": True, "seed": seed}}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=1))
    (folder / "README.txt").write_text(
        "A Moshi checkpoint written by `fullduplex moshi make-tiny`: Moshi's architecture with a tiny config\n"
        f"and RANDOM WEIGHTS (seed {seed}). It exercises loading and streaming; it does not talk.\n")
    return folder
