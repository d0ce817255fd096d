//! Records weir could not publish, kept whole with the reason, so an operator can fix the
//! cause and redrive them.
//!
//! Every letter weir sends is signed: an HMAC-SHA256 of its exact body, with a key only
//! the function and the operator hold ([`LetterKey`], a Secrets Manager secret), in the
//! message attribute [`MAC_ATTRIBUTE`]. `weir redrive` publishes only letters whose MAC
//! holds, so a message someone else put on the queue is never published as an event.
//!
//! A letter SQS cannot take (larger than the queue's message size, or refused for its
//! content) is written whole to S3 ([`Overflow`]), and the queue gets a small signed
//! pointer naming the object and its sha256: a failure that cannot pass is never retried,
//! so it never blocks the shard.

use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::time::Instant;

use weir_core::model::{DeadLetter, PluginRef, Reason, WEIR_VERSION};
use weir_core::retry::{self, BatchCall, CallOutcome, ItemOutcome, RetryPolicy};
use weir_core::sink::DeadLetterStore;

/// The message attribute holding a letter's MAC (lowercase hex).
pub const MAC_ATTRIBUTE: &str = "weir-mac";

/// What the MAC covers before the body, so a MAC made for something else never fits.
const MAC_CONTEXT: &[u8] = b"weir dead letter v1\n";

/// A key shorter than this is refused: it could be guessed.
pub const MIN_KEY_BYTES: usize = 32;

/// The key dead letters are signed with. Its bytes never appear in `Debug` or logs.
#[derive(Clone)]
pub struct LetterKey(Arc<[u8]>);

impl std::fmt::Debug for LetterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LetterKey(..)")
    }
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Too short to be secret.
    #[error("the dead-letter key {secret} has {bytes} bytes; at least {MIN_KEY_BYTES} are needed")]
    TooShort {
        /// The secret it came from.
        secret: String,
        /// Its length.
        bytes: usize,
    },
    /// Secrets Manager did not give it.
    #[error("cannot read the dead-letter key {secret}: {message}")]
    Unreadable {
        /// The secret's name or ARN.
        secret: String,
        /// What Secrets Manager said.
        message: String,
    },
}

impl LetterKey {
    /// A key from its bytes; `secret` names where they came from, for the error.
    pub fn new(bytes: &[u8], secret: &str) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                secret: format!("{secret:?}"),
                bytes: bytes.len(),
            });
        }
        Ok(LetterKey(bytes.into()))
    }

    /// Reads the key from a Secrets Manager secret (its name or ARN): the secret string's
    /// bytes, as the template's `GenerateSecretString` makes it.
    pub async fn from_secret(
        client: &aws_sdk_secretsmanager::Client,
        secret: &str,
    ) -> Result<Self, KeyError> {
        let out = client
            .get_secret_value()
            .secret_id(secret)
            .send()
            .await
            .map_err(|e| KeyError::Unreadable {
                secret: format!("{secret:?}"),
                message: crate::client::describe_sdk_error(&e),
            })?;
        let bytes = match (out.secret_string(), out.secret_binary()) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(b)) => b.as_ref().to_vec(),
            (None, None) => Vec::new(),
        };
        Self::new(&bytes, secret)
    }

    /// [`LetterKey::from_secret`] with a client from the AWS configuration `sdk`.
    pub async fn read(sdk: &aws_config::SdkConfig, secret: &str) -> Result<Self, KeyError> {
        Self::from_secret(&aws_sdk_secretsmanager::Client::new(sdk), secret).await
    }

    fn mac(&self) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(MAC_CONTEXT);
        mac
    }

    /// The MAC of a message body, as the attribute carries it.
    pub fn sign(&self, body: &str) -> String {
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `mac_hex` is the MAC of `body` (compared in constant time).
    pub fn verify(&self, body: &str, mac_hex: &str) -> bool {
        let Ok(given) = hex::decode(mac_hex) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&given).is_ok()
    }
}

/// Where letters too large for the queue are written whole.
#[derive(Clone)]
pub struct Overflow {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

/// The prefix of every overflowed letter's key in its bucket.
pub const OVERFLOW_PREFIX: &str = "weir-dead-letters/";

impl Overflow {
    /// Letters go to `bucket` (the manifest's `dead_letter_bucket`), under
    /// [`OVERFLOW_PREFIX`].
    pub fn new(s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Overflow {
            s3,
            bucket: bucket.into(),
        }
    }

