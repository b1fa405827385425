#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs it.
# Used by README.md and by .ci/run. Set AUDITOR_SKIP_APT=1 to skip apt-get, and
# AUDITOR_SKIP_PROMETHEUS=1 to skip the tests needing Prometheus where it cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
# a real Prometheus scrapes `auditor serve`; promtool checks and unit-tests the alert rules
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ] && [ "${AUDITOR_SKIP_APT:-0}" != "1" ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q -e '.[test]'
# Lint and types first: a new finding fails the run (pyproject.toml configures both).
python3 -m ruff check .
python3 -m mypy
exec python3 -m pytest -q "$@"
