"""Run under ``accelerate launch`` (2 CPU processes, DDP or DeepSpeed): ``vgrpo train --config CONFIG``
with ``rollout_backend: vllm``, then hold this process's own vLLM engine against the trained weights.

The CLI runs in this process (``trainer.cli.main``, as ``python -m trainer.cli`` would) so that the
engine it started can be kept open: after the last step the loop loaded the final weights into every
process's engine, and the final checkpoint holds the same weights as a plain HF model. So this
process's engine samples G completions for questions of its own, and the log-probs it reports must
be the ones the trained model (loaded from the checkpoint, unsharded) gives those tokens, and not
the ones the initial model gives: an engine that missed an update, or got a shard instead of the
whole weights, fails one of the two.

argv: CONFIG OUT_DIR. Writes OUT_DIR/rank{r}.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers.integrations.deepspeed import unset_hf_deepspeed_config

from tests.helpers.distributed_worker import checksum
from tests.helpers.records import video_record
from tests.helpers.sampler_logprobs import max_abs_diff, policy_logprobs
from trainer import cli
from trainer.core.config import build_config, load_yaml
from trainer.core.paths import SYNTHETIC_DIR
from trainer.model.loading import generation_kwargs, load_policy
from trainer.rollout.hf import build_prompt_batch
from trainer.rollout.vllm_engine import VLLMRollouts
from trainer.run import loop


def main() -> None:
    config_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = build_config(load_yaml(config_path))
    kept = []
    attach = loop.attach_sampler

    def keep_engine(accelerator, ctx, run_cfg):
        sync = attach(accelerator, ctx, run_cfg)
        kept.append((accelerator.unwrap_model(ctx.model), ctx.sampler))
        # Kept open past the run: closing it ends the process group (VLLMRollouts.close), which
        # is then closed here, after the checks, instead of by the loop and the CLI.
        ctx.sampler.close = lambda: None
        return sync

    loop.attach_sampler = keep_engine
    cli.end_process_group = lambda: None
    code = cli.main(["train", "--config", str(config_path)])
    if code != 0:
        raise SystemExit(code)
    rank = torch.distributed.get_rank()
    [(policy, engine)] = kept

    # Plain models: while accelerate's DeepSpeed config is registered, transformers would build
    # them ZeRO-3 partitioned (and their forward outside DeepSpeed's engine then fails).
    unset_hf_deepspeed_config()
    trained, processor = load_policy(Path(cfg.run.output_dir) / f"checkpoint-{cfg.optim.max_steps}")
    initial, _ = load_policy(cfg.model.model_name_or_path)
    videos = SYNTHETIC_DIR / "videos"
    records = [
        video_record(f"r{rank}q{i}", videos / f"m_{10 + 2 * rank + i:04d}.mp4", "Which way?", mode="no_think")
        for i in range(2)
    ]
    prompt = build_prompt_batch(processor, records, cfg.video)
    kwargs = generation_kwargs(processor, cfg.grpo.generation_max_length)
    rollout = engine(None, processor, prompt, cfg.grpo.grpo_sample_size, kwargs)
    mask, sampled = rollout.completion_mask, rollout.sampler_logprobs
    report = {
        "rank": rank,
        "engine_sharding": engine.sharding,
        # Meaningful for replicas (DDP, ZeRO-1/2); under ZeRO-3 each process holds its shards.
        "checksum": checksum(policy),
        "tokens": int(mask.sum()),
        "diff_trained": max_abs_diff(policy_logprobs(trained, rollout, kwargs), sampled, mask),
        "diff_initial": max_abs_diff(policy_logprobs(initial, rollout, kwargs), sampled, mask),
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    VLLMRollouts.close(engine)


if __name__ == "__main__":
    main()
