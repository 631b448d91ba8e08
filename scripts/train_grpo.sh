#!/usr/bin/env bash
# GRPO on one GPU (or the CPU). Any flag overrides the config, e.g.:
#   scripts/train_grpo.sh --model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct --dataset_use my_videos%50
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
config=${CONFIG:-$root/configs/qwen2_5_vl_3b_gpu.yaml}
exec "$root/.venv/bin/python" -m trainer.train --config "$config" "$@"
