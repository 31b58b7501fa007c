use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(dcr_bootstrap::app::main(dcr_bootstrap::cli::Cli::parse()))
}
