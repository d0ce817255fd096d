//! The Lambda handler: a DynamoDB Streams batch in, `batchItemFailures` out; or a backfill
//! task (one data file of an export to S3, as a Step Functions Distributed Map sends it)
//! in, its counts out. Only glue; the work is in [`weir_core::batch`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::Instrument as _;

use crate::telemetry::InvocationMetrics;
use weir_aws::dead_letter::DeadLetterQueue;
use weir_aws::dead_letter::DeadLetterSink;
use weir_aws::publish::Publisher;
use weir_core::batch;
use weir_core::record::StreamBatch;
use weir_runtime::loader::Loader;

mod backfill_task;
pub use backfill_task::{BackfillTask, Continuation, TaskReport};

/// The time a backfill task keeps back before its deadline ([`backfill_task::RESERVE`]).
pub fn backfill_reserve() -> Duration {
    backfill_task::RESERVE
}

/// What an invocation brings: a stream batch, or a backfill task. Anything else (`{}`, a
/// scheduled event, an event with both keys) does not deserialize, so the invocation
/// fails with a message saying what the event was, and Lambda does not count it as
/// handled.
#[derive(Debug)]
pub enum Invocation {
    /// `{"weirBackfill": {...}}`.
    Backfill {
        /// The task.
        task: BackfillTask,
    },
    /// `{"Records": [...]}`.
    Stream(StreamBatch),
}

/// The two shapes weir handles, for the error that names a third.
const KNOWN_SHAPES: &str =
    "a DynamoDB Streams batch {\"Records\": [...]} or a backfill task {\"weirBackfill\": {...}}";

/// At most this many of an unknown event's keys are named in its error.
const KEYS_NAMED: usize = 8;

/// Reads the object's keys one by one (an untagged enum or a flattened map would buffer
/// the records, and a record kept as raw text cannot be read back from serde's buffer).
impl<'de> Deserialize<'de> for Invocation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = Invocation;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(KNOWN_SHAPES)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Invocation, A::Error> {
                use serde::de::Error as _;
                let mut records: Option<Vec<Box<RawValue>>> = None;
                let mut task: Option<BackfillTask> = None;
                let mut others: Vec<String> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "Records" if records.is_none() => records = Some(map.next_value()?),
                        "weirBackfill" if task.is_none() => task = Some(map.next_value()?),
                        "Records" | "weirBackfill" => {
                            return Err(A::Error::custom(format!("the event has {key} twice")));
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            others.push(key);
                        }
                    }
                }
                match (records, task) {
                    (Some(records), None) => Ok(Invocation::Stream(StreamBatch { records })),
                    (None, Some(task)) => Ok(Invocation::Backfill { task }),
                    (Some(_), Some(_)) => Err(A::Error::custom(
                        "the event has both Records (a stream batch) and weirBackfill (a backfill task): weir runs neither, since it cannot tell which was meant",
                    )),
                    (None, None) => Err(A::Error::custom(format!(
                        "the event is not one weir handles: expected {KNOWN_SHAPES}; it has {}",
                        describe_keys(&others)
                    ))),
                }
            }
        }
        deserializer.deserialize_map(Shape)
    }
}

