#!/usr/bin/env bash
# GRPO on several GPUs through accelerate. ACCEL picks configs/accelerate_$ACCEL.yaml:
#   ACCEL=ddp (default) | zero2 | zero3 | fsdp     NPROC=number of GPUs (default: all visible)
#   scripts/train_grpo_multi.sh --dataset_use my_videos --grpo_sample_size 8
# Without a GPU: ACCEL=zero2_cpu or zero3_cpu (DeepSpeed on CPU processes, gloo) with NPROC=2,
# CONFIG=configs/tiny_cpu.yaml and --dynamic_sampling false (refused under DeepSpeed/FSDP on several
# processes); FSDP needs GPUs (accelerate would start it as DDP; the trainer refuses).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
config=${CONFIG:-$root/configs/qwen2_5_vl_3b_gpu.yaml}
accel=${ACCEL:-ddp}
accel_config="$root/configs/accelerate_${accel}.yaml"
if [[ ! -f "$accel_config" ]]; then
  echo "ACCEL=$accel: no $accel_config (ddp, zero2, zero3, fsdp, zero2_cpu, zero3_cpu)" >&2
  exit 2
fi
if [[ "$accel" == *_cpu ]]; then
  export DS_ACCELERATOR=cpu
fi
nproc=${NPROC:-$("$root/.venv/bin/python" -c "import torch; print(max(torch.cuda.device_count(), 1))")}
exec "$root/.venv/bin/accelerate" launch --config_file "$accel_config" \
  --num_processes "$nproc" -m trainer.train --config "$config" "$@"
