//! The `go-go-objects` binary: parses the command line and serves.

use std::process::ExitCode;

use clap::Parser;
use go_go_objects::{cli::Cli, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.serve.log_level);
    match cli.serve.execute().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("go-go-objects: {e:#}");
            ExitCode::FAILURE
        }
    }
}
