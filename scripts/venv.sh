#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) so it matches pyproject.toml and
# scripts/constraints.txt. Quick when nothing changed: a hash of both files is kept in the venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${VGRPO_VENV:-$root/.venv}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  # 3.11 first: the tested torch wheels are built for it.
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then py=$candidate; break; fi
  done
fi
want=$(cat "$root/pyproject.toml" "$root/scripts/constraints.txt" | sha256sum | cut -d' ' -f1)
stamp="$venv/.vgrpo-stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/vgrpo" ]; then
  exit 0
fi
echo "[venv] installing the project into $venv (first run takes a few minutes)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c "$root/scripts/constraints.txt" -e "$root[dev]"
echo "$want" > "$stamp"
