//! Process-level wiring: logging, configuration, the runtime, signals, the summary line and
//! the exit code.

use crate::cli::Cli;
use crate::config::{self, Config};
use crate::duration::show;
use crate::error::{Error, Signal};
use crate::{job, logging};
use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};

pub fn main(cli: Cli) -> u8 {
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
    let format = match config::log_format(&cli.opts) {
        Ok(f) => f,
        Err(e) => {
            // The logger is not up yet; say it plainly.
            eprintln!("dcr-bootstrap: {e}");
            return e.exit_code();
        }
    };
    if let Err(e) = logging::init(format, &cli.opts.log) {
        eprintln!("dcr-bootstrap: configuration error: {e}");
        return crate::error::EXIT_CONFIG;
    }
    let cfg = match Config::from_opts(&cli.opts) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let result = rt.block_on(run_until_signal(&cfg, term, int));

    // A lock waiter may still block in the blocking pool; do not wait for it.
    rt.shutdown_background();
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

async fn run_until_signal(
    cfg: &Config,
    mut term: UnixSignal,
    mut int: UnixSignal,
) -> Result<job::Outcome, Error> {
    // Dropping the job future at an await point abandons nothing half-written: file writes
    // are synchronous and complete between await points.
    tokio::select! {
        r = job::run(cfg) => r,
        _ = term.recv() => Err(Error::Interrupted(Signal::Term)),
        _ = int.recv() => Err(Error::Interrupted(Signal::Int)),
    }
}

fn fail(e: &Error) -> u8 {
    let code = e.exit_code();
    tracing::error!(exit_code = code, "{e}");
    code
}
