"""Rollouts sampled by a vLLM engine living in the training process (``rollout_backend: vllm``).

Colocated, as TRL's ``vllm_mode="colocate"``: each training process owns one engine, whose engine
core runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so loading new weights is a function
call on the model object and no worker process is spawned. Under ``accelerate launch`` the engines
join the training processes' group (:func:`_external_launcher`) and each is given the whole weights,
gathered where the training engine shards them (:mod:`trainer.model.full_weights`).
:class:`VLLMRollouts` is called like :func:`trainer.rollout.hf.generate_rollouts` and returns the same
:class:`RolloutBatch`, so scoring, advantages, the loss, the run database and the Monitor are the
same for both backends.

What vLLM sees is what the training forward sees: the prompt's token ids as our processor made
them, and the frames our decoder produced, in the input layout of the model's family
(``ModelFamily.vllm_prompts``; Qwen2-style: :mod:`trainer.model.families.qwen_vllm_inputs`).

After every optimiser step :meth:`VLLMRollouts.load_weights` copies the policy's weights into the
engine (LoRA: merged) and drops the prefix cache, whose KV blocks came from the old weights. The
log-probs vLLM reports for its samples ride along as ``RolloutBatch.sampler_logprobs`` for the
mismatch metric and the truncated importance-sampling correction (:mod:`trainer.update.sampler_mismatch`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from trainer.core.errors import ConfigError
from trainer.model.families import ModelFamily, family_for
from trainer.model.full_weights import full_weights, weight_sharding
from trainer.rollout.engine_memory import cpu_kv_cache_bytes, kv_bytes_per_token, kv_counts
from trainer.rollout.hf import PromptBatch, RolloutBatch, completion_texts

logger = logging.getLogger(__name__)

# vLLM 0.32's CPU attention kernels exist for these head sizes only ("Unsupported CPU attention
# configuration: head_dim=16" for the embedded tiny model); asked from vLLM when it says.
CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
# Head sizes of Gated DeltaNet layers (``linear_key_head_dim`` / ``linear_value_head_dim``) that
# vLLM 0.32's CPU kernels were seen to serve; 16 and 32 fail (see _check_cpu_linear_attention).
CPU_LINEAR_HEAD_DIMS = (64, 128)
INSTALL_HINT = (
    "rollout_backend: vllm needs vLLM in this environment: on a CUDA machine `pip install -e '.[vllm]'`; "
    "on a CPU-only machine `bash scripts/venv.sh vllm` builds .venv-vllm with vLLM's CPU build"
)


def require_vllm() -> Any:
    """Import vllm with the in-process engine core, or raise a ConfigError saying how to install it."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(f"{INSTALL_HINT} ({exc})") from exc
    return vllm


def check_servable(model_config: Any, on_cuda: bool, dtype: str | None = None) -> ModelFamily:
    """The model's family; a ConfigError, before any engine starts, for a model vLLM cannot serve here.
    ``dtype``: the engine's ("float32" or "bfloat16"; None: not known yet, not checked)."""
    family = family_for(getattr(model_config, "model_type", None), "rollout_backend: vllm")
    archs = list(getattr(model_config, "architectures", None) or [])
    if family.vllm_architecture not in archs:
        raise ConfigError(
            f"rollout_backend: vllm serves a {family.name} checkpoint as {family.vllm_architecture}, "
            f"but its config.json says architectures {archs}"
        )
    text = getattr(model_config, "text_config", model_config)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    if not on_cuda and head_dim not in (sizes := _cpu_head_dims()):
        raise ConfigError(
            f"rollout_backend: vllm: vLLM's CPU attention has no kernel for head_dim {head_dim} "
            f"(it has {', '.join(map(str, sizes))}); the embedded tiny models have 16 - use their "
            "head_dim-64 variants assets/tiny-qwen2.5-vl-hd64 or assets/tiny-qwen3-vl-hd64, or "
            "rollout_backend: hf"
        )
    if not on_cuda and "linear_attention" in (getattr(text, "layer_types", None) or ()):
        _check_cpu_linear_attention(family, text, dtype)
    return family


