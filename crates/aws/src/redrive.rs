//! Repairing what was dead-lettered, once its cause is fixed.
//!
//! - weir's own queue holds stream records: each is run again through the *current*
//!   manifest and plugins, and its message is deleted only once the record is published
//!   or filtered. A record that fails again stays, its receive count growing.
//! - An API destination's dead-letter queue holds EventBridge events that were never
//!   delivered: each is put back on the bus (so every matching rule sees it again; the
//!   `metadata.id` lets receivers drop what they already had), then deleted.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, QueueAttributeName};
use serde_json::value::RawValue;

use weir_core::batch::{self, Verdict};
use weir_core::model::{Entry, PluginRef};
use weir_core::pipeline::Pipeline;
use weir_core::transform::Slot;

use crate::dead_letter::DeadLetterSink;
use crate::publish::{EntryResult, Publisher};

/// How long a received message stays hidden while it is being redriven. A message left in
/// the queue reappears after this.
const VISIBILITY_TIMEOUT_SECS: i32 = 300;

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    /// Messages in the queue when the redrive started (SQS's approximate count).
    pub total: usize,
    /// Messages received, each counted once however often SQS delivered it.
    pub received: usize,
    /// Deleted: the record (or event) now published or filtered.
    pub done: usize,
    /// Left in the queue: failed again, or could not be read.
    pub left: usize,
    /// Per message, what happened (for `--dry-run` and the log).
    pub lines: Vec<String>,
}

/// Reads a queue to its end, handing each batch of messages to `each`, which says which
/// messages to delete. Messages seen twice end the read (nothing new is left).
async fn drain(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    dry_run: bool,
    mut progress: impl FnMut(usize, usize),
    mut each: impl AsyncFnMut(&[Message], &mut RedriveReport) -> anyhow::Result<Vec<bool>>,
) -> anyhow::Result<RedriveReport> {
    let mut report = RedriveReport {
        total: approximate_count(sqs, queue_url).await?,
        ..RedriveReport::default()
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut keep_visible = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(VISIBILITY_TIMEOUT_SECS)
            .wait_time_seconds(1)
            .send()
            .await
            .with_context(|| format!("{queue_url}: cannot receive"))?;
        let messages: Vec<Message> = out
            .messages()
            .iter()
            .filter(|m| m.message_id().is_some_and(|id| seen.insert(id.to_owned())))
            .cloned()
            .collect();
        if messages.is_empty() {
            break;
        }
        report.received += messages.len();
        let delete = each(&messages, &mut report).await?;
        let mut entries = Vec::new();
        for (i, (m, del)) in messages.iter().zip(delete).enumerate() {
            let Some(handle) = m.receipt_handle() else {
                continue;
            };
            if del && !dry_run {
                report.done += 1;
                entries.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()?,
                );
            } else {
                if del {
                    report.done += 1;
                } else {
                    report.left += 1;
                }
                if dry_run {
                    keep_visible.push(handle.to_owned());
                }
            }
        }
        if !entries.is_empty() {
            let out = sqs
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .with_context(|| format!("{queue_url}: cannot delete"))?;
            if !out.failed().is_empty() {
                anyhow::bail!(
                    "{queue_url}: {} messages could not be deleted and will be redriven again",
                    out.failed().len()
                );
            }
        }
        progress(report.done + report.left, report.total.max(report.received));
    }
    // A dry run changes nothing: make what it read visible again at once.
    for handle in keep_visible {
        sqs.change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .with_context(|| format!("{queue_url}: cannot release a message"))?;
    }
    Ok(report)
}

async fn approximate_count(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<usize> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{queue_url}: cannot read the queue: {}",
                crate::aws::describe_sdk_error(&e)
            )
        })?;
    Ok(out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Redrives weir's dead-letter queue through `pipeline`. With no publisher (a dry run)
/// nothing is published or deleted; the report says what would happen.
pub async fn dead_letters<S: Slot>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    pipeline: Arc<Pipeline<S>>,
    publisher: Option<&Publisher>,
    progress: impl FnMut(usize, usize),
) -> anyhow::Result<RedriveReport> {
    let dry_run = publisher.is_none();
    drain(
        sqs,
        queue_url,
        dry_run,
        progress,
        async |messages, report| {
            let mut records = Vec::new();
            let mut slots = Vec::new();
            for m in messages {
                match record_of(m.body().unwrap_or_default()) {
                    Some(r) => {
                        slots.push(Some(records.len()));
                        records.push(r);
                    }
                    None => slots.push(None),
                }
            }
            let mut discarded = Vec::new();
            let result = batch::run(
                pipeline.clone(),
                records,
                publisher,
                DeadLetterSink::Collect(&mut discarded),
                tokio::time::Instant::now() + Duration::from_secs(60),
            )
            .await?;
            Ok(messages
                .iter()
                .zip(slots)
                .map(|(m, slot)| {
                    let id = m.message_id().unwrap_or_default();
                    let (done, what) = match slot.map(|i| &result.verdicts[i]) {
                        None => (false, "not a weir dead letter; left".to_owned()),
                        Some(Verdict::Published) => (true, "published".to_owned()),
                        Some(Verdict::Filtered) => (true, "filtered".to_owned()),
                        Some(Verdict::Coalesced) => (
                            true,
                            "coalesced (a later change of the item superseded it)".to_owned(),
                        ),
                        Some(Verdict::DeadLettered { kind }) => {
                            (false, format!("fails again ({kind}); left"))
                        }
                        Some(Verdict::Retry { reason }) => {
                            (false, format!("not published ({reason}); left"))
                        }
                    };
                    report.lines.push(format!("{id}: {what}"));
                    done
                })
                .collect())
        },
    )
    .await
}

