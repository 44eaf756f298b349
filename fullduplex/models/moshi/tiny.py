"""A Moshi checkpoint of Moshi's architecture with a tiny config and *random weights* (for tests and
CPU demos): ``make_tiny`` writes it in the folder layout ``load_moshi`` reads, so it loads through
exactly the same path as a real one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from ...errors import MissingPackage, UserError
from .load import CONFIG_NAME, PURPOSE, moshi_loaders, read_config, require_torch

TINY_NAME = "fullduplex-tiny-moshi"
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
        ours = config.is_file() and read_config(config).get("model_id", {}).get("name") == TINY_NAME
        if not ours:
            raise UserError(f"{folder} is not empty: give make-tiny an empty or new folder")
    torch = require_torch()
    loaders = moshi_loaders("cpu")
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
