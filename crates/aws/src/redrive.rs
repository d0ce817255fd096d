//! Repairing what was dead-lettered, once its cause is fixed.
//!
//! - weir's own queue holds stream records: each is run again through the *current*
//!   manifest and plugins, and its message is deleted only once the record is published
//!   or filtered by its plugin. Only letters weir wrote are taken: each must carry a MAC
//!   made with the dead-letter key ([`LetterKey`]); any other message is left and reported
//!   as not weir's. A letter the current manifest has no route or tenant for is kept too
//!   (unless the operator says to delete those). A letter kept in S3 is read back, checked
//!   against its sha256, and its object deleted once the letter is done. A record that
//!   fails again stays, its receive count growing.
//! - An API destination's dead-letter queue holds EventBridge events that were never
//!   delivered: each that came from a rule on this bus, with a source the manifest's
//!   routes publish and a tenant it serves, is put back on the bus (so every matching rule
//!   sees it again; the `metadata.id` lets receivers drop what they already had), then
//!   deleted. Anything else is left and reported.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use serde_json::value::RawValue;
use sha2::Digest as _;

use weir_core::batch::{self, Verdict};
use weir_core::manifest::{DEFAULT_TENANT, Manifest};
use weir_core::model::{Entry, PluginRef};
use weir_core::pipeline::Pipeline;
use weir_core::sink::EntryResult;
use weir_core::transform::Slot;

use crate::dead_letter::{DeadLetterSink, LetterKey, LetterObject, MAC_ATTRIBUTE};
use crate::publish::Publisher;

/// How long a received message stays hidden while it is being redriven. A message left in
/// the queue reappears after this.
const VISIBILITY_TIMEOUT_SECS: i32 = 300;

/// A letter kept in S3 larger than this is not read (a stream record is at most a few MB).
const MAX_LETTER_OBJECT_BYTES: usize = 16 << 20;

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    /// Messages in the queue when the redrive started (SQS's approximate count).
    pub total: usize,
    /// Messages received, each counted once however often SQS delivered it.
    pub received: usize,
    /// Deleted: the record (or event) now published or filtered.
    pub done: usize,
    /// Left in the queue: failed again, could not be read, not weir's, or kept for want
    /// of a route (the two counts below are part of this one).
    pub left: usize,
    /// Left because weir did not write them: no valid MAC (a dead letter), or not from a
    /// rule of this bus with a source and tenant of the manifest (a delivery event).
    pub not_weirs: usize,
    /// Left because the current manifest has no route or tenant for the record.
    pub unroutable: usize,
    /// Per message, what happened (for `--dry-run` and the log).
    pub lines: Vec<String>,
}

/// What a redrive of weir's queue may take and delete beyond the default.
#[derive(Debug, Clone, Default)]
pub struct RedriveOptions {
    /// The key weir's letters are signed with. Without it, no signed letter is taken.
    pub key: Option<LetterKey>,
    /// Also take letters without a MAC (written before letters were signed), after the
    /// operator reviewed the queue. A letter whose MAC is wrong is never taken.
    pub accept_unsigned: bool,
    /// Delete letters the current manifest has no route or tenant for, counted as
    /// filtered (by default they stay).
    pub delete_unroutable: bool,
    /// S3, to read letters kept there and delete them once done.
    pub s3: Option<aws_sdk_s3::Client>,
}

/// What becomes of one received message.
enum Disposition {
    /// Left in the queue.
    Leave,
    /// Deleted, and with it the S3 object its letter was kept in, if any.
    Delete(Option<LetterObject>),
}

