//! Logs go to stderr (stdout stays free for command output), as text or JSON, through a writer
//! that scrubs every known secret value from each formatted line. The scrubber is the last
//! line of defence: code never logs a secret, and tests prove that at `RUST_LOG=trace`.

use crate::secret::scrub;
use std::io::Write;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub struct ScrubbingStderr;

/// Buffers one formatted event and writes it, scrubbed, when dropped.
pub struct ScrubbedLine(Vec<u8>);

impl Write for ScrubbedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = scrub(&String::from_utf8_lossy(&self.0));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for ScrubbingStderr {
    type Writer = ScrubbedLine;
    fn make_writer(&'a self) -> ScrubbedLine {
        ScrubbedLine(Vec::with_capacity(256))
    }
}

/// Installs the global subscriber. An invalid filter is reported to the caller (exit 2).
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| format!("RUST_LOG (--log): invalid filter {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbingStderr)
        .with_ansi(false)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