/// The `record` of a weir dead letter, as its exact text.
fn record_of(body: &str) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Letter {
        record: Box<RawValue>,
    }
    serde_json::from_str::<Letter>(body).ok().map(|l| l.record)
}

/// Puts the events in an API destination's dead-letter queue back on `bus`. With no
/// publisher (a dry run) nothing is sent or deleted.
pub async fn deliveries(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    bus: &str,
    publisher: Option<&Publisher>,
    progress: impl FnMut(usize, usize),
) -> anyhow::Result<RedriveReport> {
    let dry_run = publisher.is_none();
    let origin = Arc::new(PluginRef {
        name: "redrive".into(),
        sha256: String::new(),
    });
    drain(
        sqs,
        queue_url,
        dry_run,
        progress,
        async |messages, report| {
            let entries: Vec<Option<Entry>> = messages
                .iter()
                .map(|m| entry_of(m.body().unwrap_or_default(), bus, &origin))
                .collect();
            let sendable: Vec<Entry> = entries.iter().flatten().cloned().collect();
            let results = match publisher {
                Some(p) => {
                    p.publish(
                        &sendable,
                        tokio::time::Instant::now() + Duration::from_secs(60),
                    )
                    .await
                    .results
                }
                None => vec![EntryResult::Accepted; sendable.len()],
            };
            let mut results = results.into_iter();
            Ok(messages
                .iter()
                .zip(&entries)
                .map(|(m, e)| {
                    let id = m.message_id().unwrap_or_default();
                    let (done, what) = match e {
                        None => (false, "not an EventBridge event; left".to_owned()),
                        Some(e) => match results.next() {
                            Some(EntryResult::Accepted) => (
                                true,
                                format!("put back on {} ({})", e.event_bus_name, e.detail_type),
                            ),
                            Some(EntryResult::Rejected { code, message }) => {
                                (false, format!("refused ({code}: {message}); left"))
                            }
                            Some(EntryResult::Unpublished { reason }) => {
                                (false, format!("not sent ({reason}); left"))
                            }
                            None => (false, "not sent; left".to_owned()),
                        },
                    };
                    report.lines.push(format!("{id}: {what}"));
                    done
                })
                .collect())
        },
    )
    .await
}

/// An EventBridge event (as a rule's dead-letter queue holds it) as a PutEvents entry.
/// The detail is kept as its exact text, so no digit changes on the way back.
fn entry_of(body: &str, bus: &str, origin: &Arc<PluginRef>) -> Option<Entry> {
    #[derive(serde::Deserialize)]
    struct Event {
        source: String,
        #[serde(rename = "detail-type")]
        detail_type: String,
        detail: Box<RawValue>,
        #[serde(default)]
        resources: Vec<String>,
    }
    let event: Event = serde_json::from_str(body).ok()?;
    if !event.detail.get().trim_start().starts_with('{') {
        return None;
    }
    Some(Entry {
        source: event.source,
        detail_type: event.detail_type,
        detail: event.detail.get().to_owned(),
        event_bus_name: bus.to_owned(),
        resources: event.resources,
        plugin: origin.clone(),
        coalesce: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_event_goes_back_with_its_detail_byte_for_byte() {
        let origin = Arc::new(PluginRef {
            name: "redrive".into(),
            sha256: String::new(),
        });
        let body = r#"{"version":"0","id":"x","detail-type":"T","source":"weir.s","resources":["arn:r"],"detail":{"payload":{"tiny":0.000000000000000000000000000000000001,"big":"12345678901234567890123456789012345678"}}}"#;
        let entry = entry_of(body, "bus", &origin).expect("an event");
        assert_eq!(
            entry.detail,
            r#"{"payload":{"tiny":0.000000000000000000000000000000000001,"big":"12345678901234567890123456789012345678"}}"#
        );
        assert_eq!(
            (
                entry.source.as_str(),
                entry.detail_type.as_str(),
                entry.event_bus_name.as_str()
            ),
            ("weir.s", "T", "bus")
        );
        assert_eq!(entry.resources, ["arn:r"]);
        assert!(
            entry_of(
                r#"{"source":"s","detail-type":"T","detail":[1]}"#,
                "bus",
                &origin
            )
            .is_none()
        );
        assert!(entry_of("not json", "bus", &origin).is_none());
    }

    #[test]
    fn only_weir_dead_letters_yield_records() {
        let r = record_of(r#"{"weirVersion":"0.1.0","record":{"eventID":"a",  "x":1.50}}"#)
            .expect("record");
        assert_eq!(r.get(), r#"{"eventID":"a",  "x":1.50}"#);
        assert!(record_of(r#"{"something":"else"}"#).is_none());
    }
}
