"""The metric names the trainer logs and the studio plots: one place, so they never drift apart.

Slash keys as TRL uses them (``grpo/kl_div``); the six ``grpo/*`` names are the seed names and stay verbatim.
"""

from __future__ import annotations

# The six seed GRPO metrics.
POLICY_SEQ_LOG_PROB = "grpo/policy_seq_log_prob"
KL_DIV = "grpo/kl_div"
FORMAT_REWARD = "grpo/format_reward"
ACCURACY_REWARD = "grpo/accuracy_reward"
TOTAL_REWARD = "grpo/total_reward"
# One per reward of the run's grpo.rewards list: reward/<name>, the mean over completions it applied to.
REWARD_PREFIX = "reward/"


def reward_metric(name: str) -> str:
    """``reward/brevity``: the metric of one reward function."""
    return f"{REWARD_PREFIX}{name}"


# Mean |A| over the step's trained completions: the raw A the rollout cards show (grpo_alpha not applied).
ADVANTAGE = "grpo/advantage"

# Optimisation and sampling health.
LOSS = "train/loss"
LEARNING_RATE = "train/lr"
GRAD_NORM = "train/grad_norm"
CLIP_RATIO = "grpo/clip_ratio"
COMPLETION_LENGTH = "grpo/completion_length"
REWARD_STD = "grpo/reward_std"
# Mean entropy (nats) of the policy's next-token distribution over completion tokens.
ENTROPY = "grpo/entropy"
# Fraction of prompt groups whose rewards are all equal: their advantages are zero, so they teach nothing.
ZERO_STD_FRACTION = "grpo/zero_std_fraction"
# Generation rounds per micro-batch (1 unless dynamic_sampling refills dropped groups).
SAMPLING_ROUNDS = "grpo/sampling_rounds"

# rollout_backend: vllm - mean |logp_vllm - logp_policy| (nats) of the sampled tokens, and the mean
# truncated importance-sampling weight (trainer.update.sampler_mismatch); logged only with vLLM.
SAMPLER_LOGP_DIFF = "rollout/sampler_logp_diff"
IS_WEIGHT = "rollout/is_weight"
# Wall-clock seconds per phase of one step.
TIME_GENERATE_S = "time/generate_s"
TIME_SCORE_S = "time/score_s"
TIME_BACKWARD_S = "time/backward_s"
TIME_STEP_S = "time/step_s"
# Seconds of training at the end of the step, counted from this attempt's first step: the clock
# max_train_seconds and the learning-rate schedule read (a resumed run starts it again).
TIME_TRAIN_S = "time/train_s"
TOKENS_PER_S = "time/tokens_per_s"
PEAK_MEMORY_GB = "time/peak_memory_gb"

# Work per step, counted by hooks on the models (this process's share, averaged over processes):
# images/videos through the vision tower (sampling, reference/old-policy passes and training
# forwards together), prompt tokens prefilled while sampling, and language-model tokens through
# the training forwards (rows x tokens, padding included). The shared-prefix path shows up here:
# prompts are read once per question instead of once per completion.
VISION_ITEMS = "compute/vision_items"
PREFILL_TOKENS = "compute/prefill_tokens"
TRAIN_FORWARD_TOKENS = "compute/train_forward_tokens"

# Held-out evaluation (greedy answers on eval_dataset_use).
EVAL_ACCURACY = "eval/accuracy"
EVAL_FORMAT_RATE = "eval/format_rate"

# Temporal GRPO (Video-R1's T-GRPO), logged only when temporal_grpo is on.
TEMPORAL_ACC_ORDERED = "grpo/temporal_acc_ordered"
TEMPORAL_ACC_SHUFFLED = "grpo/temporal_acc_shuffled"
TEMPORAL_BONUS_RATE = "grpo/temporal_bonus_rate"

SEED_GRPO_METRICS: tuple[str, ...] = (
    POLICY_SEQ_LOG_PROB,
    KL_DIV,
    FORMAT_REWARD,
    ACCURACY_REWARD,
    TOTAL_REWARD,
    ADVANTAGE,
)
TRAINING_METRICS: tuple[str, ...] = (
    LOSS,
    LEARNING_RATE,
    GRAD_NORM,
    CLIP_RATIO,
    COMPLETION_LENGTH,
    REWARD_STD,
    ENTROPY,
    SAMPLING_ROUNDS,
)
TIMING_METRICS: tuple[str, ...] = (
    TIME_GENERATE_S,
    TIME_SCORE_S,
    TIME_BACKWARD_S,
    TIME_STEP_S,
    TIME_TRAIN_S,
    TOKENS_PER_S,
    PEAK_MEMORY_GB,
    VISION_ITEMS,
    PREFILL_TOKENS,
    TRAIN_FORWARD_TOKENS,
)
# The two vLLM-only metrics above, shown (Monitor, Runs compare) once a run has logged them.
SAMPLER_METRICS: tuple[str, ...] = (SAMPLER_LOGP_DIFF, IS_WEIGHT)
EVAL_METRICS: tuple[str, ...] = (EVAL_ACCURACY, EVAL_FORMAT_RATE)
TEMPORAL_METRICS: tuple[str, ...] = (TEMPORAL_ACC_ORDERED, TEMPORAL_ACC_SHUFFLED, TEMPORAL_BONUS_RATE)
ALL_METRICS: tuple[str, ...] = (
    SEED_GRPO_METRICS + TRAINING_METRICS + (ZERO_STD_FRACTION,) + SAMPLER_METRICS + TIMING_METRICS
)
