//! Records weir could not publish, kept whole with the reason, so an operator can fix the
//! cause and redrive them.

use std::time::Duration;

use tokio::time::Instant;

pub use weir_core::model::{DeadLetter, DeadLetterKind, PluginRef, Reason, WEIR_VERSION};
use weir_core::retry::{self, BatchCall, CallOutcome, ItemOutcome, RetryPolicy};
pub use weir_core::sink::DeadLetterDir;
use weir_core::sink::DeadLetterStore;

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
    /// First backoff; each round doubles it, capped by `max_backoff`, with full jitter.
    pub base_backoff: Duration,
    /// The longest backoff.
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

/// SQS takes at most this many messages per SendMessageBatch.
const MAX_MESSAGES_PER_BATCH: usize = 10;

impl DeadLetterQueue {
    /// The queue at `queue_url`; `client` should have the SDK's retries off
    /// ([`crate::aws::sqs_for_dead_letters`]), since sending retries itself.
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

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends every letter it can before `deadline`; returns, per letter, whether SQS has
    /// it. A letter that was not sent must make its record a retry.
    pub async fn send(&self, letters: &[DeadLetter], deadline: Instant) -> Vec<Result<(), String>> {
        let bodies: Vec<String> = letters.iter().map(DeadLetter::to_json).collect();
        let too_large: Vec<Option<Result<(), String>>> = bodies
            .iter()
            .map(|body| {
                (body.len() > self.config.max_batch_bytes).then(|| {
                    Err(format!(
                        "the dead letter is {} bytes; SQS takes at most {}",
                        body.len(),
                        self.config.max_batch_bytes
                    ))
                })
            })
            .collect();
        let policy = RetryPolicy {
            // One batch at a time, as before the driver was shared: dead letters are few.
            max_concurrency: 1,
            safety_margin: self.config.safety_margin,
            base_backoff: self.config.base_backoff,
            max_backoff: self.config.max_backoff,
        };
        let batch = DeadLetterBatch {
            queue: self,
            letters,
            bodies: &bodies,
        };
        retry::drive(&batch, too_large, policy, deadline)
            .await
            .results
    }
}

/// Dead letters to send: how they pack into SendMessageBatch calls, and one call.
struct DeadLetterBatch<'a> {
    queue: &'a DeadLetterQueue,
    letters: &'a [DeadLetter],
    bodies: &'a [String],
}

impl BatchCall for DeadLetterBatch<'_> {
    type Result = Result<(), String>;
    const NAME: &'static str = "SendMessageBatch";

    fn pack(&self, pending: &[usize]) -> Vec<Vec<usize>> {
        retry::pack(
            pending,
            |i| self.bodies[i].len(),
            MAX_MESSAGES_PER_BATCH,
            self.queue.config.max_batch_bytes,
        )
    }

    fn size(&self, item: usize) -> usize {
        self.bodies[item].len()
    }

    async fn call(&self, batch: &[usize], remaining: Duration) -> CallOutcome<Self::Result> {
        self.queue
            .send_batch(self.letters, self.bodies, batch, remaining)
            .await
    }

    fn unsent(&self, reason: String) -> Self::Result {
        Err(reason)
    }
}

impl DeadLetterQueue {
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
                .message_attributes("kind", string_attr(letter.reason.kind.as_str())?);
            if let Some(t) = &letter.tenant {
                entry = entry.message_attributes("tenant", string_attr(t)?);
            }
            entries.push(entry.build().map_err(|e| e.to_string())?);
        }
        Ok(entries)
    }

    /// One SendMessageBatch: each letter SQS failed is final if the failure was the
    /// sender's, and sent again otherwise.
    async fn send_batch(
        &self,
        letters: &[DeadLetter],
        bodies: &[String],
        batch: &[usize],
        remaining: Duration,
    ) -> CallOutcome<Result<(), String>> {
        let entries = match self.entries(letters, bodies, batch) {
            Ok(entries) => entries,
            Err(message) => return CallOutcome::Refused(Err(message)),
        };
        let send = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send();
        let out = match tokio::time::timeout(remaining, send).await {
            Err(_) => {
                return CallOutcome::Transient(
                    "SQS did not answer before the invocation's time ran out".into(),
                );
            }
            Ok(Err(e)) => {
                let message = format!(
                    "SendMessageBatch to {} failed: {}",
                    self.queue_url,
                    crate::aws::describe_sdk_error(&e)
                );
                return if crate::aws::is_transient(&e) {
                    CallOutcome::Transient(message)
                } else {
                    CallOutcome::Refused(Err(message))
                };
            }
            Ok(Ok(out)) => out,
        };
        let mut items: Vec<ItemOutcome<Result<(), String>>> =
            vec![ItemOutcome::Done(Ok(())); batch.len()];
        for f in out.failed() {
            let Some(slot) = f.id().parse::<usize>().ok().and_then(|n| items.get_mut(n)) else {
                continue;
            };
            let why = format!(
                "SQS refused the dead letter: {}: {}",
                f.code(),
                f.message().unwrap_or_default()
            );
            *slot = if f.sender_fault() {
                ItemOutcome::Done(Err(why))
            } else {
                ItemOutcome::Retry(why)
            };
        }
        CallOutcome::Items(items)
    }
}
/// Where a batch's dead letters go, chosen at run time.
pub enum DeadLetterSink<'a> {
    /// weir's SQS dead-letter queue.
    Queue(&'a DeadLetterQueue),
    /// Written by the caller (e.g. `weir run` writes files); counted as kept.
    Collect(&'a mut Vec<DeadLetter>),
}

impl DeadLetterStore for DeadLetterSink<'_> {
    async fn keep(&mut self, letters: &[DeadLetter], deadline: Instant) -> Vec<Result<(), String>> {
        match self {
            DeadLetterSink::Queue(queue) => queue.send(letters, deadline).await,
            DeadLetterSink::Collect(out) => {
                out.extend_from_slice(letters);
                vec![Ok(()); letters.len()]
            }
        }
    }
}