/// Reads a queue to its end, handing each batch of messages to `each`, which says which
/// messages to delete. Messages seen twice end the read (nothing new is left).
async fn drain(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    dry_run: bool,
    s3: Option<&aws_sdk_s3::Client>,
    mut progress: impl FnMut(usize, usize),
    mut each: impl AsyncFnMut(&[Message], &mut RedriveReport) -> anyhow::Result<Vec<Disposition>>,
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
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
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
        let dispositions = each(&messages, &mut report).await?;
        let mut entries = Vec::new();
        let mut objects = Vec::new();
        for (i, (m, disposition)) in messages.iter().zip(dispositions).enumerate() {
            let Some(handle) = m.receipt_handle() else {
                continue;
            };
            match disposition {
                Disposition::Delete(object) => {
                    report.done += 1;
                    if dry_run {
                        keep_visible.push(handle.to_owned());
                    } else {
                        entries.push(
                            DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(handle)
                                .build()?,
                        );
                        objects.push((i.to_string(), object));
                    }
                }
                Disposition::Leave => {
                    report.left += 1;
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
            let failed: HashSet<&str> = out.failed().iter().map(|f| f.id()).collect();
            // A letter's object goes only once its message is gone: never the other way.
            for (id, object) in objects {
                if let (Some(object), Some(s3)) = (object, s3)
                    && !failed.contains(id.as_str())
                {
                    s3.delete_object()
                        .bucket(&object.bucket)
                        .key(&object.key)
                        .send()
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "s3://{}/{}: cannot delete the redriven letter: {}",
                                object.bucket,
                                object.key,
                                crate::client::describe_sdk_error(&e)
                            )
                        })?;
                }
            }
            if !failed.is_empty() {
                anyhow::bail!(
                    "{queue_url}: {} messages could not be deleted and will be redriven again",
                    failed.len()
                );
            }
        }
        progress(report.done + report.left, report.total.max(report.received));
    }
    // What stays is visible again at once (for the operator, or the next redrive), and a
    // dry run changes nothing: everything it read is.
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
                crate::client::describe_sdk_error(&e)
            )
        })?;
    Ok(out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// A message attribute's string value.
fn attribute<'m>(m: &'m Message, name: &str) -> Option<&'m str> {
    m.message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
}

/// Whether weir wrote the message: `Err` says why it is not taken.
fn authenticate(m: &Message, options: &RedriveOptions) -> Result<(), String> {
    let body = m.body().unwrap_or_default();
    match (attribute(m, MAC_ATTRIBUTE), &options.key) {
        (Some(mac), Some(key)) if key.verify(body, mac) => Ok(()),
        (Some(_), Some(_)) => Err("its MAC does not match the dead-letter key".into()),
        (Some(_), None) => Err("signed, but no dead-letter key was given to check it".into()),
        (None, _) if options.accept_unsigned => Ok(()),
        (None, _) => Err(format!(
            "no {MAC_ATTRIBUTE} attribute (a letter written before letters were signed is taken only with --accept-unsigned, after review)"
        )),
    }
}

/// A letter's body as weir reads it back: the record itself, or where it was kept.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LetterBody {
    #[serde(default)]
    record: Option<Box<RawValue>>,
    #[serde(default)]
    letter_object: Option<LetterObject>,
}

/// The record of an authenticated letter (read back from S3 when kept there), with the
/// object to delete once it is done.
async fn letter_record(
    body: &str,
    s3: Option<&aws_sdk_s3::Client>,
) -> Result<(Box<RawValue>, Option<LetterObject>), String> {
    let letter: LetterBody =
        serde_json::from_str(body).map_err(|e| format!("not a weir dead letter ({e})"))?;
    match (letter.record, letter.letter_object) {
        (Some(record), _) => Ok((record, None)),
        (None, Some(object)) => {
            let s3 = s3.ok_or("its letter is in S3, and no S3 client was given")?;
            let text = read_letter_object(s3, &object).await?;
            let whole: LetterBody = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "s3://{}/{} is not a weir dead letter ({e})",
                    object.bucket, object.key
                )
            })?;
            let record = whole
                .record
                .ok_or_else(|| format!("s3://{}/{} holds no record", object.bucket, object.key))?;
            Ok((record, Some(object)))
        }
        (None, None) => Err("not a weir dead letter (no record)".into()),
    }
}

