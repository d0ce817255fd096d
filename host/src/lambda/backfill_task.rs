//! A backfill task: one data file of a DynamoDB export to S3, sent by the template's Step
//! Functions Distributed Map (one map item per data file) as `{"weirBackfill": {...}}`.
//!
//! A paced file can take longer than a Lambda invocation may run (a 10/s destination needs
//! 100 s per 1,000 entries), so a task works until [`RESERVE`] before its deadline and then
//! answers with `done: false` and `next`, the same task from the first item not done,
//! carrying the counts so far; the state machine invokes `next` until `done`. Every item
//! is published, filtered or dead-lettered once per run; a task whose first chunk cannot
//! be published in time fails, and Step Functions retries it with the same event ids,
//! which receivers de-duplicate.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Function;
use weir_aws::dead_letter::DeadLetterSink;
use weir_core::backfill::{
    BackfillRun, ChunkDone, ChunkPublisher, ItemSource, Pace, PacedError, PacedLoop, Stop,
    checked_rate,
};
use weir_core::batch::{self, Counts};

/// Time kept back at the end of an invocation: a chunk may take that long to publish
/// under throttling before the invocation must answer (the template's 60 s timeout leaves
/// 45 s of work per invocation).
pub const RESERVE: Duration = Duration::from_secs(15);

/// Records per pipeline run when unpaced: the deadline is looked at between chunks.
const UNPACED_CHUNK: usize = 500;

/// One data file of an export, from item `from` on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackfillTask {
    /// The export: `s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID`.
    pub export: String,
    /// The data file, as `manifest-files.json` names it.
    pub data_file_s3_key: String,
    /// The run's name: event ids derive from it, so a retried task repeats its ids.
    pub run: String,
    /// The table's key attributes.
    pub keys: Vec<String>,
    /// Items of the file already done by earlier invocations.
    #[serde(default)]
    pub from: u64,
    /// Entries per second this task may publish at most (the state machine gives each of
    /// its concurrent tasks its share of the slowest destination's rate limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// The counts of earlier invocations of this file.
    #[serde(default)]
    pub counts: Counts,
}

/// What a task invocation answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskReport {
    /// The data file.
    pub data_file_s3_key: String,
    /// Items of the file read so far: all of them once `done` (the file is read as a
    /// stream, never whole).
    pub items: usize,
    /// The counts over this and earlier invocations of the file.
    #[serde(flatten)]
    pub counts: Counts,
    /// Whether every item of the file is done.
    pub done: bool,
    /// When not done: the invocation that continues it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<Continuation>,
}

/// The payload of the invocation that continues a task.
#[derive(Debug, Clone, Serialize)]
pub struct Continuation {
    /// The task from its first item not done.
    #[serde(rename = "weirBackfill")]
    pub task: BackfillTask,
}

/// A data file's items, as the paced loop reads them.
struct FileItems(weir_aws::export::DataFileItems);

impl ItemSource for FileItems {
    type Error = anyhow::Error;

    async fn next_item(&mut self) -> Option<anyhow::Result<String>> {
        self.0.next().await
    }

    async fn at_end(&mut self) -> bool {
        self.0.at_end().await
    }
}

/// A task's chunks: published to the bus, dead letters to weir's queue, all by `deadline`.
struct TaskPublisher<'a> {
    function: &'a Function,
    pipeline: std::sync::Arc<weir_runtime::Pipeline>,
    deadline: tokio::time::Instant,
}

impl ChunkPublisher for TaskPublisher<'_> {
    type Error = batch::BatchError;

    async fn publish(&mut self, records: Vec<Box<RawValue>>) -> Result<ChunkDone, Self::Error> {
        let report = batch::run(
            self.pipeline.clone(),
            records,
            Some(&self.function.publisher),
            DeadLetterSink::Queue(&self.function.dead_letters),
            self.deadline,
        )
        .await?;
        Ok(ChunkDone {
            counts: report.counts(),
            entries_made: report.entries.len(),
            halt: false,
        })
    }
}

/// Runs `task` until its file is done or its time is up.
pub(super) async fn run(
    function: &Function,
    task: BackfillTask,
    deadline: tokio::time::Instant,
) -> Result<TaskReport, lambda_runtime::Error> {
    // A bad rate fails the task, naming it (it would otherwise be a wait no clock holds).
    let rate = task
        .rate_per_second
        .map(checked_rate)
        .transpose()
        .map_err(|e| format!("weirBackfill.ratePerSecond: {e}"))?;
    let export = function.exports.open(&task.export)?;
    let summary = export.summary().await?;
    let run = BackfillRun::new(&summary.table_arn, &task.run, task.keys.clone())?;
    let file = weir_aws::export::DataFile {
        data_file_s3_key: task.data_file_s3_key.clone(),
        item_count: None,
    };
    let mut items = FileItems(export.items(&file).await?);
    let pipeline = {
        let mut loader = function.loader.lock().await;
        loader.current().await
    };
    // The items earlier invocations did: read again (the file is a stream) and passed over.
    let mut from = 0u64;
    while from < task.from {
        match items.next_item().await {
            Some(item) => {
                item?;
                from += 1;
            }
            None => break,
        }
    }
    tracing::info!(
        file = %task.data_file_s3_key,
        from,
        rate,
        "backfill task received"
    );
    let mut pace = Pace::new(rate);
    let progress = PacedLoop {
        run: &run,
        pace: &mut pace,
        first_position: from,
        max_chunk: UNPACED_CHUNK,
        stop_at: Some(deadline.checked_sub(RESERVE).unwrap_or(deadline)),
    }
    .run(
        &mut items,
        &mut TaskPublisher {
            function,
            pipeline,
            deadline,
        },
    )
    .await
    .map_err(|e| -> lambda_runtime::Error {
        let file = &task.data_file_s3_key;
        match e {
            PacedError::Read(e) => format!("{file:?}: {e:#}").into(),
            PacedError::Publish(e) => Box::new(e),
            e @ PacedError::Item { .. } => format!("{file:?}: {e}").into(),
        }
    })?;
    let at = from.saturating_add(progress.done);
    let mut counts = task.counts;
    counts.add(&progress.counts);
    if let Stop::Unpublished(c) = progress.stop
        && progress.done == 0
    {
        return Err(format!(
            "{:?}: {} of {} records not published in time; retry the task (its event ids repeat)",
            task.data_file_s3_key, c.retried, c.records
        )
        .into());
    }
    let done = progress.stop == Stop::End;
    tracing::info!(
        file = %task.data_file_s3_key,
        done,
        at,
        records = counts.records,
        published = counts.published,
        filtered = counts.filtered,
        dead_lettered = counts.dead_lettered,
        "backfill task done"
    );
    // Not done: the next invocation goes on from the first item not done (a chunk not
    // published in time is done again, with the same ids).
    let next = (!done).then(|| Continuation {
        task: BackfillTask {
            from: at,
            counts,
            ..task.clone()
        },
    });
    Ok(report_of(task, at, counts, next))
}

/// The answer for `task` with `at` items of its file read and done.
fn report_of(
    task: BackfillTask,
    at: u64,
    counts: Counts,
    next: Option<Continuation>,
) -> TaskReport {
    TaskReport {
        data_file_s3_key: task.data_file_s3_key,
        items: usize::try_from(at).unwrap_or(usize::MAX),
        counts,
        done: next.is_none(),
        next,
    }
}
