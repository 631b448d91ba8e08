#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set up .venv, then pytest. Extra args go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/venv.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
