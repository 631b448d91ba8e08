"""A small byte-level BPE tokenizer with Qwen2.5-VL's special tokens, chat template and processor files.

Trained offline with `tokenizers` on the synthetic dataset's text, using Qwen2's own normaliser,
pre-tokeniser regex and byte-level decoder, so `AutoProcessor.from_pretrained` rebuilds it exactly
as it rebuilds Qwen/Qwen2.5-VL's tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Qwen2.5-VL's added tokens in their id order (151643..151664 there; after our BPE vocab here).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
PLAIN_ADDED_TOKENS = [
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]  # fmt: skip


def train_tokenizer(
    corpus: list[str], vocab_size: int, extra_plain: list[str] | None = None, split_regex: str | None = None
) -> Any:
    """BPE over bytes (all 256 byte symbols kept, so any text encodes), then the added tokens
    (``extra_plain``: a later family's plain added tokens, after Qwen2.5-VL's). ``split_regex``: the
    family tokenizer's pre-tokeniser split (default Qwen2's), which AutoTokenizer rebuilds on load."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    # Qwen2's own split regex: AutoTokenizer rebuilds the tokenizer with it on load.
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE(fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_regex or PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    plain = PLAIN_ADDED_TOKENS + list(extra_plain or [])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    return tok


def write_tokenizer_files(
    tok: Any,
    real_tokenizer_dir: Path,
    out_dir: Path,
    extra_plain: list[str] | None = None,
    tokenizer_class: str | None = None,
) -> None:
    """tokenizer.json + tokenizer_config.json (+ chat_template.json) in Qwen2.5-VL's layout: the real
    config with the added-token ids moved to ours (``extra_plain`` tokens, which Qwen2.5-VL lacks,
    get the same entry as its plain added tokens)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    config = json.loads((real_tokenizer_dir / "tokenizer_config.json").read_text())
    real_ids = {v["content"]: k for k, v in config["added_tokens_decoder"].items()}
    decoder = {}
    for content in SPECIAL_TOKENS + PLAIN_ADDED_TOKENS:
        entry = dict(config["added_tokens_decoder"][real_ids[content]])
        decoder[str(tok.token_to_id(content))] = entry
    plain_entry = config["added_tokens_decoder"][real_ids[PLAIN_ADDED_TOKENS[0]]]
    for content in extra_plain or []:
        decoder[str(tok.token_to_id(content))] = dict(plain_entry, content=content)
    config["added_tokens_decoder"] = decoder
    config["model_max_length"] = 4096
    if tokenizer_class:  # a family with its own tokenizer class (Qwen3.5's splits text differently)
        config["tokenizer_class"] = tokenizer_class
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def chat_template(real_tokenizer_dir: Path) -> str:
    return json.loads((real_tokenizer_dir / "chat_template.json").read_text())["chat_template"]
