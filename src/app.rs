//! Process-level wiring: logging, configuration, the runtime, signals, the summary line and
//! the exit code.

use crate::cli::{self, Command};
use crate::config::Config;
use crate::duration::show;
use crate::error::{Error, Signal};
use crate::idp::http::Http;
use crate::job::{self, commands};
use crate::{logging, metrics};
use std::time::Instant;
use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};

/// The whole program: parse, run, and the exit code.
pub fn main() -> u8 {
    // The runtime and the signal handlers come first: a SIGTERM that arrives while the
    // configuration is read must still end the run with 143, not the default action.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dcr-bootstrap: cannot start the async runtime: {e}");
            return crate::error::EXIT_IO;
        }
    };
    let signals = {
        let _guard = rt.enter();
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    let (term, int) = match signals {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("dcr-bootstrap: cannot install signal handlers: {e}");
            return crate::error::EXIT_IO;
        }
    };
    let (cli, secret_flags) = match cli::parse() {
        Ok(c) => c,
        Err((text, code)) => {
            // --help and --version go to stdout; refusals to stderr, before any logger.
            if code == 0 {
                print!("{text}");
            } else {
                eprintln!("dcr-bootstrap: {}", text.trim_end());
            }
            return u8::try_from(code).unwrap_or(crate::error::EXIT_CONFIG);
        }
    };
    let log = &cli.opts.logging;
    if let Err(e) = logging::init(log.log_format, &log.log) {
        eprintln!("dcr-bootstrap: configuration error: {e}");
        return crate::error::EXIT_CONFIG;
    }
    for var in secret_flags {
        tracing::warn!(
            "{var} was given as a command-line flag: every local user can read it (ps, /proc/PID/cmdline). \
             Use {var}_FILE (or the {var} environment variable)"
        );
    }
    let command = cli.command.unwrap_or(Command::Run);
    if command == Command::Keygen {
        // Needs no IdP: the key goes into a Secret before anything runs.
        return match commands::keygen(&cli.opts.keys) {
            Ok(report) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
                0
            }
            Err(e) => fail(&e),
        };
    }
    let cfg = match Config::from_opts(&cli.opts, command != Command::MintIat) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let start = Instant::now();
    let code = match command {
        Command::Check => match commands::check(&cfg) {
            Ok(report) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
                0
            }
            Err(e) => fail(&e),
        },
        Command::Deregister => {
            match rt.block_on(until_signal(commands::deregister(&cfg), term, int)) {
                Ok(Some(id)) => {
                    tracing::info!("deregistered client {id} in {}", show(start.elapsed()));
                    0
                }
                Ok(None) => 0,
                Err(e) => fail(&e),
            }
        }
        Command::Keygen => 0,
        Command::MintIat => match rt.block_on(until_signal(commands::mint_iat(&cfg), term, int)) {
            Ok(()) => 0,
            Err(e) => fail(&e),
        },
        Command::Run => {
            let result = rt.block_on(until_signal(job::run(&cfg), term, int));
            if let Some(gateway) = &cfg.output.pushgateway {
                let status = result
                    .as_ref()
                    .map(|o| o.action.metric_status())
                    .unwrap_or("failed");
                let t = &cfg.target;
                if let Ok(http) = Http::new(
                    t.ca_file.as_deref(),
                    cfg.timing.request_timeout,
                    t.allow_cleartext_proxy,
                ) {
                    rt.block_on(metrics::push(&http, gateway, status, start.elapsed()));
                }
            }
            match result {
                Ok(o) => {
                    tracing::info!(
                        action = o.action.as_str(),
                        client_id = %o.client_id,
                        attempts = o.attempts,
                        elapsed_ms = o.elapsed.as_millis() as u64,
                        "{} client {} in {} ({} HTTP attempt(s)); credentials at {}",
                        o.action.as_str(),
                        o.client_id,
                        show(o.elapsed),
                        o.attempts,
                        cfg.output.path.display()
                    );
                    0
                }
                Err(e) => fail(&e),
            }
        }
    };
    // A lock waiter may still block in the blocking pool; do not wait for it.
    rt.shutdown_background();
    code
}

/// Runs `work` until it ends or a signal arrives. Dropping the work at an await point
/// abandons nothing half-written: file writes are synchronous and complete between awaits.
async fn until_signal<T>(
    work: impl Future<Output = Result<T, Error>>,
    mut term: UnixSignal,
    mut int: UnixSignal,
) -> Result<T, Error> {
    tokio::select! {
        r = work => r,
        _ = term.recv() => Err(Error::Interrupted(Signal::Term)),
        _ = int.recv() => Err(Error::Interrupted(Signal::Int)),
    }
}

fn fail(e: &Error) -> u8 {
    let code = e.exit_code();
    tracing::error!(exit_code = code, "{e}");
    code
}
