//! What is wrong with a manifest: each problem with its key, its kind and a sentence.

/// What kind of thing is wrong, for callers that branch on it (an editor marking the
/// key, a test asserting which check fired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// A key weir does not know: a typo, or a setting of another version.
    UnknownKey,
    /// A value of the wrong type: a string where a number belongs, a table where an
    /// array of tables does.
    WrongType,
    /// A required key is absent or empty.
    Missing,
    /// A number outside the bounds weir, AWS or WebAssembly set.
    OutOfRange,
    /// A name that refers to something the manifest does not define, or defines for
    /// someone else (a plugin, a tenant, a destination).
    Undefined,
    /// A value of the right type in the wrong form: not a bucket name, not an https URL,
    /// not 64 hex digits.
    Malformed,
    /// Keys that exclude or contradict each other.
    Conflict,
}

/// One thing wrong with a manifest. `key` is where (`tenants.acme.limits.time_ms`,
/// `routes[0].table`); a name that is not a bare TOML key is quoted and escaped there, so
/// the key is one line of printable ASCII. `message` says what is wrong, without the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    /// The manifest key the problem is at.
    pub key: String,
    /// What kind of problem it is.
    pub kind: ProblemKind,
    /// What is wrong, as a sentence about the key (it may quote manifest text: print it
    /// through [`crate::text::one_line`]).
    pub message: String,
}

impl ManifestProblem {
    /// A problem at `key`.
    pub(super) fn new(
        key: impl Into<String>,
        kind: ProblemKind,
        message: impl Into<String>,
    ) -> Self {
        ManifestProblem {
            key: key.into(),
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// `name` as one segment of a key: bare when TOML allows it bare, else quoted with every
/// quote, backslash and non-printable character escaped, as TOML writes it.
pub(super) fn segment(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return name.to_owned();
    }
    crate::text::ascii_quoted(name)
}

/// `parent.name`, with `name` a [`segment`].
pub(super) fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        segment(name)
    } else {
        format!("{parent}.{}", segment(name))
    }
}

/// A manifest that cannot be used; every problem found is listed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest could not be fetched or read, or the engine could not be made ready
    /// for it: one reason, naming what failed (the file, or the engine).
    #[error("{message}")]
    Unavailable {
        /// Why, with the whole chain of causes.
        message: String,
    },
    /// The manifest is not valid TOML.
    #[error("{file}: {message}")]
    Parse {
        /// Where the manifest was read from.
        file: String,
        /// The TOML error, on one line.
        message: String,
    },
    /// The manifest parses but cannot be used.
    #[error("{file}: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// Where the manifest was read from.
        file: String,
        /// Every problem found, in the order found.
        problems: Vec<ManifestProblem>,
    },
}

impl ManifestError {
    /// Where the manifest was read from, when it was.
    pub fn file(&self) -> Option<&str> {
        match self {
            ManifestError::Unavailable { .. } => None,
            ManifestError::Parse { file, .. } | ManifestError::Invalid { file, .. } => Some(file),
        }
    }
}
