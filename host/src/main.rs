//! The `taskflow` binary: reads the command line, environment and config
//! file, then runs one command.

use std::process::ExitCode;

use taskflow::config::Command;
use taskflow::config::file::{self, LoadError};
use taskflow::{commands, report, telemetry};

fn main() -> ExitCode {
    let loaded = match file::load() {
        Ok(loaded) => loaded,
        Err(LoadError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = &loaded.cli;
    telemetry::init(
        cli.global.log_format,
        matches!(cli.command, Command::Serve(_)),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(&loaded));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