/// An unknown event's keys for its error, escaped and shortened: `no keys`, or
/// `keys "a", "b" and 3 more`.
fn describe_keys(keys: &[String]) -> String {
    if keys.is_empty() {
        return "no keys".to_owned();
    }
    let named: Vec<String> = keys
        .iter()
        .take(KEYS_NAMED)
        .map(|k| {
            let short: String = k.chars().take(64).collect();
            format!("{short:?}")
        })
        .collect();
    let more = keys.len().saturating_sub(KEYS_NAMED);
    let mut text = format!("keys {}", named.join(", "));
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

/// Everything an invocation needs, built once at cold start.
pub struct Function {
    /// The manifest and plugins, reloaded between invocations when they change.
    pub loader: tokio::sync::Mutex<Loader>,
    /// Sends entries to EventBridge.
    pub publisher: Publisher,
    /// weir's dead-letter queue, where records that cannot be mapped or published go.
    pub dead_letters: DeadLetterQueue,
    /// The Lambda function's name: the FunctionName dimension of every metric.
    pub function_name: String,
    /// Whether EMF metrics also carry a Tenant dimension (one document per tenant).
    pub tenant_metrics: bool,
    /// Where backfill tasks read exports from.
    pub exports: weir_aws::export::Exports,
}

/// Used when the runtime gives no deadline (a zero deadline in local tools).
const DEFAULT_TIME: Duration = Duration::from_secs(60);

/// Handles one batch. Records neither published, filtered nor dead-lettered come back in
/// `batchItemFailures`, lowest sequence number first.
pub async fn handle(
    function: &Function,
    event: LambdaEvent<StreamBatch>,
) -> Result<DynamoDbEventResponse, lambda_runtime::Error> {
    let deadline = deadline_of(event.context.deadline);
    let span = tracing::info_span!("invocation", requestId = %event.context.request_id);
    span.in_scope(|| {
        tracing::info!(
            records = event.payload.records.len(),
            deadline_ms = event.context.deadline,
            remaining_ms = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_millis() as u64,
            "batch received"
        )
    });
    let (pipeline, reload_failures) = {
        let mut loader = function.loader.lock().await;
        let pipeline = loader.current().instrument(span.clone()).await;
        (pipeline, loader.reload_failures())
    };
    let serving = pipeline.clone();
    let report = batch::run(
        pipeline,
        event.payload.records,
        Some(&function.publisher),
        DeadLetterSink::Queue(&function.dead_letters),
        deadline,
    )
    .instrument(span.clone())
    .await?;
    let _entered = span.enter();
    let counts = report.counts();
    let metrics = InvocationMetrics {
        counts,
        put_events_calls: report.put_events_calls,
        put_events_retries: report.put_events_retry_calls,
        plugin_ms: report.plugin_time.as_secs_f64() * 1000.0,
        reload_failures,
        tenants: report.counts_by_tenant().into_iter().collect(),
    }
    // A record names any tenant it likes: only the manifest's become dimension values.
    .by_manifest_tenants(serving.manifest());
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for doc in metrics.emf(&function.function_name, now_ms, function.tenant_metrics) {
        println!("{doc}");
    }
    tracing::info!(
        records = counts.records,
        published = counts.published,
        filtered = counts.filtered,
        coalesced = counts.coalesced,
        dead_lettered = counts.dead_lettered,
        retried = counts.retried,
        "batch done"
    );
    log_dead_letters_and_retries(&report);
    let mut failures = Vec::new();
    for seq in report.retry_sequence_numbers() {
        let Some(seq) = seq else {
            // Lambda fails the whole batch on an empty identifier; say so plainly instead.
            return Err("a record with no readable SequenceNumber could not be published or dead-lettered; failing the batch so Lambda retries it".into());
        };
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(seq);
        failures.push(failure);
    }
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failures;
    Ok(response)
}

/// Handles any invocation: a stream batch (answered as [`handle`] does) or a backfill task
/// (answered with its [`TaskReport`]: the counts so far, and the task that continues it if
/// the invocation's time ran out first).
pub async fn handle_invocation(
    function: &Function,
    event: LambdaEvent<Invocation>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let (payload, context) = event.into_parts();
    match payload {
        Invocation::Stream(batch) => {
            let response = handle(function, LambdaEvent::new(batch, context)).await?;
            Ok(serde_json::to_value(response)?)
        }
        Invocation::Backfill { task } => {
            let span = tracing::info_span!("invocation", requestId = %context.request_id);
            let report = backfill_task::run(function, task, deadline_of(context.deadline))
                .instrument(span)
                .await?;
            Ok(serde_json::to_value(report)?)
        }
    }
}

/// Deadlines below this (September 2001 in epoch milliseconds) are not timestamps.
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// The invocation's deadline (epoch milliseconds) as an `Instant`. Lambda sends a
/// timestamp; some local emulators (cargo-lambda's among them) send the time allowed
/// instead, which a value far in the past gives away.
pub fn deadline_of(deadline_ms: u64) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    if deadline_ms == 0 {
        return now + DEFAULT_TIME;
    }
    if deadline_ms < EPOCH_MS_FLOOR {
        return now + Duration::from_millis(deadline_ms);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

impl Function {
    /// Builds the function from its environment: `WEIR_MANIFEST` (a file or `s3://` URL),
    /// the standard AWS SDK configuration, `AWS_LAMBDA_FUNCTION_NAME`,
    /// `WEIR_DEAD_LETTER_KEY` and `WEIR_DEAD_LETTER_BUCKET` (or the manifest's
    /// `dead_letter_key` and `dead_letter_bucket`), and optionally `WEIR_RELOAD_SECS`
    /// (default 60), `WEIR_TENANT_METRICS=1` and `WEIR_PUBLISH_CONCURRENCY`. Fails loudly
    /// on a missing bus, dead-letter queue, key or bucket: a function that cannot keep its
    /// promises must not start.
    pub async fn from_env() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let manifest = std::env::var("WEIR_MANIFEST")
            .context("WEIR_MANIFEST must name the manifest (a file or s3://bucket/key)")?;
        let location = weir_core::location::Location::parse(&manifest)?;
        let interval = match std::env::var("WEIR_RELOAD_SECS") {
            Ok(v) => Duration::from_secs(
                v.parse::<u64>()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .with_context(|| {
                        format!(
                            "WEIR_RELOAD_SECS={:?} must be a whole number of seconds from 1 to 86400",
                            weir_core::text::one_line(&v)
                        )
                    })?,
            ),
            Err(_) => weir_runtime::loader::DEFAULT_INTERVAL,
        };
        let sdk = weir_aws::client::sdk_config().await;
        // WEIR_FUEL=1 counts instructions, so `limits.fuel` is enforced (at some cost per
        // call, and without using .cwasm files: precompiled code is for the engine without).
        // The instances kept warm are sized from the memory Lambda gives the function.
        let memory_mb = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|mb| weir_core::pipeline::FUNCTION_MEMORY_MB.contains(mb))
            .unwrap_or(weir_core::pipeline::DEFAULT_FUNCTION_MEMORY_MB);
        let engine = Arc::new(
            weir_runtime::plugin::PluginEngine::with_default_cache(
                std::env::var("WEIR_FUEL").is_ok_and(|v| v == "1"),
            )?
            .with_warm_budget(weir_core::pipeline::WarmBudget::for_memory_mb(memory_mb)),
        );
        let store = weir_aws::store::ObjectStore::with_s3(weir_aws::client::s3(&sdk));
        let loader = Loader::load_lazy(store, engine, location, interval)
            .await
            .with_context(|| format!("{manifest}: cannot load"))?;
        let (bus, queue_url, key_secret, bucket) = {
            let m = loader.manifest();
            (
                m.event_bus.clone(),
                m.dead_letter_queue.clone(),
                m.dead_letter_key.clone(),
                m.dead_letter_bucket.clone(),
            )
        };
        let queue_url = queue_url.with_context(|| {
            format!("{manifest}: dead_letter_queue must be set for the Lambda function")
        })?;
        // Both read once, here: the environment (set by the template) wins over the manifest.
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let key_secret = from_env("WEIR_DEAD_LETTER_KEY").or(key_secret).with_context(|| {
            format!("{manifest}: the function signs its dead letters, so redrive takes only letters weir wrote: set WEIR_DEAD_LETTER_KEY (or dead_letter_key) to the Secrets Manager secret holding the key")
        })?;
        let bucket = from_env("WEIR_DEAD_LETTER_BUCKET").or(bucket).with_context(|| {
            format!("{manifest}: dead_letter_bucket (or WEIR_DEAD_LETTER_BUCKET) must be set for the Lambda function: a dead letter larger than the queue takes is kept there, instead of blocking its shard")
        })?;
        if !weir_core::manifest::is_bucket_name(&bucket) {
            anyhow::bail!("WEIR_DEAD_LETTER_BUCKET={bucket:?} is not an S3 bucket name");
        }
        let key = weir_aws::dead_letter::LetterKey::read(&sdk, &key_secret).await?;
        let mut publish = weir_aws::publish::PublishConfig::default();
        if let Ok(n) = std::env::var("WEIR_PUBLISH_CONCURRENCY") {
            publish.max_concurrency = n
                .parse::<usize>()
                .ok()
                .filter(|c| (1..=64).contains(c))
                .with_context(|| {
                    format!(
                        "WEIR_PUBLISH_CONCURRENCY={:?} must be a whole number from 1 to 64",
                        weir_core::text::one_line(&n)
                    )
                })?;
        }
        let publisher = Publisher::new(weir_aws::client::eventbridge(&sdk), publish);
        let arn = publisher.check_bus(&bus).await?;
        tracing::info!(bus = %bus, arn = %arn, dead_letter_queue = %queue_url, dead_letter_bucket = %bucket, "weir ready");
        let dead_letters = DeadLetterQueue::new(
            weir_aws::client::sqs_for_dead_letters(&sdk),
            queue_url,
            weir_aws::dead_letter::QueueConfig::default(),
        )
        .with_key(key)
        .with_overflow(weir_aws::dead_letter::Overflow::new(
            weir_aws::client::s3(&sdk),
            bucket,
        ));
        Ok(Function {
            loader: tokio::sync::Mutex::new(loader),
            publisher,
            dead_letters,
            function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|_| "weir".into()),
            tenant_metrics: std::env::var("WEIR_TENANT_METRICS")
                .is_ok_and(|v| v == "1" || v == "true"),
            exports: weir_aws::export::Exports::new(&sdk),
        })
    }
}

