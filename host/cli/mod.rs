//! The command line: `go-go-objects [FLAGS]` starts the gateway.

mod parse;
mod serve;

use clap::Parser;

pub use parse::{parse_byte_size, parse_duration};
pub use serve::ServeArgs;

/// Serve Durable Objects-style JavaScript classes from sandboxed QuickJS
/// actors.
///
/// Each object (a namespace and a name) is one actor with its own WebAssembly
/// instance, fuel budget and SQLite database. Without --bundle, a built-in
/// Counter is served as the namespace COUNTER.
#[derive(Debug, Parser)]
#[command(name = "go-go-objects", version)]
pub struct Cli {
    /// Gateway settings.
    #[command(flatten)]
    pub serve: ServeArgs,
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
        assert_eq!(cli.serve.cpu_timeout, std::time::Duration::from_secs(2));
        assert!(cli.serve.dev_errors);
        assert!(cli.serve.bundle.is_none());
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
        assert_eq!(cli.serve.cpu_timeout, std::time::Duration::from_millis(250));
        assert!(!cli.serve.dev_errors);
    }
}
