#!/usr/bin/env bash
# GRPO on several GPUs through accelerate. ACCEL picks the strategy:
#   ACCEL=ddp (default) | zero2 | zero3 | fsdp     NPROC=number of GPUs (default: all visible)
#   scripts/train_grpo_multi.sh --dataset_use my_videos --grpo_sample_size 8
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
config=${CONFIG:-$root/configs/qwen2_5_vl_3b_gpu.yaml}
accel=${ACCEL:-ddp}
nproc=${NPROC:-$("$root/.venv/bin/python" -c "import torch; print(max(torch.cuda.device_count(), 1))")}
exec "$root/.venv/bin/accelerate" launch --config_file "$root/configs/accelerate_${accel}.yaml" \
  --num_processes "$nproc" -m trainer.train --config "$config" "$@"
