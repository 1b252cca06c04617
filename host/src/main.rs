//! The `taskflow` binary: parses the command line and runs one command.

use std::process::ExitCode;

use clap::Parser;
use taskflow::config::{Cli, Command};
use taskflow::{commands, startup, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.settings.log_format);
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { listen } => startup::serve(&cli.settings, listen).await,
            Command::User(command) => commands::user(&cli.settings, command).await,
            Command::Auth(command) => commands::auth(&cli.settings, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