/// A letter kept in S3, checked against the length and sha256 its signed pointer gives.
async fn read_letter_object(
    s3: &aws_sdk_s3::Client,
    object: &LetterObject,
) -> Result<String, String> {
    let name = format!("s3://{}/{}", object.bucket, object.key);
    if object.bytes > MAX_LETTER_OBJECT_BYTES {
        return Err(format!(
            "{name}: {} bytes is more than a letter holds",
            object.bytes
        ));
    }
    let out = s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|e| {
            format!(
                "{name}: cannot read: {}",
                crate::client::describe_sdk_error(&e)
            )
        })?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| format!("{name}: cannot read: {e}"))?
        .into_bytes();
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    if bytes.len() != object.bytes || sha256 != object.sha256 {
        return Err(format!(
            "{name}: its {} bytes (sha256 {sha256}) are not the letter's {} bytes (sha256 {})",
            bytes.len(),
            object.bytes,
            object.sha256
        ));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{name}: not UTF-8"))
}

/// Why the manifest has nowhere to send a record, if it has not: no route for its table,
/// or no tenant entry for its tenant. A record that does not decode gets `None`: the
/// pipeline dead-letters it again, with the reason.
pub fn unroutable(manifest: &Manifest, record: &str) -> Option<&'static str> {
    let parsed = weir_core::record::parse(record).ok()?;
    let Some(route) = manifest.route(parsed.table()) else {
        return Some("no route for its table");
    };
    // An attribute that cannot be read: the pipeline says why when it runs the record.
    let attribute = TenantAttribute::value(parsed.string_attribute(route.tenant.attribute_name()))?;
    let own_id = attribute.as_deref().and_then(|v| route.tenant.extract(v));
    match manifest.tenant_entry(own_id.unwrap_or(DEFAULT_TENANT)) {
        Some(_) => None,
        None if own_id.is_some() => Some("no tenant entry for its tenant"),
        None => Some("no tenant"),
    }
}

/// A tenant attribute as the record reader gives it: the value if there is one, or
/// `None` for "ask the pipeline" when it could not be read.
trait TenantAttribute {
    fn value(self) -> Option<Option<String>>;
}

impl TenantAttribute for Option<String> {
    fn value(self) -> Option<Option<String>> {
        Some(self)
    }
}

impl<E> TenantAttribute for Result<Option<String>, E> {
    fn value(self) -> Option<Option<String>> {
        self.ok()
    }
}

/// Redrives weir's dead-letter queue through `pipeline`. With no publisher (a dry run)
/// nothing is published or deleted; the report says what would happen.
pub async fn dead_letters<S: Slot>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    pipeline: Arc<Pipeline<S>>,
    publisher: Option<&Publisher>,
    options: &RedriveOptions,
    progress: impl FnMut(usize, usize),
) -> anyhow::Result<RedriveReport> {
    let dry_run = publisher.is_none();
    drain(
        sqs,
        queue_url,
        dry_run,
        options.s3.as_ref(),
        progress,
        async |messages, report| {
            // Per message: its place in the batch (and its S3 object), or why it stays.
            let mut slots: Vec<Result<(usize, Option<LetterObject>), String>> = Vec::new();
            let mut records = Vec::new();
            for m in messages {
                let body = m.body().unwrap_or_default();
                if let Err(why) = authenticate(m, options) {
                    report.not_weirs += 1;
                    slots.push(Err(format!("not weir's: {why}; left")));
                    continue;
                }
                match letter_record(body, options.s3.as_ref()).await {
                    Err(why) => slots.push(Err(format!("{why}; left"))),
                    Ok((record, object)) => match unroutable(pipeline.manifest(), record.get()) {
                        Some(why) if !options.delete_unroutable => {
                            report.unroutable += 1;
                            slots.push(Err(format!(
                                "kept: no route ({why}; --delete-unroutable deletes it); left"
                            )));
                        }
                        _ => {
                            slots.push(Ok((records.len(), object)));
                            records.push(record);
                        }
                    },
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
                    let (disposition, what) = match slot {
                        Err(why) => (Disposition::Leave, why),
                        Ok((i, object)) => match &result.verdicts[i] {
                            Verdict::Published => {
                                (Disposition::Delete(object), "published".to_owned())
                            }
                            Verdict::Filtered => {
                                (Disposition::Delete(object), "filtered".to_owned())
                            }
                            Verdict::Coalesced => (
                                Disposition::Delete(object),
                                "coalesced (a later change of the item superseded it)".to_owned(),
                            ),
                            Verdict::DeadLettered { kind } => {
                                (Disposition::Leave, format!("fails again ({kind}); left"))
                            }
                            Verdict::Retry { reason } => (
                                Disposition::Leave,
                                format!("not published ({reason}); left"),
                            ),
                        },
                    };
                    report.lines.push(format!("{id}: {what}"));
                    disposition
                })
                .collect())
        },
    )
    .await
}

