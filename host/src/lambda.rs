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

use crate::reload::Loader;
use crate::telemetry::InvocationMetrics;
use weir_aws::dead_letter::DeadLetterQueue;
use weir_aws::dead_letter::DeadLetterSink;
use weir_aws::publish::Publisher;
use weir_core::batch;

mod backfill;
pub use backfill::{BackfillTask, Continuation, TaskCounts, TaskReport};

/// The time a backfill task keeps back before its deadline ([`backfill::RESERVE`]).
pub fn backfill_reserve() -> Duration {
    backfill::RESERVE
}

/// The event Lambda delivers for a DynamoDB stream, each record kept as the exact text
/// received. (weir reads records itself rather than through `aws_lambda_events`' typed
/// record, so a dead letter holds the original bytes, and a record the typed form cannot
/// parse fails alone instead of failing the whole batch.)
#[derive(Debug, Deserialize)]
pub struct StreamBatch {
    /// Each record's text, undecoded.
    #[serde(rename = "Records", default)]
    pub records: Vec<Box<RawValue>>,
}

/// What an invocation brings: a stream batch, or a backfill task.
#[derive(Debug, Deserialize)]
#[serde(from = "InvocationFields")]
pub enum Invocation {
    /// `{"weirBackfill": {...}}`.
    Backfill {
        /// The task.
        task: BackfillTask,
    },
    /// `{"Records": [...]}`.
    Stream(StreamBatch),
}

/// Both shapes' fields in one struct (an untagged enum would buffer the records, and a
/// record kept as raw text cannot be read back from serde's buffer).
#[derive(Deserialize)]
struct InvocationFields {
    #[serde(rename = "weirBackfill", default)]
    backfill: Option<BackfillTask>,
    #[serde(rename = "Records", default)]
    records: Vec<Box<RawValue>>,
}

impl From<InvocationFields> for Invocation {
    fn from(f: InvocationFields) -> Self {
        match f.backfill {
            Some(task) => Invocation::Backfill { task },
            None => Invocation::Stream(StreamBatch { records: f.records }),
        }
    }
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
        records: counts.records,
        published: counts.published,
        filtered: counts.filtered,
        coalesced: counts.coalesced,
        dead_lettered: counts.dead_lettered,
        retried: counts.retried,
        entries: report.entries_published,
        put_events_calls: report.put_events_calls,
        put_events_retries: report.put_events_retry_calls,
        plugin_ms: report.plugin_time.as_secs_f64() * 1000.0,
        reload_failures,
        tenants: report
            .counts_by_tenant()
            .into_iter()
            .map(|(t, c)| {
                (
                    t,
                    [
                        c.records,
                        c.published,
                        c.filtered,
                        c.coalesced,
                        c.dead_lettered,
                        c.retried,
                    ],
                )
            })
            .collect(),
    };
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
            let report = backfill::run(function, task, deadline_of(context.deadline))
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
    /// the standard AWS SDK configuration, `AWS_LAMBDA_FUNCTION_NAME`, and optionally
    /// `WEIR_RELOAD_SECS` (default 60), `WEIR_TENANT_METRICS=1` and
    /// `WEIR_PUBLISH_CONCURRENCY`. Fails loudly on a missing bus or dead-letter queue: a
    /// function that cannot keep its promises must not start.
    pub async fn from_env() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let manifest = std::env::var("WEIR_MANIFEST")
            .context("WEIR_MANIFEST must name the manifest (a file or s3://bucket/key)")?;
        let location = weir_aws::store::Location::parse(&manifest)?;
        let interval = match std::env::var("WEIR_RELOAD_SECS") {
            Ok(v) => Duration::from_secs(
                v.parse()
                    .with_context(|| format!("WEIR_RELOAD_SECS={v:?} is not a number"))?,
            ),
            Err(_) => crate::reload::DEFAULT_INTERVAL,
        };
        let sdk = weir_aws::aws::sdk_config().await;
        // WEIR_FUEL=1 counts instructions, so `limits.fuel` is enforced (at some cost per
        // call, and without using .cwasm files: precompiled code is for the engine without).
        let engine = Arc::new(weir_runtime::plugin::PluginEngine::with_default_cache(
            std::env::var("WEIR_FUEL").is_ok_and(|v| v == "1"),
        )?);
        let store = weir_aws::store::Store::with_s3(weir_aws::aws::s3(&sdk));
        let loader = Loader::load_lazy(store, engine, location, interval)
            .await
            .with_context(|| format!("{manifest}: cannot load"))?;
        let (bus, queue_url) = {
            let m = loader.manifest();
            (m.event_bus.clone(), m.dead_letter_queue.clone())
        };
        let queue_url = queue_url.with_context(|| {
            format!("{manifest}: dead_letter_queue must be set for the Lambda function")
        })?;
        let mut publish = weir_aws::publish::PublishConfig::default();
        if let Ok(n) = std::env::var("WEIR_PUBLISH_CONCURRENCY") {
            publish.max_concurrency = n
                .parse()
                .with_context(|| format!("WEIR_PUBLISH_CONCURRENCY={n:?} is not a number"))?;
        }
        let publisher = Publisher::new(weir_aws::aws::eventbridge(&sdk), publish);
        let arn = publisher.check_bus(&bus).await?;
        tracing::info!(bus = %bus, arn = %arn, dead_letter_queue = %queue_url, "weir ready");
        let dead_letters = DeadLetterQueue::new(
            weir_aws::aws::sqs_for_dead_letters(&sdk),
            queue_url,
            weir_aws::dead_letter::QueueConfig::default(),
        );
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
