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

. "$root/scripts/e2e-lib.sh"
npm_ci "$node_dir" openai

key="sk-mtai-node-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
gw_start MTAI_BOOTSTRAP_API_KEY="$key"

status=0
(cd "$node_dir" && MTAI_URL="$url" MTAI_KEY="$key" node --test) || status=$?
if [ "$status" != 0 ]; then
  say "node --test failed ($status); the gateway's log:"
  tail -n 50 "$log" >&2
fi
exit "$status"
