#!/usr/bin/env bash
# Builds go-go-objects if needed and starts the gateway from the current
# directory. Without flags it serves the built-in counter on 127.0.0.1:8787
# with storage in ./var/durable-objects; every flag is passed on (see
# `scripts/serve.sh --help`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
cargo build --locked --quiet --manifest-path "$root/Cargo.toml"
exec "$root/target/debug/go-go-objects" "$@"
