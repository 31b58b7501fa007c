//! Logs go to stderr (stdout stays free for command output), as text or JSON, through a writer
//! that scrubs every known secret value from each formatted line. The scrubber is the last
//! line of defence: code never logs a secret, and tests prove that at `RUST_LOG=trace`.

use crate::secret::scrub;
use std::io::Write;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The log writer. In text format it also escapes control characters inside a line, so that
/// a value from the IdP (a client_id, a kid, an error text) can neither forge a line nor hide
/// one; JSON escapes them itself.
pub struct ScrubbingStderr {
    escape_controls: bool,
}

/// Buffers one formatted event and writes it, scrubbed, when dropped.
pub struct ScrubbedLine {
    buf: Vec<u8>,
    escape_controls: bool,
}

/// Whether a character changes how a line reads without being seen: a control character,
/// a line or paragraph separator (U+2028, U+2029: a new line to many viewers), or a Unicode
/// format character (category Cf: bidi overrides such as U+202E, zero-width characters).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}' | '\u{890}'..='\u{891}'
            | '\u{8e2}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}' | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

/// `line` with every hidden character ([`is_hidden`]) but the final newline written as `\n`,
/// `\u{1b}`, `\u{202e}`, ...
pub fn escape_controls(line: &str) -> String {
    let (body, end) = match line.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (line, ""),
    };
    let mut out = String::with_capacity(line.len());
    for c in body.chars() {
        if c.is_ascii_control() {
            out.extend(c.escape_default());
        } else if is_hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out.push_str(end);
    out
}

impl Write for ScrubbedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut line = scrub(&String::from_utf8_lossy(&self.buf));
        if self.escape_controls {
            line = escape_controls(&line);
        }
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for ScrubbingStderr {
    type Writer = ScrubbedLine;
    fn make_writer(&'a self) -> ScrubbedLine {
        ScrubbedLine {
            buf: Vec::with_capacity(256),
            escape_controls: self.escape_controls,
        }
    }
}

/// Installs the global subscriber. An invalid filter is reported to the caller (exit 2).
/// `json`: one JSON object a line, else text.
pub fn init(json: bool, filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| format!("RUST_LOG (--log): invalid filter {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbingStderr {
            escape_controls: !json,
        })
        .with_ansi(false)
        .with_target(false);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_value_cannot_forge_a_line() {
        let forged = "client a\n2026-01-01T00:00:00Z  INFO registered client evil\u{0}\n";
        let out = super::escape_controls(forged);
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        assert!(out.ends_with('\n') && out.contains("\\n2026") && out.contains("\\u{0}"));
    }

    /// Second review, finding 11: separators and bidi overrides from the IdP.
    #[test]
    fn separators_and_format_characters_are_escaped() {
        let line = "client a\u{2028}INFO forged\u{2029}x \u{202e}txt.exe\u{200b} \u{85}\n";
        let out = super::escape_controls(line);
        for raw in ['\u{2028}', '\u{2029}', '\u{202e}', '\u{200b}', '\u{85}'] {
            assert!(!out.contains(raw), "{raw:?} raw in {out}");
        }
        assert!(
            out.contains("\\u{2028}") && out.contains("\\u{202e}"),
            "{out}"
        );
        assert_eq!(
            super::escape_controls("plain é ü 漢字\n"),
            "plain é ü 漢字\n"
        );
    }
}
