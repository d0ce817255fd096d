//! Records weir could not publish, kept whole with the reason, so an operator can fix the
//! cause and redrive them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Digest as _;

pub use crate::model::{DeadLetter, PluginRef, Reason, WEIR_VERSION};

/// Writes dead letters as one JSON file each into a directory, for `weir run`.
pub struct DeadLetterDir {
    dir: PathBuf,
}

impl DeadLetterDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DeadLetterDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes one dead letter; returns the file written.
    pub fn write(&self, letter: &DeadLetter) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).with_context(|| {
            format!(
                "{}: cannot create dead-letter directory",
                self.dir.display()
            )
        })?;
        let path = self.dir.join(letter.file_name());
        std::fs::write(&path, letter.to_json())
            .with_context(|| format!("{}: cannot write dead letter", path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_kept_byte_for_byte() {
        let raw =
            RawValue::from_string(r#"{ "eventID" : "x",  "n": 1.000 }"#.to_owned()).expect("raw");
        let letter = DeadLetter::new(
            &raw,
            Reason {
                kind: "decode",
                message: "eventName: missing".into(),
                blame: Blame::Record,
            },
        );
        let json = letter.to_json();
        assert!(
            json.contains(r#""record":{ "eventID" : "x",  "n": 1.000 }"#),
            "{json}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["reason"]["kind"], "decode");
        assert_eq!(v["reason"]["blame"], "record");
        assert_eq!(v["weirVersion"], WEIR_VERSION);
        assert_eq!(
            letter.file_name(),
            DeadLetter::new(&raw, letter.reason.clone()).file_name()
        );
    }
}

/// weir's dead-letter queue on SQS.
#[derive(Clone)]
pub struct DeadLetterQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    config: QueueConfig,
}

/// How dead letters are sent.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// SQS's limit for one message and for one batch (1 MiB since August 2025; a queue's
    /// own `MaximumMessageSize` may be lower).
    pub max_batch_bytes: usize,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Time kept back before the deadline.
    pub safety_margin: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_batch_bytes: 1 << 20,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            safety_margin: Duration::from_millis(250),
        }
    }
}

struct BatchError {
    message: String,
    transient: bool,
}

/// SQS takes at most this many messages per SendMessageBatch.
const MAX_MESSAGES_PER_BATCH: usize = 10;

impl DeadLetterQueue {
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        config: QueueConfig,
    ) -> Self {
        DeadLetterQueue {
            client,
            queue_url: queue_url.into(),
            config,
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends every letter it can before `deadline`; returns, per letter, whether SQS has
    /// it. A letter that was not sent must make its record a retry.
    pub async fn send(&self, letters: &[DeadLetter], deadline: Instant) -> Vec<Result<(), String>> {
        let stop_at = crate::publish::stop_before(deadline, self.config.safety_margin);
        let bodies: Vec<String> = letters.iter().map(DeadLetter::to_json).collect();
        let mut results: Vec<Result<(), String>> = vec![Err("not sent".to_owned()); letters.len()];
        let mut pending: Vec<usize> = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            if body.len() > self.config.max_batch_bytes {
                results[i] = Err(format!(
                    "the dead letter is {} bytes; SQS takes at most {}",
                    body.len(),
                    self.config.max_batch_bytes
                ));
            } else {
                pending.push(i);
            }
        }
        let mut round = 0u32;
        let mut singles: Vec<usize> = Vec::new();
        while !pending.is_empty() || !singles.is_empty() {
            let mut again = Vec::new();
            let mut batches = self.pack(&bodies, &pending);
            batches.extend(singles.drain(..).map(|i| vec![i]));
            for batch in batches {
                let remaining = stop_at.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    again.extend(batch);
                    continue;
                }
                match self.send_batch(letters, &bodies, &batch, remaining).await {
                    Ok(failed) => {
                        for &i in &batch {
                            results[i] = Ok(());
                        }
                        for (i, sender_fault, why) in failed {
                            results[i] = Err(why);
                            if !sender_fault {
                                again.push(i);
                            }
                        }
                    }
                    Err(BatchError { message, transient }) => {
                        for &i in &batch {
                            results[i] = Err(message.clone());
                        }
                        if transient {
                            again.extend(&batch);
                        } else if batch.len() > 1 {
                            // One letter may have spoiled the batch: send each alone.
                            singles.extend(&batch);
                        }
                    }
                }
            }
            if again.is_empty() {
                pending.clear();
                continue;
            }
            round += 1;
            let wait = crate::publish::full_jitter(
                self.config.base_backoff,
                self.config.max_backoff,
                round,
            );
            if Instant::now() + wait >= stop_at {
                break;
            }
            tokio::time::sleep(wait).await;
            again.sort_unstable();
            pending = again;
        }
        results
    }

    fn pack(&self, bodies: &[String], pending: &[usize]) -> Vec<Vec<usize>> {
        crate::publish::pack(
            pending,
            |i| bodies[i].len(),
            MAX_MESSAGES_PER_BATCH,
            self.config.max_batch_bytes,
        )
    }

    fn entries(
        &self,
        letters: &[DeadLetter],
        bodies: &[String],
        batch: &[usize],
    ) -> Result<Vec<aws_sdk_sqs::types::SendMessageBatchRequestEntry>, String> {
        use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
        let string_attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| e.to_string())
        };
        let mut entries = Vec::with_capacity(batch.len());
        for (n, &i) in batch.iter().enumerate() {
            let letter = &letters[i];
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(n.to_string())
                .message_body(&bodies[i])
                .message_attributes("kind", string_attr(letter.reason.kind)?);
            if let Some(t) = &letter.tenant {
                entry = entry.message_attributes("tenant", string_attr(t)?);
            }
            entries.push(entry.build().map_err(|e| e.to_string())?);
        }
        Ok(entries)
    }

    /// One SendMessageBatch; `Ok` lists the entries SQS failed, with whether the failure
    /// was the sender's (not worth retrying).
    async fn send_batch(
        &self,
        letters: &[DeadLetter],
        bodies: &[String],
        batch: &[usize],
        remaining: Duration,
    ) -> Result<Vec<(usize, bool, String)>, BatchError> {
        let entries = self
            .entries(letters, bodies, batch)
            .map_err(|message| BatchError {
                message,
                transient: false,
            })?;
        let send = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send();
        let out = match tokio::time::timeout(remaining, send).await {
            Err(_) => {
                return Err(BatchError {
                    message: "SQS did not answer before the invocation's time ran out".into(),
                    transient: true,
                });
            }
            Ok(Err(e)) => {
                return Err(BatchError {
                    message: format!(
                        "SendMessageBatch to {} failed: {}",
                        self.queue_url,
                        crate::aws::describe_sdk_error(&e)
                    ),
                    transient: crate::aws::is_transient(&e),
                });
            }
            Ok(Ok(out)) => out,
        };
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| {
                let n: usize = f.id().parse().ok()?;
                let i = *batch.get(n)?;
                Some((
                    i,
                    f.sender_fault(),
                    format!(
                        "SQS refused the dead letter: {}: {}",
                        f.code(),
                        f.message().unwrap_or_default()
                    ),
                ))
            })
            .collect())
    }
}
