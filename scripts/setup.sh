#!/usr/bin/env bash
# Installs what building go-go-objects needs on a Debian bookworm machine:
# clang 19, its libclang and wasi-libc (QuickJS is compiled to wasm32-wasip1
# with them), the wasm32-wasip1 Rust target, and strace (a test checks which
# files are synced before a write is acknowledged). Safe to run repeatedly: it
# only installs what is missing.
set -euo pipefail

packages=(clang-19 llvm-19 libclang1-19 wasi-libc strace)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  echo "setup: adding the wasm32-wasip1 Rust target" >&2
  rustup target add wasm32-wasip1
fi
