#!/usr/bin/env bash
# Set up everything convlens needs on a fresh machine of this kind:
#   - .venv with convlens and its dev extra (PyTorch CPU pinned by constraints.txt)
#   - Debian's chromium for the browser tests (report, explorer), when missing
# Used by `make demo` and `make test`; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}

if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Debian's chromium (headless browser for the tests)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

test -x .venv/bin/python || "$PY" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -c constraints.txt -e ".[dev]"
touch .venv/.installed
