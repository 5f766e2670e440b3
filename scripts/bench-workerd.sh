#!/usr/bin/env bash
# Runs benches/versus.rs: go-go-objects beside workerd on the same machine
# in the same run. Installs the pinned workerd from the npm registry into
# target/bench-tools (once) and passes its binary in WORKERD.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

WORKERD_VERSION=1.20261123.1
tools=target/bench-tools
workerd="$tools/node_modules/@cloudflare/workerd-linux-64/bin/workerd"
if [ ! -x "$workerd" ]; then
  mkdir -p "$tools"
  (cd "$tools" && npm install --no-audit --no-fund --silent "workerd@$WORKERD_VERSION")
fi
WORKERD="$(pwd)/$workerd" cargo bench --locked --bench versus
