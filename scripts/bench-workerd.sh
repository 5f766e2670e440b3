#!/usr/bin/env bash
# Runs benches/versus.rs: go-go-objects beside workerd on the same machine
# in the same run, with the pinned workerd that scripts/workerd.sh installs
# (once) passed in WORKERD.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

WORKERD="$(./scripts/workerd.sh)" cargo bench --locked --bench versus
