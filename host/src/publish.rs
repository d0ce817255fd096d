//! Sending entries to EventBridge: packing PutEvents calls, matching per-entry results,
//! re-sending only what failed transiently, until the invocation's time runs out.
//!
//! PutEvents reports per-entry failures inside a *successful* response, so the SDK retries
//! nothing for us; this module does. The SDK's own retries are turned off on the client
//! weir builds, so every call made is one counted here.

use std::time::Duration;

use aws_sdk_eventbridge::error::SdkError;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use futures::StreamExt as _;
use tokio::time::Instant;

use crate::aws::{describe_sdk_error, is_transient};
use crate::model::Entry;

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

/// What became of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// EventBridge accepted it.
    Accepted,
    /// EventBridge refused it for good (e.g. `InvalidArgument`): its record is dead-lettered.
    Rejected { code: String, message: String },
    /// Still failing transiently when time ran out, or refused for a reason on weir's side
    /// (credentials, a missing bus): its record is retried.
    Unpublished { reason: String },
}

/// The result of publishing a set of entries, in their order.
#[derive(Debug, Default)]
pub struct PublishReport {
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

/// The EventBridge side of weir.
#[derive(Clone)]
pub struct Publisher {
    client: aws_sdk_eventbridge::Client,
    config: PublishConfig,
}

enum CallOutcome {
    /// Per-entry results for the call's entries, by position.
    Entries(Vec<EntryResult>),
    /// The whole call failed and may succeed later.
    Transient(String),
    /// The whole call was refused for something in the request: split or reject.
    Invalid { code: String, message: String },
    /// The whole call was refused for something on weir's side: stop and retry later.
    HostFault(String),
}

impl Publisher {
    pub fn new(client: aws_sdk_eventbridge::Client, config: PublishConfig) -> Self {
        Publisher { client, config }
    }

    /// Builds a client from shared AWS config with the SDK's own retries off, since
    /// this module retries (and counts) every call itself.
    pub fn client_from(sdk: &aws_config::SdkConfig) -> aws_sdk_eventbridge::Client {
        let conf = aws_sdk_eventbridge::config::Builder::from(sdk)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_eventbridge::Client::from_conf(conf)
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
        let mut report = PublishReport {
            results: vec![
                EntryResult::Unpublished {
                    reason: "not sent".to_owned()
                };
                entries.len()
            ],
            ..PublishReport::default()
        };
        let stop_at = stop_before(deadline, self.config.safety_margin);
        let mut pending: Vec<usize> = (0..entries.len()).collect();
        let mut singles: Vec<usize> = Vec::new();
        let mut round = 0u32;
        while !pending.is_empty() || !singles.is_empty() {
            let mut calls = self.pack(entries, &pending);
            calls.extend(singles.drain(..).map(|i| vec![i]));
            let remaining = stop_at.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                for call in calls {
                    for i in call {
                        report.results[i] = EntryResult::Unpublished {
                            reason: "the invocation's time ran out before it could be sent"
                                .to_owned(),
                        };
                    }
                }
                break;
            }
            if round > 0 {
                report.retry_calls += calls.len();
                report.retried_entries += calls.iter().map(Vec::len).sum::<usize>();
            }
            report.calls += calls.len();
            for call in &calls {
                let bytes = call.iter().map(|&i| entries[i].size()).sum();
                report.call_sizes.push((call.len(), bytes));
            }
            let outcomes: Vec<(Vec<usize>, CallOutcome)> = futures::stream::iter(calls)
                .map(|call| async move {
                    let outcome = self.call(entries, &call, remaining).await;
                    (call, outcome)
                })
                .buffer_unordered(self.config.max_concurrency.max(1))
                .collect()
                .await;
            let mut again = Vec::new();
            for (call, outcome) in outcomes {
                match outcome {
                    CallOutcome::Entries(results) => {
                        for (&i, result) in call.iter().zip(results) {
                            if matches!(result, EntryResult::Unpublished { .. }) {
                                again.push(i);
                            }
                            report.results[i] = result;
                        }
                    }
                    CallOutcome::Transient(reason) => {
                        for &i in &call {
                            report.results[i] = EntryResult::Unpublished {
                                reason: reason.clone(),
                            };
                            again.push(i);
                        }
                    }
                    CallOutcome::Invalid { code, message } if call.len() > 1 => {
                        // One entry may have spoiled the call: send each alone to find it.
                        tracing::warn!(%code, "PutEvents refused a call of {}; sending its entries one by one: {message}", call.len());
                        singles.extend(call);
                    }
                    CallOutcome::Invalid { code, message } => {
                        report.results[call[0]] = EntryResult::Rejected { code, message };
                    }
                    CallOutcome::HostFault(reason) => {
                        for &i in &call {
                            report.results[i] = EntryResult::Unpublished {
                                reason: reason.clone(),
                            };
                        }
                    }
                }
            }
            again.sort_unstable();
            pending = again;
            if pending.is_empty() {
                continue;
            }
            round += 1;
            let backoff = self.backoff(round);
            if Instant::now() + backoff >= stop_at {
                tracing::warn!(
                    entries = pending.len(),
                    "PutEvents still failing when the invocation's time ran out"
                );
                break;
            }
            tokio::time::sleep(backoff).await;
        }
        report
    }

