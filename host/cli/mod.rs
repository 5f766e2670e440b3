//! The command line: `go-go-objects [FLAGS]` starts the gateway;
//! `go-go-objects run ...` runs one dispatch offline; `go-go-objects build
//! ...` writes a bundle's pre-initialized image.

mod build_image;
mod common;
mod parse;
mod run;
mod serve;

use clap::{Parser, Subcommand};

pub use build_image::BuildArgs;
pub use common::{BundleArgs, LimitArgs};
pub use parse::{TotalMemory, parse_byte_size, parse_duration};
pub use run::{
    EXIT_CODES_HELP, EXIT_HANDLER_ERROR, EXIT_LIMIT, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, RunArgs,
};
pub use serve::ServeArgs;

/// Serve Durable Objects-style JavaScript classes from sandboxed QuickJS
/// actors.
///
/// Each object (a namespace and a name) is one actor with its own WebAssembly
/// instance, fuel budget and SQLite database. Without --bundle, a built-in
/// Counter is served as the namespace COUNTER. The flags below start the
/// gateway; `go-go-objects run --help` describes the one-shot runner and
/// `go-go-objects build --help` the image builder.
#[derive(Debug, Parser)]
#[command(
    name = "go-go-objects",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A subcommand; without one, the gateway is served.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Gateway settings.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one RPC or fetch dispatch offline and print a JSON report: the
    /// result, the fuel consumed, the wall time and the storage keys
    /// written.
    Run(Box<RunArgs>),
    /// Evaluate a bundle once and write its pre-initialized image, which
    /// `--image` serves without the bundle's source.
    Build(BuildArgs),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_documentation() {
        let cli = Cli::parse_from(["go-go-objects"]);
        assert_eq!(cli.serve.addr, "127.0.0.1:8787");
        assert_eq!(cli.serve.storage.to_str(), Some("./var/durable-objects"));
        assert_eq!(
            cli.serve.limits.cpu_timeout,
            std::time::Duration::from_secs(2)
        );
        assert!(cli.serve.dev_errors);
        assert!(cli.serve.bundle.bundle.is_none());
    }

    #[test]
    fn durations_name_the_flag_when_wrong() {
        let err = Cli::try_parse_from(["go-go-objects", "--cpu-timeout", "2 parsecs"]).unwrap_err();
        assert!(err.to_string().contains("--cpu-timeout"), "{err}");
        let cli = Cli::parse_from([
            "go-go-objects",
            "--cpu-timeout",
            "250ms",
            "--dev-errors=false",
        ]);
        assert_eq!(
            cli.serve.limits.cpu_timeout,
            std::time::Duration::from_millis(250)
        );
        assert!(!cli.serve.dev_errors);
    }
}
