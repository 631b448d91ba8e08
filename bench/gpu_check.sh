#!/usr/bin/env bash
# GPU check: GRPO steps of Qwen2.5-VL-3B-, Qwen3-VL-4B- and Qwen3.5-4B-shaped models (random bf16
# weights from their published architectures, trainer/model/families/published.py: nothing is downloaded),
# 16-frame videos, G = 8, with the hf and vllm rollout backends and shared_prefix off and on,
# through the trainer's own loop (bench/gpu_step.py, one process per model). One line per arm:
#
#   gpu: model=Qwen3-VL-4B backend=hf shared_prefix=on step_s=2.104 peak_gib=48.1 tokens_per_s=243
#
# or `skipped=<reason>` / `failed=<error>` in place of the numbers. Sized for one call of at most
# 8 minutes on one H100: BUDGET_S (default 420) is the whole run's budget, and no arm starts in its
# last MIN_ARM_S seconds (default 60): later arms print skipped=time_budget. An arm that starts just
# in time still runs to its end, so give the call a limit a minute or two above BUDGET_S.
#
#   bash bench/gpu_check.sh                 # on a CUDA machine (exits 2 at once without one)
#   bash bench/gpu_check.sh --tiny          # dry run on a CPU: the tiny models, 2 steps
#   STEPS=5 BUDGET_S=300 bash bench/gpu_check.sh
#
# Python: $PYTHON, else the project's .venv, else python3. It needs the project's dependencies
# (pyproject.toml; vLLM for the vllm arms, which are skipped without it). A machine that has torch
# but not the rest can take them as wheels: see the device notes on carrying a .whl folder.
set -u -o pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n "${PYTHON:-}" ]]; then py=$PYTHON
elif [[ -x "$root/.venv/bin/python" ]]; then py=$root/.venv/bin/python
else py=python3; fi

tiny=()
steps=${STEPS:-10}
for arg in "$@"; do
  case $arg in
    --tiny) tiny=(--tiny); steps=${STEPS:-2} ;;
    *) echo "gpu_check: unknown argument $arg (only --tiny)" >&2; exit 2 ;;
  esac
done
budget=${BUDGET_S:-420}
out=${OUT_DIR:-$root/bench/out/gpu}

missing=$("$py" - <<'PY'
import importlib.util
need = ("torch", "transformers", "accelerate", "peft", "av", "qwen_vl_utils", "sqlalchemy", "alembic", "yaml")
missing = [n for n in need if importlib.util.find_spec(n) is None]
# qwen-vl-utils reads videos with torchcodec or decord (torchvision >= 0.24 no longer can).
if not any(importlib.util.find_spec(n) for n in ("torchcodec", "decord")):
    missing.append("decord-or-torchcodec")
print(" ".join(missing))
PY
) || { echo "gpu_check: $py does not run" >&2; exit 2; }
if [[ -n "$missing" ]]; then
  echo "gpu_check: $py lacks: $missing (pip install -e . installs them)" >&2
  exit 2
fi
if [[ ${#tiny[@]} -eq 0 ]] && ! "$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device (torch.cuda.is_available() is False); --tiny is the CPU dry run" >&2
  exit 2
fi

deadline=$(( $(date +%s) + budget ))
status=0
for model in qwen2_5_vl_3b qwen3_vl_4b qwen3_5_4b; do
  PYTHONUNBUFFERED=1 "$py" "$root/bench/gpu_step.py" --model "$model" --steps "$steps" \
    --deadline "$deadline" --min-arm-s "${MIN_ARM_S:-60}" --out "$out" "${tiny[@]}"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "gpu: model=$model skipped=its_process_exited_$rc"
    status=1
  fi
done
exit $status
