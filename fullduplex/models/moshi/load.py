"""Loading Kyutai's Moshi through the ``moshi`` package (never a copy of its code).

A checkpoint comes from a local folder in the layout Moshi's ``CheckpointInfo`` reads (``config.json``
naming the LM weights, the Mimi weights and the sentencepiece text tokenizer) or, where there is
network, a Hugging Face repo. Everything is checked before the big files load, so a wrong folder
fails in one clear line. The loaded model streams for good; ``reset_streaming`` starts a new
conversation on it.

Nothing here imports torch at module import time; ``fullduplex`` stays light without the extra.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import MoshiConfig
from ...errors import MissingPackage, UserError

PURPOSE = "the Moshi agent (--agent moshi)"
CONFIG_NAME = "config.json"
MOSHI_7B_TEXT_CARD = 32000        # Moshi 7B's text vocabulary, for legacy folders without config.json
RANDOM_WARNING = "its weights are RANDOM (a test checkpoint: it produces noise and gibberish text, not speech)"


def note(msg: str) -> None:
    print(f"fullduplex: note: {msg}", file=sys.stderr, flush=True)


def require_torch():
    try:
        import torch
    except ImportError:
        raise MissingPackage("torch", PURPOSE) from None
    return torch


def moshi_loaders(device_type: str):
    """Import ``moshi.models.loaders`` (not ``moshi.server``: it runs its main() on import)."""
    if device_type == "cpu":
        # torch.compile on CPU costs ~5 s at the first step and gains nothing here; Moshi reads this
        # variable when its modules are imported.
        os.environ.setdefault("NO_TORCH_COMPILE", "1")
    require_torch()
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
    torch = require_torch()
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
    torch = require_torch()
    req = (requested or "auto").strip().lower()
    if req == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32   # bf16 matmuls are slow on CPU
    dtypes = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
              "float32": torch.float32, "fp32": torch.float32}
    if req not in dtypes:
        raise UserError(f"unknown dtype {requested!r}: use auto, bfloat16, float16 or float32")
    return dtypes[req]


# -- finding a checkpoint ---------------------------------------------------------------------------
def read_config(path: Path) -> dict:
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
    raw = read_config(config_path) if config_path.is_file() else None
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
    batch_size: int = 1      # elements its streaming state holds (a ``MoshiBatch``'s slots)
    streams: list = field(default_factory=list, repr=False)   # the streaming contexts, to stop them

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


def source_name(cfg: MoshiConfig) -> str:
    return str(Path(cfg.checkpoint_dir).expanduser().resolve()) if cfg.checkpoint_dir else f"hf://{cfg.hf_repo}"


def sampling_params(cfg: MoshiConfig) -> dict:
    return {"temp": cfg.temp, "temp_text": cfg.temp_text, "top_k": cfg.top_k, "top_k_text": cfg.top_k_text}


def load_moshi(cfg: MoshiConfig, warmup_frames: int = 2) -> MoshiModel:
    """Load (and warm up) Mimi, the LM and the tokenizer described by ``cfg``."""
    torch = require_torch()
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    loaders = moshi_loaders(device.type)
    t0 = time.perf_counter()
    info = checkpoint_from_dir(cfg.checkpoint_dir, loaders) if cfg.checkpoint_dir else checkpoint_from_hub(cfg.hf_repo, loaders)
    source = source_name(cfg)
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
                       key=(source, str(device), str(dtype), tuple(sampling_params(cfg).items())))
    start_streaming(model, {**(info.lm_gen_config or {}), **sampling_params(cfg)})
    warmup(model, warmup_frames)
    model.load_s = time.perf_counter() - t0
    if random_weights:
        note(f"loaded {model.describe()}")
    return model


def start_streaming(model: MoshiModel, sampling: dict, batch_size: int = 1, out_of_sync: bool = False) -> Any:
    """A new ``LMGen`` streaming with ``batch_size`` elements, Mimi too (any earlier streaming stopped first);
    it streams for good (on CUDA its graphs are captured once). ``out_of_sync``: each batch element fills
    the model's delays on its own (``MoshiBatch``: conversations join at any frame)."""
    from moshi.models import LMGen

    stop_streaming(model)
    model.gen = LMGen(model.lm, support_out_of_sync=out_of_sync, **sampling)
    model.streams = [model.mimi.streaming(batch_size), model.gen.streaming(batch_size)]
    model.batch_size = batch_size
    return model.gen


def stop_streaming(model: MoshiModel) -> None:
    for stack in reversed(model.streams):
        stack.close()
    model.streams = []


def reset_streaming(model: MoshiModel) -> None:
    """A fresh conversation: both streaming states back to their start."""
    model.mimi.reset_streaming()
    model.gen.reset_streaming()


def warmup(model: MoshiModel, frames: int) -> None:
    """A few frames of silence, so the first real frame is not the slowest (CUDA graphs, caches)."""
    torch = require_torch()
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
    torch = require_torch()
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    loaders = moshi_loaders(dev.type)
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
