//! Builds the QuickJS guest module for `wasm32-wasip1` and embeds it in the
//! host.
//!
//! The guest is compiled by a nested `cargo build` with its own target
//! directory (`target/guest`), so it never contends for the outer build's
//! lock and is rebuilt only when its sources change. The module is copied to
//! `OUT_DIR/guest.wasm` and its SHA-256 is exported as `GUEST_SHA256`, which
//! keys the compiled-module cache.
//!
//! With `GO_GO_OBJECTS_GUEST_STUB` set, an empty stand-in is written instead,
//! for tools that only need the host to type-check; such a binary refuses to
//! start actors.

use std::{env, fs, path::PathBuf, process::Command};

use sha2::{Digest, Sha256};

fn main() {
    let root =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let wasm_out = out_dir.join("guest.wasm");

    for path in [
        "guest/src",
        "guest/Cargo.toml",
        "abi/src",
        "abi/Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=GO_GO_OBJECTS_GUEST_STUB");

    if env::var_os("GO_GO_OBJECTS_GUEST_STUB").is_some() {
        fs::write(&wasm_out, b"").expect("failed to write the guest stand-in");
        println!("cargo:rustc-env=GUEST_SHA256=stub");
        return;
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = root.join("target").join("guest");
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip1",
            "-p",
            "go-go-objects-guest",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("failed to run cargo for the guest module");
    assert!(
        status.success(),
        "building the guest module failed; run `scripts/setup.sh` to install clang 19, \
         wasi-libc and the wasm32-wasip1 target"
    );

    let built = target_dir.join("wasm32-wasip1/release/go_go_objects_guest.wasm");
    let bytes =
        fs::read(&built).unwrap_or_else(|e| panic!("failed to read `{}`: {e}", built.display()));
    fs::write(&wasm_out, &bytes).expect("failed to copy the guest module into OUT_DIR");
    println!(
        "cargo:rustc-env=GUEST_SHA256={}",
        hex::encode(Sha256::digest(&bytes))
    );
}
