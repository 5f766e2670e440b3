#!/usr/bin/env bash
# Installs the pinned workerd (Cloudflare's runtime, npm package `workerd`)
# into target/bench-tools once, and prints the path of its binary. The
# compatibility suite and the benchmark compare our binary with it.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERD_VERSION=1.20261123.1
tools=target/bench-tools
workerd="$tools/node_modules/@cloudflare/workerd-linux-64/bin/workerd"
installed="$tools/node_modules/workerd/package.json"
if [ ! -x "$workerd" ] || ! grep -q "\"version\": \"$WORKERD_VERSION\"" "$installed" 2>/dev/null; then
  if ! command -v npm >/dev/null; then
    echo "scripts/workerd.sh: npm is needed to install workerd@$WORKERD_VERSION" >&2
    exit 1
  fi
  mkdir -p "$tools"
  (cd "$tools" && npm install --no-audit --no-fund --silent "workerd@$WORKERD_VERSION" >&2)
fi
echo "$(pwd)/$workerd"
