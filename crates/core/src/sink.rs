//! Where a batch's results go: an [`EventSink`] for entries and a [`DeadLetterStore`] for
//! dead letters. The AWS crate implements them with EventBridge and SQS; [`DryRun`] and
//! [`DeadLetterDir`] serve the command line; tests use in-memory fakes.

use std::future::Future;
use std::path::{Path, PathBuf};

use tokio::time::Instant;

use crate::model::{DeadLetter, Entry};
use crate::retry;

/// What became of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// EventBridge accepted it.
    Accepted,
    /// EventBridge refused it for good (e.g. `InvalidArgument`): its record is dead-lettered.
    Rejected {
        /// EventBridge's error code for the entry.
        code: String,
        /// EventBridge's error message for the entry.
        message: String,
    },
    /// Still failing transiently when time ran out, or refused for a reason on weir's side
    /// (credentials, a missing bus): its record is retried.
    Unpublished {
        /// Why it was not published: the last failure seen.
        reason: String,
    },
}

/// The result of publishing a set of entries, in their order.
#[derive(Debug, Default)]
pub struct PublishReport {
    /// One result per entry, in the entries' order.
    pub results: Vec<EntryResult>,
    /// PutEvents calls made, including re-sends.
    pub calls: usize,
    /// Calls that re-sent entries after a failure.
    pub retry_calls: usize,
    /// Entries re-sent after a failure.
    pub retried_entries: usize,
    /// Entries and bytes of each call, for the publish benchmark.
    pub call_sizes: Vec<(usize, usize)>,
}

impl From<retry::Sent<EntryResult>> for PublishReport {
    fn from(sent: retry::Sent<EntryResult>) -> Self {
        PublishReport {
            results: sent.results,
            calls: sent.calls,
            retry_calls: sent.retry_calls,
            retried_entries: sent.retried_items,
            call_sizes: sent.call_sizes,
        }
    }
}

/// Where a batch's entries go: EventBridge (the AWS crate's `Publisher`), nowhere ([`DryRun`]), or an
/// in-memory fake in tests.
pub trait EventSink {
    /// Sends `entries`; every one ends with a result by `deadline`.
    fn send(
        &self,
        entries: &[Entry],
        deadline: Instant,
    ) -> impl Future<Output = PublishReport> + Send;
}

/// Publishes nothing and counts every entry as accepted: `weir run` without `--publish`,
/// `weir test`, the benchmark.
pub struct DryRun;

impl EventSink for DryRun {
    async fn send(&self, entries: &[Entry], _deadline: Instant) -> PublishReport {
        PublishReport {
            results: vec![EntryResult::Accepted; entries.len()],
            ..Default::default()
        }
    }
}

/// A sink if there is one, else a dry run (`weir run` with or without `--publish`).
impl<T: EventSink + Sync> EventSink for Option<T> {
    async fn send(&self, entries: &[Entry], deadline: Instant) -> PublishReport {
        match self {
            Some(sink) => sink.send(entries, deadline).await,
            None => DryRun.send(entries, deadline).await,
        }
    }
}

/// Where a batch's dead letters go: SQS, a list the caller writes out, or a fake in tests.
pub trait DeadLetterStore {
    /// Keeps each letter, or says why it could not: its record is then retried, never lost.
    fn keep(
        &mut self,
        letters: &[DeadLetter],
        deadline: Instant,
    ) -> impl Future<Output = Vec<Result<(), KeepError>>> + Send;
}

/// Why a dead letter was not kept: its record is then retried, never lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepError {
    /// The store will never take the letter as it is (too large, or refused for what it
    /// holds) and had nowhere else to keep it.
    #[error("{0}")]
    Refused(String),
    /// The store failed, or did not answer before the deadline: a later try may keep it.
    #[error("{0}")]
    Unsent(String),
}

/// Why [`DeadLetterDir::write`] wrote no file; the path in it is escaped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The directory could not be created.
    #[error("{dir}: cannot create dead-letter directory")]
    CreateDir {
        /// The directory.
        dir: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The letter's file could not be written.
    #[error("{path}: cannot write dead letter")]
    Write {
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Writes dead letters as one JSON file each into a directory, for `weir run`.
pub struct DeadLetterDir {
    dir: PathBuf,
}

impl DeadLetterDir {
    /// Dead letters into `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DeadLetterDir { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes one dead letter; returns the file written.
    pub fn write(&self, letter: &DeadLetter) -> Result<PathBuf, WriteError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| WriteError::CreateDir {
            dir: crate::text::one_line(&self.dir.display().to_string()).into_owned(),
            source,
        })?;
        let path = self.dir.join(letter.file_name());
        // Its name follows from the record, so whoever else can write the directory could
        // plant a link there: the letter replaces the name whole, never writing through one.
        crate::location::replace_file(&path, letter.to_json().as_bytes(), 0o600).map_err(
            |source| WriteError::Write {
                path: crate::text::one_line(&path.display().to_string()).into_owned(),
                source,
            },
        )?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_never_writes_through_a_planted_link() {
        let dir = tempfile_dir();
        let victim = dir.join("victim.txt");
        std::fs::write(&victim, "keep me").expect("write");
        let raw =
            serde_json::value::RawValue::from_string("{\"eventID\":\"x\"}".into()).expect("raw");
        let letter = DeadLetter::new(
            &raw,
            crate::model::Reason {
                kind: crate::model::DeadLetterKind::Decode,
                message: "m".into(),
                blame: crate::model::Blame::Record,
            },
        );
        let letters = dir.join("letters");
        std::fs::create_dir(&letters).expect("dir");
        std::os::unix::fs::symlink(&victim, letters.join(letter.file_name())).expect("link");
        let written = DeadLetterDir::new(&letters)
            .write(&letter)
            .expect("written");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep me");
        let meta = std::fs::symlink_metadata(&written).expect("meta");
        assert!(
            meta.file_type().is_file(),
            "the link was left as the letter"
        );
        assert!(
            std::fs::read_to_string(&written)
                .expect("read")
                .contains("\"eventID\":\"x\"")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh directory of this test's own under the system's temporary directory.
    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "weir-sink-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir(&dir).expect("temp dir");
        dir
    }
}
