#!/usr/bin/env bash
# Create .venv and install the project (server + SDK + dev tools) into it; fast when nothing changed.
# Uses only the package registries (PyPI, Debian). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.udic-installed
want=$(cat pyproject.toml client/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing the project into .venv (first time: torch ~6 GB, a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev,eval,train]"
  if [ -f client/pyproject.toml ]; then .venv/bin/python -m pip install -q -e ./client; fi
  echo "$want" > "$stamp"
fi
