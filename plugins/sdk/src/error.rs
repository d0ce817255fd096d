//! The [`Error`] that rejects a record: it is dead-lettered with the reason.

use std::fmt;

use crate::number::WouldLoseDigits;

/// Why a record is rejected; it is dead-lettered with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    /// An error with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Error(reason.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_owned())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<WouldLoseDigits> for Error {
    fn from(e: WouldLoseDigits) -> Self {
        Error(e.to_string())
    }
}