/// What an event in an API destination's dead-letter queue must show to be put back on
/// the bus: that EventBridge put it there from a rule of this bus, and that it is one of
/// weir's events (a source the manifest's routes publish, a tenant it serves).
#[derive(Debug, Clone)]
pub struct DeliveryCheck {
    /// The bus's ARN (from DescribeEventBus): its partition, region, account and name.
    pub bus_arn: String,
    /// Every source the manifest's routes publish.
    pub sources: Vec<String>,
    /// Tenants the manifest serves (a `default` entry serves every tenant).
    pub tenants: Vec<String>,
}

impl DeliveryCheck {
    /// The check for `manifest`'s events on the bus `bus_arn`.
    pub fn new(manifest: &Manifest, bus_arn: &str) -> Self {
        DeliveryCheck {
            bus_arn: bus_arn.to_owned(),
            sources: manifest.sources().into_iter().map(str::to_owned).collect(),
            tenants: manifest.tenants.keys().cloned().collect(),
        }
    }

    /// The prefix of every rule ARN of this bus, and its region and account.
    fn rule_prefix(&self) -> Option<(String, &str, &str)> {
        // arn:PARTITION:events:REGION:ACCOUNT:event-bus/NAME
        let mut parts = self.bus_arn.splitn(6, ':');
        let (_, partition, _, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let name = resource.strip_prefix("event-bus/")?;
        let prefix = if name == "default" {
            format!("arn:{partition}:events:{region}:{account}:rule/")
        } else {
            format!("arn:{partition}:events:{region}:{account}:rule/{name}/")
        };
        Some((prefix, region, account))
    }

    /// Whether the message is a delivery event of this bus's rules: `Err` says why not.
    fn admits(&self, m: &Message, event: &DeliveryEvent) -> Result<(), String> {
        for name in ["RULE_ARN", "TARGET_ARN", "ERROR_CODE"] {
            if attribute(m, name).is_none() {
                return Err(format!(
                    "no {name} attribute: EventBridge did not put it there"
                ));
            }
        }
        let (prefix, region, account) = self
            .rule_prefix()
            .ok_or_else(|| format!("the bus ARN {:?} is not one", self.bus_arn))?;
        let rule = attribute(m, "RULE_ARN").unwrap_or_default();
        let name = rule.strip_prefix(&prefix).unwrap_or_default();
        if name.is_empty() || name.contains('/') {
            return Err(format!("its RULE_ARN {rule:?} is not a rule of this bus"));
        }
        if event.account.as_deref() != Some(account) || event.region.as_deref() != Some(region) {
            return Err(format!(
                "its account and region {:?} / {:?} are not the bus's",
                event.account, event.region
            ));
        }
        if !self.sources.contains(&event.source) {
            return Err(format!(
                "its source {:?} is not one the manifest's routes publish",
                event.source
            ));
        }
        let tenant = event.tenant().ok_or("its detail has no metadata.tenant")?;
        if !self
            .tenants
            .iter()
            .any(|t| t == &tenant || t == DEFAULT_TENANT)
        {
            return Err(format!(
                "its tenant {tenant:?} is not one the manifest serves"
            ));
        }
        Ok(())
    }
}

/// An EventBridge event as a rule's dead-letter queue holds it.
#[derive(serde::Deserialize)]
struct DeliveryEvent {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: Box<RawValue>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

impl DeliveryEvent {
    /// The tenant weir's envelope names.
    fn tenant(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Detail {
            metadata: Metadata,
        }
        #[derive(serde::Deserialize)]
        struct Metadata {
            tenant: String,
        }
        serde_json::from_str::<Detail>(self.detail.get())
            .ok()
            .map(|d| d.metadata.tenant)
    }
}

/// Puts the events in an API destination's dead-letter queue back on `bus`, each only if
/// `check` admits it. With no publisher (a dry run) nothing is sent or deleted.
pub async fn deliveries(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    bus: &str,
    check: &DeliveryCheck,
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
        None,
        progress,
        async |messages, report| {
            let entries: Vec<Result<Entry, String>> = messages
                .iter()
                .map(|m| {
                    let body = m.body().unwrap_or_default();
                    let event: DeliveryEvent = serde_json::from_str(body)
                        .map_err(|_| "not an EventBridge event; left".to_owned())?;
                    if let Err(why) = check.admits(m, &event) {
                        report.not_weirs += 1;
                        return Err(format!("not weir's: {why}; left"));
                    }
                    entry_of(event, bus, &origin)
                        .ok_or_else(|| "its detail is not a JSON object; left".to_owned())
                })
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
                        Err(why) => (false, why.clone()),
                        Ok(e) => match results.next() {
                            Some(EntryResult::Accepted) => (
                                true,
                                format!("put back on {} ({:?})", e.event_bus_name, e.detail_type),
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
                    if done {
                        Disposition::Delete(None)
                    } else {
                        Disposition::Leave
                    }
                })
                .collect())
        },
    )
    .await
}