/// Logs each dead letter the batch kept (tenant, plugin, kind, sequence number and the
/// reason's first line, all escaped; never the record's values, which stay in the queue),
/// and, when records are left for Lambda to deliver again, one warning naming their
/// tenants, their destinations (the detail types of their entries, or the plugin when
/// they have none) and the lowest sequence number left, where Lambda resumes.
fn log_dead_letters_and_retries(report: &batch::BatchReport) {
    let escaped = |t: &str| weir_core::text::one_line(t).into_owned();
    let sequence_number = |record: usize| {
        report
            .sequence_numbers
            .get(record)
            .and_then(|s| s.as_deref())
            .map_or_else(|| "(unreadable)".to_owned(), escaped)
    };
    for note in &report.dead_letters {
        tracing::warn!(
            tenant = note.tenant.as_deref().unwrap_or("(none)"),
            plugin = note.plugin.as_deref().unwrap_or("(none)"),
            kind = note.kind.as_str(),
            sequence_number = %sequence_number(note.record),
            "dead-lettered: {}",
            note.reason
        );
    }
    let retried: Vec<usize> = report
        .verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v, batch::Verdict::Retry { .. }))
        .map(|(i, _)| i)
        .collect();
    if retried.is_empty() {
        return;
    }
    let mut tenants = std::collections::BTreeSet::new();
    let mut destinations = std::collections::BTreeSet::new();
    let mut reasons = std::collections::BTreeSet::new();
    for &record in &retried {
        tenants.insert(
            report
                .tenants
                .get(record)
                .and_then(|t| t.as_deref())
                .map_or_else(|| "(none)".to_owned(), escaped),
        );
        if let Some(batch::Verdict::Retry { reason }) = report.verdicts.get(record) {
            reasons.insert(escaped(reason.lines().next().unwrap_or_default()));
        }
        for (entry, _) in report
            .entries
            .iter()
            .zip(&report.entry_records)
            .filter(|(_, owner)| **owner == record)
        {
            destinations.insert(escaped(&entry.detail_type));
        }
    }
    if destinations.is_empty() {
        // No entries (a dead letter that could not be kept): the plugin is what is known.
        destinations.extend(
            report
                .dead_letters
                .iter()
                .filter(|n| retried.contains(&n.record))
                .filter_map(|n| n.plugin.clone()),
        );
    }
    let lowest = match report.retry_sequence_numbers().first() {
        Some(Some(seq)) => escaped(seq),
        Some(None) => "(unreadable: the whole batch is retried)".to_owned(),
        None => "(none)".to_owned(),
    };
    let join =
        |set: std::collections::BTreeSet<String>| set.into_iter().collect::<Vec<_>>().join(", ");
    tracing::warn!(
        records = retried.len(),
        tenants = %join(tenants),
        destinations = %join(destinations),
        lowest_sequence_number = %lowest,
        reasons = %join(reasons),
        "records left for Lambda to deliver again (PutEvents still failing when the invocation's time ran out, or a dead letter not kept); it resumes at the lowest sequence number"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::batch::{BatchReport, DeadLetterNote, Verdict};
    use weir_core::model::DeadLetterKind;

    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut lines) = self.0.lock() {
                lines.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The JSON log lines (the function's format) `log` writes.
    fn logged(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let bytes = bytes.clone();
            move || Captured(bytes.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(writer)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = bytes.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    }

    fn entry(detail_type: &str) -> weir_core::model::Entry {
        weir_core::model::Entry {
            source: "s".into(),
            detail_type: detail_type.into(),
            detail: "{}".into(),
            event_bus_name: "b".into(),
            resources: Vec::new(),
            plugin: Arc::new(weir_core::model::PluginRef {
                name: "salesforce-account".into(),
                sha256: String::new(),
            }),
            coalesce: None,
        }
    }

    #[test]
    fn each_dead_letter_and_the_retry_warning_name_tenant_destination_and_sequence_number() {
        let report = BatchReport {
            verdicts: vec![
                Verdict::DeadLettered {
                    kind: DeadLetterKind::PluginError,
                },
                Verdict::Retry {
                    reason: "ThrottlingException: slow down".into(),
                },
                Verdict::Retry {
                    reason: "ThrottlingException: slow down".into(),
                },
                Verdict::Published,
            ],
            entries: vec![entry("account.upsert"), entry("order.created"), entry("x")],
            entry_records: vec![1, 2, 3],
            sequence_numbers: vec![
                Some("900".into()),
                Some("1000".into()),
                Some("950".into()),
                Some("1100".into()),
            ],
            tenants: vec![
                Some("evil\ntenant".into()),
                Some("acme".into()),
                Some("globex".into()),
                Some("initech".into()),
            ],
            dead_letters: vec![DeadLetterNote {
                record: 0,
                tenant: Some(weir_core::text::one_line("evil\ntenant").into_owned()),
                plugin: Some("mapping".into()),
                kind: DeadLetterKind::PluginError,
                reason: "plugin said: bad email".into(),
            }],
            entries_published: 1,
            put_events_calls: 3,
            put_events_retry_calls: 2,
            dead_letters_sent: 1,
            plugin_time: Duration::ZERO,
            calls: vec![Vec::new(); 4],
        };
        let lines = logged(|| log_dead_letters_and_retries(&report));
        assert_eq!(lines.len(), 2, "{lines:?}");
        let dead = &lines[0];
        assert_eq!(dead["tenant"], "evil\\ntenant", "escaped: {dead}");
        assert_eq!(dead["plugin"], "mapping");
        assert_eq!(dead["kind"], DeadLetterKind::PluginError.as_str());
        assert_eq!(dead["sequence_number"], "900");
        assert_eq!(dead["message"], "dead-lettered: plugin said: bad email");
        let retry = &lines[1];
        assert_eq!(retry["level"], "WARN");
        assert_eq!(retry["records"], 2);
        assert_eq!(retry["tenants"], "acme, globex");
        assert_eq!(retry["destinations"], "account.upsert, order.created");
        assert_eq!(retry["lowest_sequence_number"], "950");
        assert!(
            retry["message"]
                .as_str()
                .is_some_and(|m| m.contains("still failing")),
            "{retry}"
        );
    }
}