    /// Writes `body` to a new object and returns the pointer the queue gets instead.
    async fn put(&self, body: &str, remaining: Duration) -> Result<LetterObject, String> {
        let sha256 = hex::encode(sha2::Sha256::digest(body.as_bytes()));
        // Unique per write: two letters of the same record never share (nor delete) an
        // object. One left by a send that failed expires by the bucket's lifecycle rule.
        let key = format!("{OVERFLOW_PREFIX}{sha256}-{:016x}.json", fastrand::u64(..));
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(body.as_bytes().to_vec().into())
            .send();
        match tokio::time::timeout(remaining, put).await {
            Err(_) => Err("S3 did not answer before the invocation's time ran out".into()),
            Ok(Err(e)) => Err(format!(
                "cannot write the dead letter to s3://{}/{key}: {}",
                self.bucket,
                crate::client::describe_sdk_error(&e)
            )),
            Ok(Ok(_)) => Ok(LetterObject {
                bucket: self.bucket.clone(),
                key,
                sha256,
                bytes: body.len(),
            }),
        }
    }
}

/// Where a letter too large for the queue was written, in its pointer message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LetterObject {
    /// The bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// The sha256 of the letter's exact bytes (lowercase hex).
    pub sha256: String,
    /// Its length in bytes.
    pub bytes: usize,
}

/// The queue message standing for a letter kept in S3: what it is about (for people
/// reading the queue) and where the whole letter is.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pointer<'a> {
    weir_version: &'static str,
    reason: &'a Reason,
    tenant: &'a Option<String>,
    plugin: &'a Option<PluginRef>,
    letter_object: &'a LetterObject,
}

