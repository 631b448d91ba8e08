"""Build an embedded tiny model: tokenizer, processor, config, weights.

``--family qwen2_5_vl`` (default) builds assets/tiny-qwen2.5-vl/, ``--family qwen2_vl``
assets/tiny-qwen2-vl/, ``--family qwen3_vl`` assets/tiny-qwen3-vl/, ``--family qwen3_5``
assets/tiny-qwen3.5/. ``--numerical`` builds assets/tiny-qwen2.5-vl-numerical/ instead: the shipped
assets/tiny-qwen2.5-vl (its weights, tokenizer and processor files) warm-started further on the
numerical answer format as well (scripts/tiny_model/numerical.py: random counts and random letters,
think and no_think), for the synthetic numerical split.

Steps: train a small byte-level BPE on the synthetic dataset's text (with
Qwen2.5-VL's special tokens and chat template, which Qwen2-VL shares), build a real
``...ForConditionalGeneration`` of the family with tiny sizes, run a format warm start (random answer
letters: parseable outputs at chance accuracy), save everything so ``AutoProcessor`` and the
family's ``from_pretrained`` load it like the real model. Needs assets/synthetic_motion
(scripts/make_synthetic_dataset.py) and ../shared/realdata's tokenizer files (chat template,
tokenizer_config). Deterministic for a seed and thread count.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from scripts.tiny_model import config as tiny_config  # noqa: E402
from scripts.tiny_model import numerical as tiny_numerical  # noqa: E402
from scripts.tiny_model import qwen2_vl as tiny_qwen2_vl  # noqa: E402
from scripts.tiny_model import qwen3_5 as tiny_qwen3_5  # noqa: E402
from scripts.tiny_model import qwen3_vl as tiny_qwen3_vl  # noqa: E402
from scripts.tiny_model import tokenizer as tiny_tok  # noqa: E402
from scripts.tiny_model import warm_start  # noqa: E402
from trainer.core.paths import (  # noqa: E402
    SYNTHETIC_DIR,
    TINY_MODEL_DIR,
    TINY_NUMERICAL_MODEL_DIR,
    TINY_QWEN2_VL_DIR,
    TINY_QWEN3_5_DIR,
    TINY_QWEN3_VL_DIR,
)
from trainer.data.prompts import NO_THINK, THINK, answer_text, user_text  # noqa: E402
from trainer.model.families import family_for  # noqa: E402

REAL_TOKENIZER_DIR = REPO_ROOT.parent / "shared" / "realdata" / "qwen2_5_vl_tokenizer"
logger = logging.getLogger("build_tiny_model")

# model_type -> (the module with its model_config / processor / generation_config, default folder)
FAMILIES = {
    tiny_config.MODEL_TYPE: (tiny_config, TINY_MODEL_DIR),
    tiny_qwen2_vl.MODEL_TYPE: (tiny_qwen2_vl, TINY_QWEN2_VL_DIR),
    tiny_qwen3_vl.MODEL_TYPE: (tiny_qwen3_vl, TINY_QWEN3_VL_DIR),
    tiny_qwen3_5.MODEL_TYPE: (tiny_qwen3_5, TINY_QWEN3_5_DIR),
}


def corpus(dataset_dir: Path, template: str) -> list[str]:
    """Every text the model will read or write: chat-templated prompts in both modes (video and image),
    gold answers and warm-start answers."""
    from jinja2 import Template

    meta = json.loads((dataset_dir / "dataset.json").read_text())
    options = {chr(ord("A") + i): text for i, text in enumerate(meta["options"])}
    render = Template(template)
    texts: list[str] = []
    for split in meta["splits"]:
        for suffix in ("", "_no_think"):
            for line in (dataset_dir / f"{split}{suffix}.jsonl").read_text().splitlines():
                record = json.loads(line)
                question = record["conversations"][0]["value"].split("\n")[1]
                gold = record["conversations"][1]["value"]
                texts.append(gold)
                colour = warm_start.COLOUR_RE.search(gold)
                for letter in options:
                    think = warm_start.warm_think(colour.group(1)) if colour else None
                    texts.append(answer_text(letter, options, think))
                for mode in (THINK, NO_THINK):
                    for kind in ("video", "image"):
                        content = [
                            {"type": kind, kind: "x"},
                            {"type": "text", "text": user_text(question, options, mode)},
                        ]
                        messages = [
                            {"role": "user", "content": content},
                            {"role": "assistant", "content": gold},
                        ]
                        texts.append(render.render(messages=messages, add_generation_prompt=False))
    return texts


def build(
    out_dir: Path,
    dataset_dir: Path,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float,
    vocab_size: int,
    family: str = tiny_config.MODEL_TYPE,
) -> dict:
    import torch
    from transformers import AutoTokenizer

    family_config = FAMILIES[family][0]  # the family's model_config / processor / generation_config
    torch.manual_seed(seed)
    # A family with its own chat template ships it; Qwen2-VL and Qwen2.5-VL share the real one.
    template = (
        family_config.chat_template()
        if hasattr(family_config, "chat_template")
        else tiny_tok.chat_template(REAL_TOKENIZER_DIR)
    )
    extra_plain = getattr(family_config, "EXTRA_PLAIN_TOKENS", [])
    texts = corpus(dataset_dir, template) + getattr(family_config, "CORPUS_EXTRA", [])
    split_regex, tokenizer_class = getattr(family_config, "TOKENIZER", (None, None))
    tok = tiny_tok.train_tokenizer(texts, vocab_size, extra_plain, split_regex)
    out_dir.mkdir(parents=True, exist_ok=True)
    tiny_tok.write_tokenizer_files(tok, REAL_TOKENIZER_DIR, out_dir, extra_plain, tokenizer_class)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    processor = family_config.processor(tokenizer, template)
    processor.save_pretrained(out_dir)

    config = family_config.model_config(tokenizer)
    model = family_for(family).load_class()(config)
    model.generation_config = family_config.generation_config(tokenizer)
    t0 = time.perf_counter()
    losses = warm_start.train(
        model, processor, dataset_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        pixels_per_token=getattr(family_config, "PIXELS_PER_TOKEN", 28 * 28),
    )  # fmt: skip
    warm_s = time.perf_counter() - t0
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    stats = {
        "family": family,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab": len(tokenizer),
        "warm_start_steps": steps,
        "warm_start_s": round(warm_s, 1),
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "seed": seed,
        "threads": torch.get_num_threads(),
    }
    return stats


def build_numerical(
    out_dir: Path, base_dir: Path, dataset_dir: Path, seed: int, steps: int, batch_size: int, lr: float
) -> dict:
    """``base_dir``'s model warm-started further on numerical and multiple-choice answer formats,
    saved to ``out_dir`` with ``base_dir``'s tokenizer and processor files copied unchanged."""
    import torch
    from transformers import AutoProcessor

    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(base_dir)
    model = family_for(tiny_config.MODEL_TYPE).load_class().from_pretrained(base_dir)
    t0 = time.perf_counter()
    losses = tiny_numerical.train_mixed(
        model, processor, dataset_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed
    )
    warm_s = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in base_dir.iterdir():
        if path.is_file() and path.name != "model.safetensors":
            shutil.copy2(path, out_dir / path.name)
    model.save_pretrained(out_dir)
    return {
        "family": tiny_config.MODEL_TYPE,
        "base": base_dir.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "warm_start_steps": steps,
        "warm_start_s": round(warm_s, 1),
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "seed": seed,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default=tiny_config.MODEL_TYPE)
    parser.add_argument(
        "--numerical",
        action="store_true",
        help="build assets/tiny-qwen2.5-vl-numerical from assets/tiny-qwen2.5-vl (numerical + multiple-"
        "choice format warm start; --steps default 150, --lr default 1e-3)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: the family's folder in assets/")
    parser.add_argument("--dataset", type=Path, default=SYNTHETIC_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps", type=int, default=None, help="format warm-start steps (default: the family's, else 400)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="default 3e-3 (--numerical: 1e-3)")
    parser.add_argument("--vocab-size", type=int, default=1024, help="upper bound for the BPE vocabulary")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("qwen_vl_utils").setLevel(logging.WARNING)  # one line per decoded clip otherwise
    import torch

    torch.set_num_threads(args.threads)
    if args.numerical:
        out = args.out or TINY_NUMERICAL_MODEL_DIR
        stats = build_numerical(
            out, TINY_MODEL_DIR, args.dataset, args.seed, args.steps or 150, args.batch_size, args.lr or 1e-3
        )
    else:
        out = args.out or FAMILIES[args.family][1]
        steps = args.steps or getattr(FAMILIES[args.family][0], "WARM_START_STEPS", 400)
        lr = args.lr or 3e-3
        stats = build(out, args.dataset, args.seed, steps, args.batch_size, lr, args.vocab_size, args.family)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(json.dumps({**stats, "size_mb": round(size / 1e6, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
