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
    let (rt, signals) = match runtime() {
        Ok(r) => r,
        Err(why) => {
            eprintln!("dcr-bootstrap: {why}");
            return crate::error::EXIT_IO;
        }
    };
    let cli = match parse_and_log() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let command = cli.command.unwrap_or(Command::Run);
    // Commands that need no configuration at all.
    match command {
        Command::Version => {
            print_out(&format!("dcr-bootstrap {}\n", env!("CARGO_PKG_VERSION")));
            return 0;
        }
        Command::Completions { shell } => {
            print_out(&cli::completions(shell));
            return 0;
        }
        Command::Man => {
            return match cli::man_page() {
                Ok(page) => {
                    print_out(&page);
                    0
                }
                Err(why) => fail(&Error::Io(why)),
            };
        }
        _ => {}
    }
    if command == Command::Keygen {
        // Needs no IdP: the key goes into a Secret before anything runs.
        return report(
            crate::config::KeygenSettings::from_args(&cli.opts.keys)
                .and_then(|k| commands::keygen(&k)),
        );
    }
    let cfg = match Config::from_opts(&cli.opts, command != Command::MintIat) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let code = run_command(&rt, signals, &cfg, command);
    // A lock waiter may still block in the blocking pool; do not wait for it.
    rt.shutdown_background();
    code
}

/// SIGTERM and SIGINT, as streams.
struct Signals {
    term: UnixSignal,
    int: UnixSignal,
}

/// The runtime, with the signal handlers installed.
fn runtime() -> Result<(tokio::runtime::Runtime, Signals), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let _guard = rt.enter();
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(term), Ok(int)) => Ok((rt, Signals { term, int })),
        (Err(e), _) | (_, Err(e)) => Err(format!("cannot install signal handlers: {e}")),
    }
}

/// The command line, and the logger it configures. `Err`: the exit code (help, version, a
/// refused value).
fn parse_and_log() -> Result<cli::Cli, u8> {
    let (cli, secret_flags) = match cli::parse() {
        Ok(c) => c,
        Err((text, code)) => {
            // --help and --version go to stdout; refusals through the logger, in the format
            // asked for, with their exit code like every other error.
            if code == 0 {
                print_out(&text);
            } else if logging::init(cli::early_log_format_json(), "error").is_ok() {
                tracing::error!(exit_code = code, "{}", text.trim_end());
            } else {
                eprintln!("dcr-bootstrap: {}", text.trim_end());
            }
            return Err(u8::try_from(code).unwrap_or(crate::error::EXIT_CONFIG));
        }
    };
    let log = &cli.opts.logging;
    if let Err(e) = logging::init(log.log_format == cli::LogFormat::Json, &log.log) {
        eprintln!("dcr-bootstrap: configuration error: {e}");
        return Err(crate::error::EXIT_CONFIG);
    }
    let unknown =
        cli::unknown_variables(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
    for (var, meant) in &unknown {
        match meant {
            Some(m) => tracing::warn!(
                "{var} is not a variable of dcr-bootstrap (did you mean {m}?); it is ignored"
            ),
            None => tracing::warn!(
                "{var} is not a variable of dcr-bootstrap; it is ignored (see --help)"
            ),
        }
    }
    if log.strict_env && !unknown.is_empty() {
        tracing::error!(
            exit_code = crate::error::EXIT_CONFIG,
            "configuration error: DCR_STRICT_ENV=true and {} unknown variable(s): {}",
            unknown.len(),
            unknown
                .iter()
                .map(|(v, _)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Err(crate::error::EXIT_CONFIG);
    }
    for var in secret_flags {
        tracing::warn!(
            "{var} was given as a command-line flag: every local user can read it (ps, /proc/PID/cmdline). \
             Use {var}_FILE (or the {var} environment variable)"
        );
    }
    Ok(cli)
}

fn run_command(
    rt: &tokio::runtime::Runtime,
    signals: Signals,
    cfg: &Config,
    command: Command,
) -> u8 {
    let start = Instant::now();
    match command {
        Command::Check => report(commands::check(cfg)),
        Command::Keygen | Command::Version | Command::Completions { .. } | Command::Man => 0,
        Command::Deregister { dry_run: true } => report(commands::deregister_plan(cfg)),
        Command::Deregister { dry_run: false } => {
            match rt.block_on(until_signal(commands::deregister(cfg), signals)) {
                Ok(Some(id)) => {
                    tracing::info!("deregistered client {id} in {}", show(start.elapsed()));
                    0
                }
                Ok(None) => 0,
                Err(e) => fail(&e),
            }
        }
        Command::MintIat => match rt.block_on(until_signal(commands::mint_iat(cfg), signals)) {
            Ok(()) => 0,
            Err(e) => fail(&e),
        },
        Command::Run => {
            let result = rt.block_on(until_signal(job::run(cfg), signals));
            if let Some(gateway) = &cfg.output.pushgateway {
                rt.block_on(push_metric(cfg, gateway, &result, start));
            }
            match result {
                Ok(o) => {
                    summary(cfg, &o);
                    0
                }
                Err(e) => fail(&e),
            }
        }
    }
}

/// Writes to stdout. A reader that went away (`keygen | head`) is not an error of ours: the
/// work is done, so nothing is said and the exit code stays (println! would panic).
fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints a command's JSON report (`check`, `keygen`), or fails.
fn report(r: Result<serde_json::Value, Error>) -> u8 {
    match r {
        Ok(report) => {
            print_out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            ));
            0
        }
        Err(e) => fail(&e),
    }
}

async fn push_metric(
    cfg: &Config,
    gateway: &reqwest::Url,
    result: &Result<job::Outcome, Error>,
    start: Instant,
) {
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
        metrics::push(&http, gateway, status, start.elapsed()).await;
    }
}

/// The last line of a successful run.
fn summary(cfg: &Config, o: &job::Outcome) {
    tracing::info!(
        action = o.action.as_str(),
        client_id = %o.client_id,
        requests = o.requests,
        retries = o.retries,
        elapsed_ms = o.elapsed.as_millis() as u64,
        "{} client {} in {} ({} request(s), {} retried); credentials at {}",
        o.action.as_str(),
        o.client_id,
        show(o.elapsed),
        o.requests,
        o.retries,
        cfg.output.path.display()
    );
}

/// Runs `work` until it ends or a signal arrives. Dropping the work at an await point
/// abandons nothing half-written: file writes are synchronous and complete between awaits.
async fn until_signal<T>(
    work: impl Future<Output = Result<T, Error>>,
    mut signals: Signals,
) -> Result<T, Error> {
    tokio::select! {
        r = work => r,
        _ = signals.term.recv() => Err(Error::Interrupted(Signal::Term)),
        _ = signals.int.recv() => Err(Error::Interrupted(Signal::Int)),
    }
}

fn fail(e: &Error) -> u8 {
    let code = e.exit_code();
    tracing::error!(exit_code = code, "{e}");
    code
}