/// weir's dead-letter queue on SQS.
#[derive(Clone)]
pub struct DeadLetterQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    config: QueueConfig,
    key: Option<LetterKey>,
    overflow: Option<Overflow>,
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
    /// ([`crate::client::sqs_for_dead_letters`]), since sending retries itself.
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        config: QueueConfig,
    ) -> Self {
        DeadLetterQueue {
            client,
            queue_url: queue_url.into(),
            config,
            key: None,
            overflow: None,
        }
    }

    /// The manifest's dead-letter queue, for a command that publishes: letters signed with
    /// its `dead_letter_key` (so `weir redrive` takes them) and kept in its
    /// `dead_letter_bucket` when too large for the queue, as the function sends them.
    /// Without a key the letters go unsigned, with a warning: redrive takes them only when
    /// told to accept unsigned letters. `None` when the manifest names no queue.
    pub async fn for_manifest(
        sdk: &aws_config::SdkConfig,
        manifest: &weir_core::manifest::Manifest,
    ) -> Result<Option<Self>, KeyError> {
        let Some(url) = &manifest.dead_letter_queue else {
            return Ok(None);
        };
        let mut queue = DeadLetterQueue::new(
            crate::client::sqs_for_dead_letters(sdk),
            url.clone(),
            QueueConfig::default(),
        );
        match &manifest.dead_letter_key {
            Some(secret) => queue = queue.with_key(LetterKey::read(sdk, secret).await?),
            None => tracing::warn!(
                "dead letters are sent unsigned: the manifest names no dead_letter_key, so weir redrive takes them only with --accept-unsigned"
            ),
        }
        if let Some(bucket) = &manifest.dead_letter_bucket {
            queue = queue.with_overflow(Overflow::new(crate::client::s3(sdk), bucket.clone()));
        }
        Ok(Some(queue))
    }

    /// Signs every letter with `key` (without one, letters are unsigned and a redrive
    /// leaves them unless told to accept unsigned letters).
    pub fn with_key(mut self, key: LetterKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Writes letters the queue cannot take to S3, with a pointer in the queue. Without
    /// it, such a letter is not kept, and its record is a retry.
    pub fn with_overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// Whether letters the queue cannot take have somewhere to go.
    pub fn has_overflow(&self) -> bool {
        self.overflow.is_some()
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends every letter it can before `deadline`; returns, per letter, whether SQS has
    /// it (whole, or as a pointer to its copy in S3). A letter that was not kept must make
    /// its record a retry.
    pub async fn send(
        &self,
        letters: &[DeadLetter],
        deadline: Instant,
    ) -> Vec<Result<(), weir_core::sink::KeepError>> {
        let whole: Vec<Outgoing> = letters
            .iter()
            .map(|l| self.outgoing(l.to_json(), l, false))
            .collect();
        let mut results = self.send_messages(&whole, deadline).await;
        // What SQS cannot take, for a reason that will not pass: kept whole in S3 instead.
        let mut pointers = Vec::new();
        let mut pointed = Vec::new();
        for (i, result) in results.iter_mut().enumerate() {
            let Err(Failure::Refused(why)) = result else {
                continue;
            };
            let Some(overflow) = &self.overflow else {
                *result = Err(Failure::Unsent(format!(
                    "{why}; with dead_letter_bucket set, weir keeps such a letter in S3"
                )));
                continue;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match overflow.put(&whole[i].body, remaining).await {
                Ok(object) => {
                    let letter = &letters[i];
                    let pointer = Pointer {
                        weir_version: WEIR_VERSION,
                        reason: &letter.reason,
                        tenant: &letter.tenant,
                        plugin: &letter.plugin,
                        letter_object: &object,
                    };
                    let body = ascii_json(&serde_json::to_string(&pointer).unwrap_or_default());
                    tracing::warn!(
                        bytes = object.bytes,
                        object = %format!("s3://{}/{}", object.bucket, object.key),
                        "{why}: the dead letter is kept in S3, with a pointer in the queue"
                    );
                    pointers.push(self.outgoing(body, letter, true));
                    pointed.push(i);
                }
                Err(e) => *result = Err(Failure::Unsent(format!("{why}; {e}"))),
            }
        }
        if !pointers.is_empty() {
            let sent = self.send_messages(&pointers, deadline).await;
            for (i, r) in pointed.into_iter().zip(sent) {
                results[i] = r;
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.map_err(|f| match f {
                    Failure::Refused(why) => weir_core::sink::KeepError::Refused(why),
                    Failure::Unsent(why) => weir_core::sink::KeepError::Unsent(why),
                })
            })
            .collect()
    }

    /// A message for `letter` with `body`, signed if the queue has a key.
    fn outgoing(&self, body: String, letter: &DeadLetter, in_s3: bool) -> Outgoing {
        Outgoing {
            mac: self.key.as_ref().map(|k| k.sign(&body)),
            body,
            kind: letter.reason.kind.as_str(),
            // A pointer carries no tenant attribute: a tenant SQS refuses must not make
            // the pointer fail as well (the tenant is in its body, escaped).
            tenant: if in_s3 { None } else { letter.tenant.clone() },
            in_s3,
        }
    }

    /// Sends messages before `deadline`: each ends sent, refused by SQS for good (too
    /// large, or content it does not take), or unsent.
    async fn send_messages(&self, messages: &[Outgoing], deadline: Instant) -> Vec<Sent> {
        let limit = self.config.max_batch_bytes;
        let too_large: Vec<Option<Sent>> = messages
            .iter()
            .map(|m| {
                let size = m.size();
                (size > limit).then(|| {
                    Err(Failure::Refused(format!(
                        "the dead letter is {size} bytes; SQS takes at most {limit}"
                    )))
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
            messages,
        };
        retry::drive(&batch, too_large, policy, deadline)
            .await
            .results
    }
}

/// Why a message is not in the queue.
#[derive(Debug, Clone)]
enum Failure {
    /// SQS will never take it as it is (too large, or refused for its content).
    Refused(String),
    /// Not sent in time, or SQS failed: its record must be retried.
    Unsent(String),
}

type Sent = Result<(), Failure>;

/// One message to send: a letter, or a pointer to one in S3.
struct Outgoing {
    body: String,
    kind: &'static str,
    tenant: Option<String>,
    mac: Option<String>,
    in_s3: bool,
}

/// The attribute marking a pointer message: its letter is in S3.
pub const LETTER_IN_S3_ATTRIBUTE: &str = "weir-letter-in-s3";

impl Outgoing {
    /// Its attributes, as (name, value) pairs (all strings).
    fn attributes(&self) -> Vec<(&'static str, &str)> {
        let mut attrs = vec![("kind", self.kind)];
        if let Some(t) = &self.tenant {
            attrs.push(("tenant", t));
        }
        if let Some(mac) = &self.mac {
            attrs.push((MAC_ATTRIBUTE, mac));
        }
        if self.in_s3 {
            attrs.push((LETTER_IN_S3_ATTRIBUTE, "true"));
        }
        attrs
    }

    /// Its size as SQS counts it: the body, and each attribute's name, type and value.
    fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes()
                .iter()
                .map(|(n, v)| n.len() + "String".len() + v.len())
                .sum::<usize>()
    }
}

/// JSON text with every character outside ASCII written as a `\u` escape: the same
/// value, in characters SQS takes whatever the record held.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// Dead letters to send: how they pack into SendMessageBatch calls, and one call.
struct DeadLetterBatch<'a> {
    queue: &'a DeadLetterQueue,
    messages: &'a [Outgoing],
}

impl BatchCall for DeadLetterBatch<'_> {
    type Result = Sent;
    const NAME: &'static str = "SendMessageBatch";

    fn pack(&self, pending: &[usize]) -> Vec<Vec<usize>> {
        retry::pack(
            pending,
            |i| self.messages[i].size(),
            MAX_MESSAGES_PER_BATCH,
            self.queue.config.max_batch_bytes,
        )
    }

    fn size(&self, item: usize) -> usize {
        self.messages[item].size()
    }

    async fn call(&self, batch: &[usize], remaining: Duration) -> CallOutcome<Self::Result> {
        self.queue.send_batch(self.messages, batch, remaining).await
    }

    fn unsent(&self, reason: String) -> Self::Result {
        Err(Failure::Unsent(reason))
    }
}

impl DeadLetterQueue {
    fn entries(
        &self,
        messages: &[Outgoing],
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
            let message = &messages[i];
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(n.to_string())
                .message_body(&message.body);
            for (name, value) in message.attributes() {
                entry = entry.message_attributes(name, string_attr(value)?);
            }
            entries.push(entry.build().map_err(|e| e.to_string())?);
        }
        Ok(entries)
    }

    /// One SendMessageBatch: each message SQS failed is final if the failure was the
    /// sender's, and sent again otherwise.
    async fn send_batch(
        &self,
        messages: &[Outgoing],
        batch: &[usize],
        remaining: Duration,
    ) -> CallOutcome<Sent> {
        let entries = match self.entries(messages, batch) {
            Ok(entries) => entries,
            Err(message) => return CallOutcome::Refused(Err(Failure::Refused(message))),
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
                    crate::client::describe_sdk_error(&e)
                );
                return if crate::client::is_transient(&e) {
                    CallOutcome::Transient(message)
                } else if is_about_the_message(&e) {
                    // Alone, this is the message's own fault; in a batch, it is split.
                    CallOutcome::Refused(Err(Failure::Refused(message)))
                } else {
                    // The queue or weir's access: no other place would help.
                    CallOutcome::Refused(Err(Failure::Unsent(message)))
                };
            }
            Ok(Ok(out)) => out,
        };
        let mut items: Vec<ItemOutcome<Sent>> = vec![ItemOutcome::Done(Ok(())); batch.len()];
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
                ItemOutcome::Done(Err(Failure::Refused(why)))
            } else {
                ItemOutcome::Retry(why)
            };
        }
        CallOutcome::Items(items)
    }
}