def _check_cpu_linear_attention(family: ModelFamily, text: Any, dtype: str | None) -> None:
    """vLLM 0.32's CPU kernels for Gated DeltaNet layers (Qwen3.5's linear attention) take bfloat16
    only and a few head sizes: otherwise the engine starts and its first prefill fails with
    "AssertionError: CPU GDN attention requires BF16." (float32), or "RuntimeError:
    chunk_gated_delta_rule_cpu: expect head_dim to be multiples of 32." (16) / "Unexpected head dim
    size, 32" (32). Tried here: 64 and 128 (the real models') serve."""
    key, value = getattr(text, "linear_key_head_dim", None), getattr(text, "linear_value_head_dim", None)
    if key not in CPU_LINEAR_HEAD_DIMS or value not in CPU_LINEAR_HEAD_DIMS:
        raise ConfigError(
            f"rollout_backend: vllm: vLLM's CPU kernel for {family.name}'s linear-attention layers has "
            f"no key/value head size {key}/{value} (it serves {', '.join(map(str, CPU_LINEAR_HEAD_DIMS))}); "
            "the embedded tiny Qwen3.5 has 16 - use assets/tiny-qwen3.5-hd64, a GPU, or rollout_backend: hf"
        )
    if dtype is not None and dtype != "bfloat16":
        raise ConfigError(
            f"rollout_backend: vllm: vLLM's CPU kernels for {family.name}'s linear-attention layers run "
            f"in bfloat16 only (vLLM: CPU GDN attention requires BF16.), and this run's engine would be "
            f"{dtype}: set bf16: true, use a GPU, or rollout_backend: hf"
        )


def _cpu_head_dims() -> tuple[int, ...]:
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        return tuple(CPUAttentionBackend.get_supported_head_sizes())
    except (ImportError, AttributeError):  # moved in another vLLM version: the 0.32 list
        return CPU_HEAD_DIMS


class _DropRepeatedNotices(logging.Filter):
    """Drops two vLLM warnings that, with the engine in the training process, come every step and
    bury the training log (the studio shows its tail):

    - vLLM's CPU worker replaces ``torch.set_num_threads`` process-wide with a no-op that warns,
      and vLLM's own renderer calls it twice per multimodal prompt (~100 lines a step);
    - an in-place weight reload warns "RotaryEmbedding: Failed to load weights" for the rotary
      layers, whose frequencies are buffers the checkpoint does not hold (vLLM keeps its own).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (
            "`torch.set_num_threads` after the thread binding" in text
            or text.endswith("RotaryEmbedding: Failed to load weights")  # and MRotaryEmbedding
        )


_NOTICE_FILTER = _DropRepeatedNotices()
_NOISY_LOGGERS = ("vllm.v1.worker.cpu_worker", "vllm.model_executor.model_loader.reload.layerwise")


def _cpu_engine_settings(
    memory_fraction: float, text_config: Any, dtype: str, sequences: int
) -> dict[str, Any]:
    """Engine memory on vLLM's CPU build, where training and engine share one process.

    There ``gpu_memory_utilization`` caps the whole process's memory (training included), so the
    KV cache is sized explicitly instead: what ``sequences`` sequences at the model's full context
    need, at most ``memory_fraction`` of host memory (``engine_memory.cpu_kv_cache_bytes``). vLLM
    also drops torch to one thread for serving unless OMP_NUM_THREADS says otherwise; in-process
    that would slow the training side too, so the trainer's thread count is kept."""
    import psutil

    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    layers, kv_heads, head_dim, context = kv_counts(text_config)
    per_token = kv_bytes_per_token(layers, kv_heads, head_dim, 2 if dtype == "bfloat16" else 4)
    host = psutil.virtual_memory().total
    return {"kv_cache_memory_bytes": cpu_kv_cache_bytes(per_token, context, sequences, memory_fraction, host)}


