# Shared steps of the end-to-end scripts (test-node.sh, test-browser.sh),
# sourced by them after they define `say` and `root`:
#   npm_ci DIR PKG      npm ci in DIR unless its node_modules matches package-lock.json
#   gw_start VAR=... -- build ./cmd/mtai and start it on a free 127.0.0.1 port
#                       (temporary data dir, the given environment); sets url,
#                       log, tmp and gw_pid; stops it and removes tmp at exit.

npm_ci() {
  local dir=$1 pkg=$2 want have
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  have=$(cat "$dir/node_modules/.mtai-lock.sha256" 2>/dev/null || true)
  if [ "$want" != "$have" ] || [ ! -d "$dir/node_modules/$pkg" ]; then
    say "installing the npm packages (npm ci)"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$dir/node_modules/.mtai-lock.sha256"
  fi
}

tmp=$(mktemp -d)
gw_pid=
gw_cleanup() {
  if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
    kill -TERM "$gw_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap gw_cleanup EXIT
trap 'exit 130' INT TERM

gw_start() {
  say "building the gateway"
  (cd "$root" && go build -o "$tmp/mtai" ./cmd/mtai)
  log=$tmp/mtai.log
  # Port 0: the kernel picks a free port; the gateway says which one it got.
  env -u MTAI_CONFIG -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u DATABASE_URL -u REDIS_URL -u MTAI_ADDR -u PORT \
    MTAI_ADDR=127.0.0.1:0 MTAI_DATA_DIR="$tmp/data" LOG_LEVEL=info "$@" \
    "$tmp/mtai" serve >"$log" 2>&1 &
  gw_pid=$!
  local addr= i
  for _ in $(seq 1 300); do
    if ! kill -0 "$gw_pid" 2>/dev/null; then
      say "the gateway exited at start:"; cat "$log" >&2; exit 1
    fi
    addr=$(grep -oE '"addr":"127\.0\.0\.1:[0-9]+"' "$log" | head -1 | grep -oE '127\.0\.0\.1:[0-9]+' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { say "the gateway did not say where it listens within 30s:"; cat "$log" >&2; exit 1; }
  url="http://$addr"
  for i in $(seq 1 100); do
    node -e 'fetch(process.argv[1]).then(r => r.text()).then(t => process.exit(t === "pong" ? 0 : 1), () => process.exit(1))' "$url/ping" && break
    [ "$i" = 100 ] && { say "no pong from $url/ping within 10s:"; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  say "gateway up at $url (pid $gw_pid)"
}
