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

# npm ci only when node_modules does not match package-lock.json.
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
have=$(cat "$dir/node_modules/.mtai-lock.sha256" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -d "$dir/node_modules/playwright-core" ]; then
  say "installing the npm packages (npm ci)"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$dir/node_modules/.mtai-lock.sha256"
fi

tmp=$(mktemp -d)
gw_pid=
cleanup() {
  if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
    kill -TERM "$gw_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building the gateway"
(cd "$root" && go build -o "$tmp/mtai" ./cmd/mtai && go build -o "$tmp/seedusage" ./admin/admintest/seedusage)

key="sk-mtai-browser-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
admin_password="browser-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
log=$tmp/mtai.log
# Port 0: the kernel picks a free port; the gateway says which one it got.
env -u MTAI_CONFIG -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u DATABASE_URL -u REDIS_URL -u MTAI_ADDR -u PORT \
  MTAI_ADDR=127.0.0.1:0 MTAI_DATA_DIR="$tmp/data" MTAI_BOOTSTRAP_API_KEY="$key" \
  MTAI_BOOTSTRAP_ADMIN_PASSWORD="$admin_password" LOG_LEVEL=info \
  "$tmp/mtai" serve >"$log" 2>&1 &
gw_pid=$!

addr=
for _ in $(seq 1 300); do
  if ! kill -0 "$gw_pid" 2>/dev/null; then
    say "the gateway exited at start:"; cat "$log" >&2; exit 1
  fi
  addr=$(grep -oE '"addr":"127\.0\.0\.1:[0-9]+"' "$log" | head -1 | grep -oE '127\.0\.0\.1:[0-9]+' || true)
  [ -n "$addr" ] || addr=$(grep -oE 'ready on http://127\.0\.0\.1:[0-9]+' "$log" | head -1 | grep -oE '127\.0\.0\.1:[0-9]+' || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { say "the gateway did not say where it listens within 30s:"; cat "$log" >&2; exit 1; }
url="http://$addr"

ping() {
  node -e 'fetch(process.argv[1]).then(r => r.text()).then(t => process.exit(t === "pong" ? 0 : 1), () => process.exit(1))' "$url/ping"
}
for i in $(seq 1 100); do
  ping && break
  [ "$i" = 100 ] && { say "no pong from $url/ping within 10s:"; cat "$log" >&2; exit 1; }
  sleep 0.1
done
say "gateway up at $url (pid $gw_pid)"
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