def sampling_params(generation_kwargs: dict[str, Any], group_size: int, seed: int | None) -> Any:
    """vLLM SamplingParams from the same ``generation_kwargs`` the transformers sampler takes."""
    from vllm import SamplingParams

    do_sample = generation_kwargs.get("do_sample", True)
    eos = generation_kwargs["eos_token_id"]
    return SamplingParams(
        n=group_size if do_sample else 1,  # vLLM refuses n > 1 greedy: the caller repeats the one
        temperature=float(generation_kwargs.get("temperature") or 1.0) if do_sample else 0.0,
        top_p=float(generation_kwargs.get("top_p") or 1.0) if do_sample else 1.0,
        top_k=int(generation_kwargs.get("top_k") or 0) if do_sample else 0,
        max_tokens=int(generation_kwargs["max_new_tokens"]),
        stop_token_ids=list(eos) if isinstance(eos, list | tuple) else [eos],
        # As transformers' suppress_tokens: vLLM caps a bias at -100, e^-100 of the mass.
        logit_bias={int(t): -100.0 for t in generation_kwargs.get("suppress_tokens") or []},
        repetition_penalty=float(generation_kwargs.get("repetition_penalty") or 1.0),
        logprobs=0,  # the sampled token's log-prob only
        detokenize=False,
        seed=seed,
    )


