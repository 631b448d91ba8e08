#!/usr/bin/env bash
# Start the studio on the embedded tiny model and synthetic dataset. Extra args go to `vgrpo studio`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/venv.sh"
cd "$root"
exec "$root/.venv/bin/vgrpo" studio "$@"
