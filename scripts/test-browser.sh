#!/usr/bin/env bash
# Loads /docs (Swagger UI) in headless Chromium against a real gateway
# (e2e/browser): installs Debian's chromium with apt-get when
# /usr/bin/chromium is missing (apt-get update first, which refreshes the
# package lists), installs the pinned npm playwright-core when node_modules
# is missing or stale (npm ci; it downloads no browser), builds ./cmd/mtai,
# starts it on a free 127.0.0.1 port with a temporary data dir and a
# bootstrap API key, waits for /ping, runs `node --test` with MTAI_URL and
# MTAI_KEY set, stops the gateway, and exits with node's status. Before the
# tests it seeds the store with admintest's tenants, keys and usage events
# (admin/admintest/seedusage), which the dashboard test (MTAI_ADMIN_PASSWORD:
# the bootstrap admin's) expects.
# Screenshots are left in e2e/browser/test-artifacts/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$root/e2e/browser
say() { echo "test-browser.sh: $*" >&2; }

command -v node >/dev/null 2>&1 || { say "node is not installed (Node.js 20+ and npm are needed)"; exit 1; }
command -v npm >/dev/null 2>&1 || { say "npm is not installed"; exit 1; }

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  if [ "$chromium" != /usr/bin/chromium ]; then
    say "CHROMIUM=$chromium is not an executable"; exit 1
  fi
  command -v apt-get >/dev/null 2>&1 || { say "/usr/bin/chromium is missing and there is no apt-get to install it"; exit 1; }
  sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  say "installing Debian's chromium (apt-get update, then apt-get install chromium)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

. "$root/scripts/e2e-lib.sh"
npm_ci "$dir" playwright-core

key="sk-mtai-browser-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
admin_password="browser-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
gw_start MTAI_BOOTSTRAP_API_KEY="$key" MTAI_BOOTSTRAP_ADMIN_PASSWORD="$admin_password"
(cd "$root" && go build -o "$tmp/seedusage" ./admin/admintest/seedusage)
"$tmp/seedusage" -db "$tmp/data/mtai.db" >&2

status=0
(cd "$dir" && MTAI_URL="$url" MTAI_KEY="$key" MTAI_ADMIN_PASSWORD="$admin_password" CHROMIUM="$chromium" node --test --test-concurrency=1) || status=$?
if [ "$status" != 0 ]; then
  say "node --test failed ($status); the gateway's log:"
  tail -n 50 "$log" >&2
else
  say "screenshots in $dir/test-artifacts/"
fi
exit "$status"