class VLLMRollouts:
    """A colocated vLLM engine that samples G completions per prompt; see the module docstring."""

    def __init__(
        self,
        model_path: str,
        processor: Any,
        gpu_memory_utilization: float,
        seed: int,
        dtype: str = "float32",
        max_model_len: int | None = None,
        process: tuple[int, int, int] | None = None,
        sharding: str = "none",
        sequences: int = 1,
    ) -> None:
        """``process``: (rank, local rank, world size) when the run has several training processes,
        each with an engine of its own inside their process group (:func:`_external_launcher`);
        ``sharding``: how the training engine holds the policy's weights, which
        :meth:`load_weights` gathers (:func:`trainer.model.full_weights.weight_sharding`);
        ``sequences``: completions one call samples (prompts x G), which the CPU build's KV cache is
        sized for."""
        vllm = require_vllm()
        from transformers import AutoConfig

        on_cuda = torch.cuda.is_available()
        config = AutoConfig.from_pretrained(model_path)
        family = check_servable(config, on_cuda, dtype)
        self.processor = processor
        self.family = family
        self._seed = seed
        self.sharding = sharding
        self._calls = 0
        memory: dict[str, Any] = {"gpu_memory_utilization": gpu_memory_utilization}
        if not on_cuda:
            text_config = getattr(config, "text_config", config)
            memory = _cpu_engine_settings(gpu_memory_utilization, text_config, dtype, sequences)
        if os.path.isdir(model_path):
            # A local folder: nothing to fetch, and vLLM's hub look-ups would wait on the network.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        family.prepare_vllm()
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).addFilter(_NOTICE_FILTER)  # a no-op when already added
        start = time.perf_counter()
        try:
            self.llm = vllm.LLM(
                **(_external_launcher(*process) if process is not None else {}),
                model=model_path,
                dtype=dtype,
                seed=seed,
                **memory,
                enable_prefix_caching=True,
                enforce_eager=not on_cuda,
                enable_sleep_mode=on_cuda,
                max_model_len=max_model_len,
                limit_mm_per_prompt={"video": 1, "image": 1},
                # Our frames arrive normalised (see the module docstring); vLLM 0.32 would otherwise
                # normalise raw pixels inside the model, a second time.
                mm_device_do_normalize=False,
                # Log-probs after temperature/top-k/top-p: the distribution the token was drawn from,
                # which is what the trainer's logp (logits / temperature) measures.
                logprobs_mode="processed_logprobs",
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"rollout_backend: vllm could not start an engine for {model_path}: {exc}. On GPU lower "
                "vllm_gpu_memory_utilization if the training side needs the memory, or raise it if "
                "the KV cache does not fit one sequence"
            ) from exc
        logger.info("vLLM engine for %s ready in %.1f s", model_path, time.perf_counter() - start)

    # ---- generation -------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        model: Any,
        processor: Any,
        prompt: PromptBatch,
        group_size: int,
        generation_kwargs: dict[str, Any],
    ) -> RolloutBatch:
        """``group_size`` completions per prompt, grouped per prompt (row b*G + g), as
        :func:`trainer.rollout.hf.generate_rollouts`; ``model`` is unused (the engine holds the
        weights :meth:`load_weights` last gave it)."""
        start = time.perf_counter()
        self._calls += 1
        params = sampling_params(generation_kwargs, group_size, seed=self._request_seed())
        outputs = self.llm.generate(
            self.family.vllm_prompts(self.processor, prompt.inputs), params, use_tqdm=False
        )
        copies = 1 if params.n == group_size else group_size
        rows = [c for out in outputs for c in out.outputs for _ in range(copies)]
        if len(rows) != prompt.size * group_size:
            raise RuntimeError(f"vLLM returned {len(rows)} completions for {prompt.size}x{group_size}")
        pad_id = generation_kwargs.get("pad_token_id", 0)
        width = max(1, max(len(c.token_ids) for c in rows))
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        logps = torch.zeros((len(rows), width), dtype=torch.float32)
        for i, c in enumerate(rows):
            n = len(c.token_ids)
            ids[i, :n] = torch.tensor(c.token_ids, dtype=torch.long)
            mask[i, :n] = 1
            logps[i, :n] = torch.tensor(
                [step[tid].logprob for step, tid in zip(c.logprobs, c.token_ids, strict=True)]
            )
        decoded = processor.tokenizer.batch_decode(
            [list(c.token_ids) for c in rows], skip_special_tokens=True
        )
        return RolloutBatch(
            prompt=prompt,
            group_size=group_size,
            completion_ids=ids,
            completion_mask=mask,
            # A prompt whose template opened a think block: the texts start with it, as on the HF path.
            texts=completion_texts(prompt, group_size, decoded),
            seconds=time.perf_counter() - start,
            sampler_logprobs=logps,
        )

    def _request_seed(self) -> int | None:
        """A seed per generate call on CUDA; None on the CPU, where the engine's seeded global
        generator (``LLM(seed=...)``) draws instead.

        vLLM 0.32 rewinds a seeded request's generator (``gen.set_offset(gen.get_offset() - 4)``)
        when a chunked prefill discards its sample, and a CPU torch.Generator has no offset:
        "RuntimeError: CPU Generator does not use offset" as soon as a batch has more prompt
        tokens than one engine step takes (16 questions x G=4 x 88 tokens > 4096)."""
        if not torch.cuda.is_available():
            return None
        return self._seed * 100_003 + self._calls

    # ---- weights ----------------------------------------------------------------------------
    @torch.no_grad()
    def load_weights(self, policy: Any) -> None:
        """Copy the policy's current, full weights into the engine (after every optimiser step).

        Under ZeRO-3 and FSDP2 they are gathered (:mod:`trainer.model.full_weights`), a collective every
        process joins; LoRA adapters are merged for the copy, so vLLM gets a plain
        state dict."""
        start = time.perf_counter()
        with full_weights(policy, self.sharding) as weights:
            # vLLM's in-place reload (checkpoint names in, its fused layouts out); it also drops
            # the encoder and multimodal caches, whose vision features came from the old weights.
            self.llm.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True}
            )
        # KV blocks cached for shared prompt prefixes, and the vision features cached per video
        # (the scheduler's bookkeeping and the runner's storage), came from the old weights.
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()
        logger.debug("loaded the weights into vLLM in %.2f s", time.perf_counter() - start)

    def sleep(self) -> None:
        """Free the engine's GPU memory (weights and KV cache) while the policy trains (CUDA only)."""
        if torch.cuda.is_available():
            self.llm.sleep(level=1)

    def wake_up(self) -> None:
        if torch.cuda.is_available():
            self.llm.wake_up()

    def close(self) -> None:
        """Shut the engine down now rather than whenever the garbage collector gets to it.

        With several training processes, only after their last collective: vLLM's shutdown
        (``EngineCore.shutdown`` -> ``cleanup_dist_env_and_memory``) destroys the default process
        group, accelerate's, along with its own groups. Left to the collector it could also run at
        exit after the CLI destroyed that group, and fail ("Invalid process group specified")."""
        if self.llm is not None:
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None


