#!/usr/bin/env bash
# Runs the official `openai` npm package's tests (e2e/node) against a real
# gateway: installs the pinned npm packages when node_modules is missing or
# stale (npm ci), builds ./cmd/mtai, starts it on a free 127.0.0.1 port with
# a temporary data dir and a bootstrap API key (its built-in mock models
# answer, no config file), waits for /ping, runs `node --test` with MTAI_URL
# and MTAI_KEY set, stops the gateway, and exits with node's status.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
node_dir=$root/e2e/node
say() { echo "test-node.sh: $*" >&2; }

command -v node >/dev/null 2>&1 || { say "node is not installed (Node.js 20+ and npm are needed)"; exit 1; }
command -v npm >/dev/null 2>&1 || { say "npm is not installed"; exit 1; }

# npm ci only when node_modules does not match package-lock.json.
want=$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)
have=$(cat "$node_dir/node_modules/.mtai-lock.sha256" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -d "$node_dir/node_modules/openai" ]; then
  say "installing the npm packages (npm ci)"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$node_dir/node_modules/.mtai-lock.sha256"
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
(cd "$root" && go build -o "$tmp/mtai" ./cmd/mtai)

key="sk-mtai-node-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
log=$tmp/mtai.log
# Port 0: the kernel picks a free port; the gateway says which one it got.
env -u MTAI_CONFIG -u OPENAI_API_KEY -u MTAI_ADDR -u PORT \
  MTAI_ADDR=127.0.0.1:0 MTAI_DATA_DIR="$tmp/data" MTAI_BOOTSTRAP_API_KEY="$key" LOG_LEVEL=info \
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

status=0
(cd "$node_dir" && MTAI_URL="$url" MTAI_KEY="$key" node --test) || status=$?
if [ "$status" != 0 ]; then
  say "node --test failed ($status); the gateway's log:"
  tail -n 50 "$log" >&2
fi
exit "$status"