    fn backoff(&self, round: u32) -> Duration {
        full_jitter(self.config.base_backoff, self.config.max_backoff, round)
    }

    /// Up to 10 entries and `max_request_bytes` per call.
    fn pack(&self, entries: &[Entry], pending: &[usize]) -> Vec<Vec<usize>> {
        pack(
            pending,
            |i| entries[i].size(),
            MAX_ENTRIES_PER_CALL,
            self.config.max_request_bytes,
        )
    }

    async fn call(&self, entries: &[Entry], call: &[usize], remaining: Duration) -> CallOutcome {
        let request: Vec<PutEventsRequestEntry> = call
            .iter()
            .map(|&i| {
                let e = &entries[i];
                PutEventsRequestEntry::builder()
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .event_bus_name(&e.event_bus_name)
                    .set_resources((!e.resources.is_empty()).then(|| e.resources.clone()))
                    .build()
            })
            .collect();
        let send = self.client.put_events().set_entries(Some(request)).send();
        let response = match tokio::time::timeout(remaining, send).await {
            Err(_) => {
                return CallOutcome::HostFault(
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
        CallOutcome::Entries(
            results
                .iter()
                .map(|r| match r.error_code() {
                    None if r.event_id().is_some() => EntryResult::Accepted,
                    None => EntryResult::Unpublished {
                        reason: "PutEvents returned neither an event id nor an error".to_owned(),
                    },
                    Some(code) if RETRYABLE_ENTRY_CODES.contains(&code) => {
                        EntryResult::Unpublished {
                            reason: format!("{code}: {}", r.error_message().unwrap_or_default()),
                        }
                    }
                    Some(code) => EntryResult::Rejected {
                        code: code.to_owned(),
                        message: r.error_message().unwrap_or_default().to_owned(),
                    },
                })
                .collect(),
        )
    }
}

fn classify_call_error<E>(
    e: &SdkError<E, aws_sdk_eventbridge::config::http::HttpResponse>,
) -> CallOutcome
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
                CallOutcome::HostFault(described)
            } else {
                CallOutcome::Invalid {
                    code: code.to_owned(),
                    message: se.err().message().unwrap_or_default().to_owned(),
                }
            }
        }
        _ => CallOutcome::HostFault(described),
    }
}

/// Full jitter: a uniform wait in [0, min(max, base · 2^round)].
pub fn full_jitter(base: Duration, max: Duration, round: u32) -> Duration {
    let cap = base.saturating_mul(1u32 << round.min(16)).min(max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// Greedy packing in order: each group holds at most `max_count` items and `max_bytes`
/// (an item larger than `max_bytes` goes alone). Used for PutEvents and SendMessageBatch.
pub fn pack(
    pending: &[usize],
    size: impl Fn(usize) -> usize,
    max_count: usize,
    max_bytes: usize,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &i in pending {
        let s = size(i);
        match groups.last_mut() {
            Some(g) if g.len() < max_count && bytes + s <= max_bytes => {
                g.push(i);
                bytes += s;
            }
            _ => {
                groups.push(vec![i]);
                bytes = s;
            }
        }
    }
    groups
}

/// When to stop trying: `margin` before the deadline, but keeping at least three quarters
/// of the time left.
pub fn stop_before(deadline: Instant, margin: Duration) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    deadline - margin.min(left / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_fills_groups_by_count_then_bytes() {
        let all: Vec<usize> = (0..25).collect();
        let lens: Vec<usize> = pack(&all, |_| 1, 10, 100).iter().map(Vec::len).collect();
        assert_eq!(lens, [10, 10, 5]);
        let sizes = [60, 50, 40, 200, 10];
        let groups = pack(&[0, 1, 2, 3, 4], |i| sizes[i], 10, 100);
        assert_eq!(groups, [vec![0], vec![1, 2], vec![3], vec![4]]);
    }

    #[test]
    fn jitter_stays_under_its_cap() {
        for round in 0..20 {
            let d = full_jitter(Duration::from_millis(10), Duration::from_millis(500), round);
            assert!(d <= Duration::from_millis(500));
        }
        assert!(
            full_jitter(Duration::from_millis(10), Duration::from_secs(5), 0)
                <= Duration::from_millis(10)
        );
    }
}