def _external_launcher(rank: int, local_rank: int, world: int) -> dict[str, Any]:
    """Engine arguments for one engine per training process, as TRL's ``vllm_mode="colocate"``.

    ``external_launcher`` makes vLLM join the process group accelerate already started instead of
    starting workers: vLLM lays the ``world`` processes out as external data parallel x (DP 1, PP 1,
    TP 1), so every process is an engine of its own that samples its own questions. vLLM reads
    RANK and LOCAL_RANK from the environment (``ExecutorWithExternalLauncher._distributed_args``);
    accelerate launch sets them, and they are set from the accelerator here for other launchers. The
    engine start is collective (vLLM creates its groups, and takes the smallest KV-cache size over
    the processes), so every process starts its engine at the same time; generation is not (each
    process may call it a different number of times, as dynamic sampling does). On the CPU build it
    runs on gloo, vLLM's process-group backend there."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world))
    return {"distributed_executor_backend": "external_launcher", "tensor_parallel_size": 1}


BACKENDS = ("hf", "vllm")


def make_sampler(cfg: Any, processor: Any, accelerator: Any) -> Any:
    """The rollout sampler ``cfg.grpo.rollout_backend`` names, called like
    :func:`trainer.rollout.hf.generate_rollouts`; settings vLLM cannot run with fail here, before
    the first step. The vLLM one has ``load_weights(policy)`` for the loop to call after updates."""
    from trainer.core.paths import resolve_repo_path
    from trainer.rollout.hf import generate_rollouts

    g = cfg.grpo
    if g.rollout_backend not in BACKENDS:
        raise ConfigError(f"rollout_backend must be one of {', '.join(BACKENDS)}, got {g.rollout_backend!r}")
    if g.rollout_backend == "hf":
        return generate_rollouts
    if not 0 < g.vllm_gpu_memory_utilization <= 1:
        raise ConfigError(
            f"vllm_gpu_memory_utilization must be in (0, 1], got {g.vllm_gpu_memory_utilization}"
        )
    if g.vllm_importance_sampling_cap < 0:
        raise ConfigError(
            f"vllm_importance_sampling_cap must be >= 0 (0: off), got {g.vllm_importance_sampling_cap}"
        )
    sharding = weight_sharding(accelerator)
    if sharding == "fsdp2" and cfg.model.lora_enable:
        # peft's merge needs whole weights; TRL merges FSDP shards in place, untested here.
        raise ConfigError("rollout_backend: vllm with LoRA under FSDP is not supported: use DDP or DeepSpeed")
    world = accelerator.num_processes
    return VLLMRollouts(
        resolve_repo_path(cfg.model.model_name_or_path),
        processor,
        gpu_memory_utilization=g.vllm_gpu_memory_utilization,
        seed=cfg.run.seed + accelerator.process_index,
        dtype="bfloat16" if cfg.model.bf16 else "float32",
        process=(accelerator.process_index, accelerator.local_process_index, world) if world > 1 else None,
        sharding=sharding,
        sequences=cfg.optim.per_device_train_batch_size * g.grpo_sample_size,
    )


def attach_sampler(accelerator: Any, ctx: Any, cfg: Any) -> Callable[[Any], None] | None:
    """For rollout_backend vllm: set the engine as ``ctx.sampler`` (a StepContext), load the policy's
    current weights into it and return its weight sync for the loop to call after updates; for
    transformers' generate (the step's default sampler) None."""
    sampler = make_sampler(cfg, ctx.processor, accelerator)
    sync_sampler = getattr(sampler, "load_weights", None)
    if sync_sampler is not None:
        ctx.sampler = sampler
        sync_sampler(accelerator.unwrap_model(ctx.model))
    return sync_sampler
