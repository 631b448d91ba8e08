#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the run-database tests and print its SQLAlchemy URL.
#
#   eval "$(bash scripts/pg_test_server.sh)"     # exports VGRPO_TEST_PG_URL
#
# Debian's postgresql is installed with apt-get when missing (root only). The server runs as the
# postgres user from its own data directory, on a Unix socket in that directory (no TCP, trust auth),
# so it touches no system cluster. Prints nothing (and exits 0) when PostgreSQL cannot be had: the
# postgres tests then skip, except under CI=true, where they fail.
set -euo pipefail
dir=${VGRPO_PG_DIR:-/tmp/vgrpo-test-pg}
port=${VGRPO_PG_PORT:-54329}
say() { echo "[pg] $*" >&2; }

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bindir" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's postgresql for the run-database tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2 \
      || { say "apt-get install postgresql failed"; exit 0; }
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  else
    say "PostgreSQL not installed and cannot apt-get it: postgres tests will skip"
    exit 0
  fi
fi
as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}
user=$([ "$(id -u)" = 0 ] && echo postgres || id -un)
if [ ! -f "$dir/PG_VERSION" ]; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  as_pg "'$bindir/initdb' -D '$dir' -A trust -U '$user' >'$dir.initdb.log' 2>&1" \
    || { say "initdb failed: $(tail -n3 "$dir.initdb.log")"; exit 1; }
fi
if ! as_pg "'$bindir/pg_ctl' -D '$dir' status" >/dev/null 2>&1; then
  as_pg "'$bindir/pg_ctl' -D '$dir' -w -l '$dir/server.log' \
    -o \"-k '$dir' -p $port -c listen_addresses='' -c fsync=off\" start" >/dev/null \
    || { say "server did not start: $(tail -n5 "$dir/server.log")"; exit 1; }
fi
as_pg "'$bindir/psql' -h '$dir' -p $port -U '$user' -d postgres -tAc \"SELECT 1 FROM pg_database WHERE datname='vgrpo_test'\"" \
  | grep -q 1 || as_pg "'$bindir/createdb' -h '$dir' -p $port -U '$user' vgrpo_test"
echo "export VGRPO_TEST_PG_URL='postgresql+psycopg://$user@/vgrpo_test?host=$dir&port=$port'"
