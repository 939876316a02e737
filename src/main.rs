//! The `pharos` binary: command-line flags, subcommands and the composition
//! root.
//!
//! This is the only place where concrete types meet: the TSDB head is handed
//! to the scrape manager as an `Appendable` and to the query engine and the
//! API as a `Queryable`; the scrape manager is adapted to the API's
//! `TargetRetriever`. Library crates never name one another's concrete types
//! beyond the layering in ARCHITECTURE.md, which keeps each one testable on
//! its own.

mod alerting;
mod check;
mod cli;
mod lifecycle;
mod logging;
mod query_cmd;
mod rules_cmd;
mod rules_glue;
mod sd_check;
mod server;
mod tsdb_cmd;
mod tsdb_glue;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Check(c)) => check::run(c),
        Some(cli::Command::Query(q)) => query_cmd::run(q),
        Some(cli::Command::Tsdb(c)) => tsdb_cmd::run(c),
        Some(cli::Command::Test(cli::TestCommand::Rules { files })) => {
            rules_cmd::test_rules(&files)
        }
        None => {
            if let Err(e) = logging::init(&cli.flags.log_level, &cli.flags.log_format) {
                eprintln!("pharos: {e:#}");
                return ExitCode::from(2);
            }
            match server::run(cli.flags) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(err = %format!("{e:#}"), "pharos stopped with an error");
                    eprintln!("pharos: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
