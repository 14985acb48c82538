#!/usr/bin/env bash
# Install Debian's headless-capable Chromium, used by the HTML report test (tests/test_report*.py).
# Idempotent: does nothing when `chromium` is already on PATH. Needs root (CI runs as root);
# without root it prints a note and exits 0 so the report test skips with its own reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "chromium already installed: $(command -v chromium)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_chromium: not root; skipping (the report rendering test will be skipped)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Wait for a concurrent apt/dpkg instead of failing on its lock.
APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
apt-get "${APT_OPTS[@]}" update -qq
apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "chromium installed: $(command -v chromium)"
