#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints (host and guest), unit and
# integration tests, the compatibility suite against workerd, and the
# documentation build. Installs what the build needs first, and the pinned
# workerd (from the npm registry) that the compatibility suite compares with.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

cargo fmt --all --check
cargo clippy --locked --all-targets -- -D warnings
CARGO_TARGET_DIR=target/guest cargo clippy --locked --release \
  --target wasm32-wasip1 -p go-go-objects-guest -- -D warnings
# The embedding test drives the example application's binary.
cargo build --locked --examples
WORKERD="$(./scripts/workerd.sh)" cargo test --locked
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps -p go-go-objects
