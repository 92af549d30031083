#!/usr/bin/env bash
# What the browser test (tests/e2e/test_browser.py) needs: node, Debian's chromium at /usr/bin/chromium,
# and playwright-core at the version pinned in tests/browser/package-lock.json. playwright-core never
# downloads a browser: it drives the Debian one. Not part of bootstrap.sh: chromium is a large
# download that only the browser test needs. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || { echo "ensure_browser.sh: no apt-get: install ${missing[*]} yourself" >&2; exit 1; }
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
echo "ensure_browser.sh: $(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version)," \
     "playwright-core $(node -p 'require("./tests/browser/node_modules/playwright-core/package.json").version')" >&2
