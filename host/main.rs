//! The `go-go-objects` binary: parses the command line and serves.

use std::process::ExitCode;

use clap::Parser;
use go_go_objects::{
    cli::{Cli, Command},
    telemetry,
};

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
