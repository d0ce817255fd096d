//! Sending entries to EventBridge: packing PutEvents calls, matching per-entry results,
//! re-sending only what failed transiently, until the invocation's time runs out.
//!
//! PutEvents reports per-entry failures inside a *successful* response, so the SDK retries
//! nothing for us; this module does. The SDK's own retries are turned off on the client
//! weir builds, so every call made is one counted here.

use std::future::Future;
use std::time::Duration;

use aws_sdk_eventbridge::error::SdkError;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use tokio::time::Instant;

use crate::client::{describe_sdk_error, is_transient};
use weir_core::model::Entry;
use weir_core::retry::{self, BatchCall, CallOutcome, ItemOutcome, RetryPolicy};
use weir_core::sink::{EntryResult, EventSink, PublishReport};

/// PutEvents takes at most this many entries per call.
pub const MAX_ENTRIES_PER_CALL: usize = 10;

/// Per-entry error codes worth sending again.
const RETRYABLE_ENTRY_CODES: &[&str] = &["InternalFailure", "ThrottlingException"];

/// How publishing behaves; the defaults suit a Lambda with a 60 s timeout or more.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// PutEvents calls in flight at once.
    pub max_concurrency: usize,
    /// Total entry size (AWS's formula) per call.
    pub max_request_bytes: usize,
    /// Time kept back before the deadline, to report what was not published; never more
    /// than a quarter of the time left when publishing starts (a 3 s function needs most
    /// of its time for work).
    pub safety_margin: Duration,
    /// First backoff; each round doubles it, capped by `max_backoff`, with full jitter.
    pub base_backoff: Duration,
    /// The longest backoff between rounds.
    pub max_backoff: Duration,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            max_concurrency: 4,
            max_request_bytes: 1 << 20,
            safety_margin: Duration::from_millis(500),
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The EventBridge side of weir.
#[derive(Clone)]
pub struct Publisher {
    client: aws_sdk_eventbridge::Client,
    config: PublishConfig,
}

impl Publisher {
    /// A publisher that sends with `client`, as `config` says.
    pub fn new(client: aws_sdk_eventbridge::Client, config: PublishConfig) -> Self {
        Publisher { client, config }
    }

    /// Fails unless the bus exists. PutEvents to a missing bus has been seen to succeed,
    /// so a mistyped name must be caught at start.
    pub async fn check_bus(&self, bus: &str) -> anyhow::Result<String> {
        let out = self
            .client
            .describe_event_bus()
            .name(bus)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "event bus {bus:?} cannot be described: {}",
                    describe_sdk_error(&e)
                )
            })?;
        Ok(out.arn().unwrap_or_default().to_owned())
    }

    /// Publishes `entries`, re-sending transient failures with backoff until `deadline`
    /// minus the safety margin. Every entry ends with a result.
    pub async fn publish(&self, entries: &[Entry], deadline: Instant) -> PublishReport {
        let policy = RetryPolicy {
            max_concurrency: self.config.max_concurrency,
            safety_margin: self.config.safety_margin,
            base_backoff: self.config.base_backoff,
            max_backoff: self.config.max_backoff,
        };
        let batch = PutEventsBatch {
            publisher: self,
            entries,
        };
        retry::drive(&batch, vec![None; entries.len()], policy, deadline)
            .await
            .into()
    }
}

/// One set of entries to publish: how they pack into PutEvents calls, and one call.
struct PutEventsBatch<'a> {
    publisher: &'a Publisher,
    entries: &'a [Entry],
}

impl BatchCall for PutEventsBatch<'_> {
    type Result = EntryResult;
    const NAME: &'static str = "PutEvents";

    /// Up to 10 entries and `max_request_bytes` per call.
    fn pack(&self, pending: &[usize]) -> Vec<Vec<usize>> {
        retry::pack(
            pending,
            |i| self.entries[i].size(),
            MAX_ENTRIES_PER_CALL,
            self.publisher.config.max_request_bytes,
        )
    }

    fn size(&self, item: usize) -> usize {
        self.entries[item].size()
    }

    async fn call(&self, call: &[usize], remaining: Duration) -> CallOutcome<EntryResult> {
        let request: Vec<PutEventsRequestEntry> = call
            .iter()
            .map(|&i| {
                let e = &self.entries[i];
                PutEventsRequestEntry::builder()
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .event_bus_name(&e.event_bus_name)
                    .set_resources((!e.resources.is_empty()).then(|| e.resources.clone()))
                    .build()
            })
            .collect();
        let send = self
            .publisher
            .client
            .put_events()
            .set_entries(Some(request))
            .send();
        let response = match tokio::time::timeout(remaining, send).await {
            Err(_) => {
                return CallOutcome::Abandoned(
                    "PutEvents did not answer before the invocation's time ran out".to_owned(),
                );
            }
            Ok(Err(e)) => return classify_call_error(&e),
            Ok(Ok(r)) => r,
        };
        let results = response.entries();
        if results.len() != call.len() {
            return CallOutcome::Transient(format!(
                "PutEvents answered {} results for {} entries",
                results.len(),
                call.len()
            ));
        }
        CallOutcome::Items(
            results
                .iter()
                .map(|r| match r.error_code() {
                    None if r.event_id().is_some() => ItemOutcome::Done(EntryResult::Accepted),
                    None => ItemOutcome::Done(EntryResult::Unpublished {
                        reason: "PutEvents returned neither an event id nor an error".to_owned(),
                    }),
                    Some(code) if RETRYABLE_ENTRY_CODES.contains(&code) => ItemOutcome::Retry(
                        format!("{code}: {}", r.error_message().unwrap_or_default()),
                    ),
                    Some(code) => ItemOutcome::Done(EntryResult::Rejected {
                        code: code.to_owned(),
                        message: r.error_message().unwrap_or_default().to_owned(),
                    }),
                })
                .collect(),
        )
    }

    fn unsent(&self, reason: String) -> EntryResult {
        EntryResult::Unpublished { reason }
    }
}

fn classify_call_error<E>(
    e: &SdkError<E, aws_sdk_eventbridge::config::http::HttpResponse>,
) -> CallOutcome<EntryResult>
where
    E: aws_sdk_eventbridge::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let described = describe_sdk_error(e);
    if is_transient(e) {
        return CallOutcome::Transient(described);
    }
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            if matches!(
                code,
                "AccessDeniedException"
                    | "UnrecognizedClientException"
                    | "ExpiredTokenException"
                    | "InvalidSignatureException"
                    | "ResourceNotFoundException"
                    | "NotAuthorized"
            ) {
                CallOutcome::Abandoned(described)
            } else {
                CallOutcome::Refused(EntryResult::Rejected {
                    code: code.to_owned(),
                    message: se.err().message().unwrap_or_default().to_owned(),
                })
            }
        }
        _ => CallOutcome::Abandoned(described),
    }
}
impl EventSink for &Publisher {
    fn send(
        &self,
        entries: &[Entry],
        deadline: Instant,
    ) -> impl Future<Output = PublishReport> + Send {
        self.publish(entries, deadline)
    }
}