/// Whether SQS refused a whole call for what a message holds (its size or content) rather
/// than for the queue or the caller's access.
fn is_about_the_message<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> bool {
    let code = match e {
        aws_smithy_runtime_api::client::result::SdkError::ServiceError(se) => {
            se.err().code().unwrap_or_default().to_owned()
        }
        _ => return false,
    };
    [
        "BatchRequestTooLong",
        "InvalidParameterValue",
        "InvalidMessageContents",
        "InvalidBatchEntryId",
        "AWS.SimpleQueueService.BatchRequestTooLong",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        "InvalidParameterValueException",
        "MessageTooLong",
    ]
    .iter()
    .any(|c| code == *c)
}

/// Where a batch's dead letters go, chosen at run time.
pub enum DeadLetterSink<'a> {
    /// weir's SQS dead-letter queue.
    Queue(&'a DeadLetterQueue),
    /// Written by the caller (e.g. `weir run` writes files); counted as kept.
    Collect(&'a mut Vec<DeadLetter>),
}

impl DeadLetterStore for DeadLetterSink<'_> {
    async fn keep(
        &mut self,
        letters: &[DeadLetter],
        deadline: Instant,
    ) -> Vec<Result<(), weir_core::sink::KeepError>> {
        match self {
            DeadLetterSink::Queue(queue) => queue.send(letters, deadline).await,
            DeadLetterSink::Collect(out) => {
                out.extend_from_slice(letters);
                vec![Ok(()); letters.len()]
            }
        }
    }
}
