//! The error type of a run, and the exit codes that are part of the interface (README).

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// Invalid or missing configuration (exit 2). The message names the variable.
    Config(String),
    /// The IdP rejected us in a way retrying cannot fix (exit 3).
    Rejected(String),
    /// The overall deadline passed while the IdP was unreachable or not ready (exit 4).
    Deadline(String),
    /// Local I/O: the output, the lock, the keys (exit 5).
    Io(String),
    /// Stopped by a signal (exit 130 for SIGINT, 143 for SIGTERM).
    Interrupted(Signal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
}

pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_REJECTED: u8 = 3;
pub const EXIT_DEADLINE: u8 = 4;
pub const EXIT_IO: u8 = 5;

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => EXIT_CONFIG,
            Error::Rejected(_) => EXIT_REJECTED,
            Error::Deadline(_) => EXIT_DEADLINE,
            Error::Io(_) => EXIT_IO,
            Error::Interrupted(Signal::Int) => 130,
            Error::Interrupted(Signal::Term) => 143,
        }
    }

    pub fn io(context: impl fmt::Display, err: impl fmt::Display) -> Error {
        Error::Io(format!("{context}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "configuration error: {m}"),
            Error::Rejected(m) => write!(f, "rejected by the IdP: {m}"),
            Error::Deadline(m) => write!(f, "deadline passed: {m}"),
            Error::Io(m) => write!(f, "local I/O error: {m}"),
            Error::Interrupted(Signal::Int) => write!(f, "interrupted by SIGINT"),
            Error::Interrupted(Signal::Term) => write!(f, "terminated by SIGTERM"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
