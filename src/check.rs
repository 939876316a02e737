//! `pharos check config`, reporting like `promtool check config`: one line
//! per file, `SUCCESS` or `FAILED` with the positioned reason, and a
//! non-zero exit code when any file is bad.

use std::process::ExitCode;

use crate::cli::CheckCommand;

/// Runs a `check` subcommand.
pub fn run(cmd: CheckCommand) -> ExitCode {
    match cmd {
        CheckCommand::ServiceDiscovery {
            config,
            job,
            timeout,
        } => crate::sd_check::run(&config, &job, &timeout),
        CheckCommand::Config { files } => {
            let mut failed = false;
            for f in &files {
                println!("Checking {}", f.display());
                match pharos_config::load_file(f) {
                    Ok(cfg) => {
                        let cfg = crate::alerting::resolved(cfg, f);
                        let rule_files = crate::rules_cmd::expand_rule_files(&cfg.rule_files);
                        println!(" SUCCESS: {} rule files found", rule_files.len());
                        println!(
                            " SUCCESS: {} is valid prometheus config file syntax",
                            f.display()
                        );
                        println!();
                        if crate::rules_cmd::check_rules(&rule_files) != ExitCode::SUCCESS {
                            failed = true;
                        }
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("  FAILED: {e}");
                    }
                }
                println!();
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        CheckCommand::Rules { files } => crate::rules_cmd::check_rules(&files),
    }
}
