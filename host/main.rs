//! The `go-go-objects` binary: parses the command line and serves.

use std::process::ExitCode;

use clap::Parser;
use go_go_objects::{
    cli::{Cli, Command},
    telemetry,
};

/// mimalloc rather than glibc's allocator: each live actor holds a few
/// dozen small and medium allocations (wasmtime's instance context, 29 KiB,
/// is the largest) among the short-lived ones of its dispatches, and glibc
/// kept about 18 KiB per idle actor more resident than mimalloc does (3,000
/// idle objects, `scripts/bench-memory.sh 3000`: 62 against 44 KiB of
/// anonymous memory each), with the same throughput. SQLite still
/// allocates from glibc (see `os::trim_heap`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Run(run)) => {
            telemetry::init(&run.log_level);
            run.execute().await
        }
        Some(Command::Build(build)) => {
            telemetry::init(&build.log_level);
            match build.execute().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("go-go-objects build: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            telemetry::init(&cli.serve.log_level);
            match cli.serve.execute().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("go-go-objects: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
