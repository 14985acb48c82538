#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries (initdb, pg_ctl, postgres), used by the tests that
# read bank tables from a real PostgreSQL server (tests/test_sql_postgres.py starts a throwaway
# cluster in a temporary folder; no system cluster is used or needed).
# Idempotent: does nothing when initdb is on PATH or in /usr/lib/postgresql/*/bin. Needs root (CI
# runs as root); without root it prints a note and exits 0 so those tests skip with their reason.
set -euo pipefail
if command -v initdb >/dev/null 2>&1; then
  echo "postgresql already installed: $(command -v initdb)"
  exit 0
fi
for bin in /usr/lib/postgresql/*/bin/initdb; do
  if [ -x "$bin" ]; then
    echo "postgresql already installed: $bin"
    exit 0
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  echo "install_postgresql: not root; skipping (the PostgreSQL tests will be skipped)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Wait for a concurrent apt/dpkg instead of failing on its lock.
APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
apt-get "${APT_OPTS[@]}" update -qq
apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends postgresql >/dev/null
# The package may start a system cluster; the tests do not use it.
if command -v pg_lsclusters >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | while read -r version name _; do
    pg_ctlcluster "$version" "$name" stop 2>/dev/null || true
  done
fi
echo "postgresql installed: $(ls /usr/lib/postgresql/*/bin/initdb)"
