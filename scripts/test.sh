#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs it.
# Used by README.md and by .ci/run. Set AUDITOR_SKIP_APT=1 to skip apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# a real PostgreSQL server for the PostgreSQL store's tests (tests/pg_server.py starts it)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ] && [ "${AUDITOR_SKIP_APT:-0}" != "1" ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q -e '.[test]'
exec python3 -m pytest -q "$@"
