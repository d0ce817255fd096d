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
use weir_core::backfill::{BackfillRun, Pace, checked_rate};
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
    pub counts: TaskCounts,
}

/// A task's counts: each of the file's items done so far is one of published, filtered,
/// coalesced or dead-lettered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCounts {
    /// Items done.
    pub records: usize,
    /// Items all of whose entries EventBridge accepted.
    pub published: usize,
    /// Items with nothing to send.
    pub filtered: usize,
    /// Items superseded by a later change of the same item (none in an export, which holds
    /// each item once).
    pub coalesced: usize,
    /// Items kept as dead letters in weir's queue.
    pub dead_lettered: usize,
    /// Entries published.
    pub entries: usize,
}

impl TaskCounts {
    /// Adds a chunk's counts (all its records done: none left for retry) and the entries
    /// it published; saturating, as the earlier counts come in the event, which may hold
    /// any number.
    fn add(&mut self, c: &Counts, entries: usize) {
        self.records = self.records.saturating_add(c.records);
        self.published = self.published.saturating_add(c.published);
        self.filtered = self.filtered.saturating_add(c.filtered);
        self.coalesced = self.coalesced.saturating_add(c.coalesced);
        self.dead_lettered = self.dead_lettered.saturating_add(c.dead_lettered);
        self.entries = self.entries.saturating_add(entries);
    }
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
    pub counts: TaskCounts,
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
    let mut items = export.items(&file).await?;
    let pipeline = {
        let mut loader = function.loader.lock().await;
        loader.current().await
    };
    // The items earlier invocations did: read again (the file is a stream) and passed over.
    let mut at = 0usize;
    while (at as u64) < task.from {
        match items.next().await {
            Some(item) => {
                item?;
                at += 1;
            }
            None => break,
        }
    }
    let from = at;
    tracing::info!(
        file = %task.data_file_s3_key,
        from,
        rate,
        "backfill task received"
    );
    let stop_at = deadline.checked_sub(RESERVE).unwrap_or(deadline);
    let mut pace = Pace::new(rate);
    let mut counts = task.counts;
    while !items.at_end().await {
        // At least one chunk per invocation, so a task always moves.
        if at > from && pace.due() >= stop_at {
            break;
        }
        pace.ready().await;
        let want = pace.chunk(UNPACED_CHUNK).min(UNPACED_CHUNK);
        let mut records = Vec::with_capacity(want);
        while records.len() < want {
            let Some(item) = items.next().await else {
                break;
            };
            let position = (at + records.len()) as u64;
            records.push(RawValue::from_string(run.record(&item?, position)?)?);
        }
        let n = records.len();
        let report = batch::run(
            pipeline.clone(),
            records,
            Some(&function.publisher),
            DeadLetterSink::Queue(&function.dead_letters),
            deadline,
        )
        .await?;
        pace.sent(report.entries.len());
        let c: Counts = report.counts();
        if c.retried > 0 {
            if at == from {
                return Err(format!(
                    "{:?}: {} of {} records not published in time; retry the task (its event ids repeat)",
                    task.data_file_s3_key, c.retried, c.records
                )
                .into());
            }
            // Not counted: the next invocation does this chunk again, with the same ids.
            let next = Continuation {
                task: BackfillTask {
                    from: at as u64,
                    counts,
                    ..task.clone()
                },
            };
            return Ok(report_of(task, at, counts, Some(next)));
        }
        counts.add(&c, report.entries_published);
        at += n;
    }
    let done = items.at_end().await;
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
    let next = (!done).then(|| Continuation {
        task: BackfillTask {
            from: at as u64,
            counts,
            ..task.clone()
        },
    });
    Ok(report_of(task, at, counts, next))
}

/// The answer for `task` with `at` items of its file read and done.
fn report_of(
    task: BackfillTask,
    at: usize,
    counts: TaskCounts,
    next: Option<Continuation>,
) -> TaskReport {
    TaskReport {
        data_file_s3_key: task.data_file_s3_key,
        items: at,
        counts,
        done: next.is_none(),
        next,
    }
}