/// An EventBridge event (as a rule's dead-letter queue holds it) as a PutEvents entry.
/// The detail is kept as its exact text, so no digit changes on the way back.
fn entry_of(event: DeliveryEvent, bus: &str, origin: &Arc<PluginRef>) -> Option<Entry> {
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

    fn event(body: &str) -> Option<DeliveryEvent> {
        serde_json::from_str(body).ok()
    }

    #[test]
    fn a_delivery_event_goes_back_with_its_detail_byte_for_byte() {
        let origin = Arc::new(PluginRef {
            name: "redrive".into(),
            sha256: String::new(),
        });
        let body = r#"{"version":"0","id":"x","detail-type":"T","source":"weir.s","resources":["arn:r"],"detail":{"payload":{"tiny":0.000000000000000000000000000000000001,"big":"12345678901234567890123456789012345678"}}}"#;
        let entry = entry_of(event(body).expect("event"), "bus", &origin).expect("an entry");
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
        let not_object = event(r#"{"source":"s","detail-type":"T","detail":[1]}"#).expect("event");
        assert!(entry_of(not_object, "bus", &origin).is_none());
        assert!(event("not json").is_none());
    }

    #[test]
    fn rule_arns_of_this_bus_only() {
        let check = DeliveryCheck {
            bus_arn: "arn:aws:events:us-east-1:123456789012:event-bus/weir".into(),
            sources: vec!["weir.customers".into()],
            tenants: vec!["acme".into()],
        };
        let (prefix, region, account) = check.rule_prefix().expect("prefix");
        assert_eq!(prefix, "arn:aws:events:us-east-1:123456789012:rule/weir/");
        assert_eq!((region, account), ("us-east-1", "123456789012"));
        let default = DeliveryCheck {
            bus_arn: "arn:aws:events:eu-west-1:1:event-bus/default".into(),
            ..check.clone()
        };
        assert_eq!(
            default.rule_prefix().expect("prefix").0,
            "arn:aws:events:eu-west-1:1:rule/"
        );
    }
}
