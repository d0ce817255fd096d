//! One batch end to end, for the Lambda and for `weir run --publish`: transform every
//! record, publish the entries, keep the dead letters, and give each record its verdict.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::model::{Blame, DeadLetter, DeadLetterKind, Entry, PluginRef, Reason};
use crate::pipeline::{Outcome, Pipeline, PluginCall};
use crate::sink::{DeadLetterStore, EntryResult, EventSink};
use crate::transform::Slot;

/// The final state of one record. Exactly one per record, always.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every one of its entries was accepted by EventBridge.
    Published,
    /// No route, no tenant, or no events: nothing to send.
    Filtered,
    /// Every one of its entries was superseded by a later change of the same item in the
    /// batch, for a destination its tenant coalesces: nothing to send.
    Coalesced,
    /// Kept whole in the dead-letter queue, with the reason.
    DeadLettered {
        /// The reason's kind.
        kind: DeadLetterKind,
    },
    /// Neither published nor dead-lettered in time: Lambda must deliver it again.
    Retry {
        /// Why, for the log.
        reason: String,
    },
}

/// A batch's verdicts, in record order, and what it took to reach them.
#[derive(Debug)]
pub struct BatchReport {
    /// One verdict per record, in record order.
    pub verdicts: Vec<Verdict>,
    /// Every entry the plugins produced, in record order.
    pub entries: Vec<Entry>,
    /// Each record's sequence number, where it could be read.
    pub sequence_numbers: Vec<Option<String>>,
    /// Each record's tenant, where it had one.
    pub tenants: Vec<Option<String>>,
    /// Entries EventBridge accepted.
    pub entries_published: usize,
    /// PutEvents calls made, re-sends included.
    pub put_events_calls: usize,
    /// PutEvents calls that re-sent entries after a failure.
    pub put_events_retry_calls: usize,
    /// Dead letters the queue (or the caller) kept.
    pub dead_letters_sent: usize,
    /// Time spent running the records through the pipeline (decode, plugins, validation).
    pub plugin_time: Duration,
    /// Each record's plugin calls and what they cost (the per-record report).
    pub calls: Vec<Vec<PluginCall>>,
    /// For each of `entries`, the record (its place in the batch) it came from.
    pub entry_records: Vec<usize>,
    /// What the log may say of each dead letter kept: never the record's values.
    pub dead_letters: Vec<DeadLetterNote>,
}

/// A dead letter as the function's log names it: whose, which plugin, what kind, where in
/// the stream, and the reason's first line, escaped ([`crate::text::one_line`]). The
/// record's values stay in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterNote {
    /// The record's place in the batch.
    pub record: usize,
    /// The record's tenant, escaped, where it had one.
    pub tenant: Option<String>,
    /// The plugin that handled it, where one did.
    pub plugin: Option<String>,
    /// The reason's kind.
    pub kind: DeadLetterKind,
    /// The reason's first line, escaped and cut to [`NOTE_REASON_CHARS`].
    pub reason: String,
}

/// The most of a dead letter's reason the log repeats (the whole reason is in the letter).
pub const NOTE_REASON_CHARS: usize = 300;

impl DeadLetterNote {
    fn new(record: usize, letter: &DeadLetter) -> Self {
        let escaped = |t: &str| crate::text::one_line(t).into_owned();
        let first_line = letter.reason.message.lines().next().unwrap_or_default();
        let mut reason: String = first_line.chars().take(NOTE_REASON_CHARS).collect();
        if reason.len() < first_line.len() {
            reason.push('…');
        }
        DeadLetterNote {
            record,
            tenant: letter.tenant.as_deref().map(escaped),
            plugin: letter.plugin.as_ref().map(|p| escaped(&p.name)),
            kind: letter.reason.kind,
            reason: escaped(&reason),
        }
    }
}

impl BatchReport {
    /// Records to hand back to Lambda, lowest sequence number first. `None` inside means
    /// a record with no readable sequence number must be retried: fail the whole batch.
    pub fn retry_sequence_numbers(&self) -> Vec<Option<String>> {
        let mut seqs: Vec<Option<String>> = self
            .verdicts
            .iter()
            .zip(&self.sequence_numbers)
            .filter(|(v, _)| matches!(v, Verdict::Retry { .. }))
            .map(|(_, s)| s.clone())
            .collect();
        seqs.sort_by(|a, b| match (a, b) {
            (Some(a), Some(b)) => compare_sequence_numbers(a, b),
            (None, None) => Ordering::Equal,
            (None, _) => Ordering::Less,
            (_, None) => Ordering::Greater,
        });
        seqs
    }

    /// Counts by verdict, and the entries EventBridge accepted.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for v in &self.verdicts {
            c.count(v);
        }
        c.entries = self.entries_published;
        c
    }

    /// The records' counts per tenant (records without a tenant are left out; `entries`
    /// is not split by tenant and stays 0).
    pub fn counts_by_tenant(&self) -> BTreeMap<String, Counts> {
        let mut by: BTreeMap<String, Counts> = BTreeMap::new();
        for (v, t) in self.verdicts.iter().zip(&self.tenants) {
            let Some(t) = t else { continue };
            by.entry(t.clone()).or_default().count(v);
        }
        by
    }
}

/// A run's counts: each record by its verdict (the five always add up to `records`), and
/// the entries published. The one count type of the batch, the backfill loop and task,
/// the function's metrics and golden cases' `counts.json`; serialized with those files'
/// and the backfill task's field names (`deadLettered`). A count that is zero is left out
/// where it cannot be other than zero: `retried` (a case or a task counts only records
/// done) and `entries` (a case compares its entries in `entries.jsonl`, not here).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Counts {
    /// Records counted.
    pub records: usize,
    /// Records all of whose entries EventBridge accepted.
    pub published: usize,
    /// Records with nothing to send.
    pub filtered: usize,
    /// Records whose every entry a later change of the same item superseded.
    pub coalesced: usize,
    /// Records kept as dead letters.
    pub dead_lettered: usize,
    /// Records left to be delivered again (Lambda's retry, a backfill's resume).
    #[serde(skip_serializing_if = "is_zero")]
    pub retried: usize,
    /// Entries EventBridge accepted (or, not publishing, the entries printed).
    #[serde(skip_serializing_if = "is_zero")]
    pub entries: usize,
}

/// Whether a count is zero (serde's test for leaving it out).
fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Counts {
    /// Counts one record with verdict `v`.
    pub fn count(&mut self, v: &Verdict) {
        self.records = self.records.saturating_add(1);
        let slot = match v {
            Verdict::Published => &mut self.published,
            Verdict::Filtered => &mut self.filtered,
            Verdict::Coalesced => &mut self.coalesced,
            Verdict::DeadLettered { .. } => &mut self.dead_lettered,
            Verdict::Retry { .. } => &mut self.retried,
        };
        *slot = slot.saturating_add(1);
    }

    /// Adds `other`'s counts to these (a run's batches, chunks or tenants into one total).
    /// Saturating: counts may come from outside (a task's event carries any numbers).
    pub fn add(&mut self, other: &Counts) {
        self.records = self.records.saturating_add(other.records);
        self.published = self.published.saturating_add(other.published);
        self.filtered = self.filtered.saturating_add(other.filtered);
        self.coalesced = self.coalesced.saturating_add(other.coalesced);
        self.dead_lettered = self.dead_lettered.saturating_add(other.dead_lettered);
        self.retried = self.retried.saturating_add(other.retried);
        self.entries = self.entries.saturating_add(other.entries);
    }
}

/// Orders DynamoDB sequence numbers: decimal strings of up to 40 digits, which can
/// overflow u128. Shorter is smaller; equal lengths compare as text.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Why [`run`] reached no verdicts: the batch is retried whole.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The thread running the plugins panicked or was cancelled.
    #[error("the batch's plugin thread did not finish")]
    Worker(#[source] tokio::task::JoinError),
}

/// Runs a batch to its verdicts. Plugins run on a blocking thread; publishing and dead
/// letters are bounded by `deadline`. Every record ends with exactly one verdict.
pub async fn run<S: Slot>(
    pipeline: Arc<Pipeline<S>>,
    records: Vec<Box<RawValue>>,
    events: impl EventSink,
    mut dead_letters: impl DeadLetterStore,
    deadline: Instant,
) -> Result<BatchReport, BatchError> {
    let started = std::time::Instant::now();
    let span = tracing::Span::current();
    pipeline.load_needed(&records).await;
    let (records, outcomes) = tokio::task::spawn_blocking(move || {
        let _invocation = span.enter();
        let mut batch = pipeline.batch();
        let outcomes: Vec<Processed> = records
            .iter()
            .map(|raw| {
                let (outcome, seq) = batch.process_with_sequence_number(raw);
                let tenant = outcome.tenant().map(str::to_owned);
                (outcome, seq, tenant, batch.take_calls())
            })
            .collect();
        (records, outcomes)
    })
    .await
    .map_err(BatchError::Worker)?;
    let plugin_time = started.elapsed();

    let mut verdicts: Vec<Option<Verdict>> = vec![None; records.len()];
    let mut tenants = Vec::with_capacity(records.len());
    let mut sequence_numbers = Vec::with_capacity(records.len());
    let mut entries: Vec<Entry> = Vec::new();
    let mut owners: Vec<usize> = Vec::new();
    let mut letters: Vec<(usize, DeadLetter)> = Vec::new();
    let mut calls = Vec::with_capacity(records.len());
    let last = last_changes(&outcomes);
    for (i, (outcome, seq, tenant, record_calls)) in outcomes.into_iter().enumerate() {
        tenants.push(tenant);
        sequence_numbers.push(seq);
        calls.push(record_calls);
        match outcome {
            Outcome::Publish {
                entries: mut es, ..
            } => {
                if !last.is_empty() {
                    es.retain(|e| e.coalesce.as_ref().is_none_or(|k| last.get(k) == Some(&i)));
                    if es.is_empty() {
                        verdicts[i] = Some(Verdict::Coalesced);
                        continue;
                    }
                }
                owners.extend(std::iter::repeat_n(i, es.len()));
                entries.extend(es);
            }
            Outcome::Filtered { .. } => verdicts[i] = Some(Verdict::Filtered),
            Outcome::DeadLetter(letter) => letters.push((i, *letter)),
            Outcome::Retry { reason, .. } => verdicts[i] = Some(Verdict::Retry { reason }),
        }
    }

    let published = events.send(&entries, deadline).await;
    // A record is published when all its entries are; refused entries dead-letter it,
    // entries still failing when time ran out make it a retry.
    let mut refused: BTreeMap<usize, (Vec<String>, PluginRef)> = BTreeMap::new();
    let mut unpublished: BTreeMap<usize, String> = BTreeMap::new();
    for ((result, &owner), entry) in published.results.iter().zip(&owners).zip(&entries) {
        match result {
            EntryResult::Accepted => {}
            EntryResult::Rejected { code, message } => refused
                .entry(owner)
                .or_insert_with(|| (Vec::new(), entry.plugin.as_ref().clone()))
                .0
                .push(format!("{code}: {message}")),
            EntryResult::Unpublished { reason } => {
                unpublished.entry(owner).or_insert_with(|| reason.clone());
            }
        }
    }
    for &owner in &owners {
        if verdicts[owner].is_some() {
            continue;
        }
        if let Some((why, plugin)) = refused.get(&owner) {
            let mut letter = DeadLetter::new(
                &records[owner],
                Reason {
                    kind: DeadLetterKind::PutEvents,
                    message: format!(
                        "EventBridge refused the record's entries: {}",
                        why.join("; ")
                    ),
                    blame: Blame::Plugin,
                },
            );
            letter.tenant = tenants[owner].clone();
            letter.plugin = Some(plugin.clone());
            letters.push((owner, letter));
            verdicts[owner] = Some(Verdict::Retry {
                reason: "dead letter pending".into(),
            });
        } else if let Some(reason) = unpublished.get(&owner) {
            verdicts[owner] = Some(Verdict::Retry {
                reason: reason.clone(),
            });
        } else {
            verdicts[owner] = Some(Verdict::Published);
        }
    }

    let mut dead_letters_sent = 0;
    let mut notes = Vec::new();
    if !letters.is_empty() {
        let only: Vec<DeadLetter> = letters.iter().map(|(_, l)| l.clone()).collect();
        let kept = dead_letters.keep(&only, deadline).await;
        for ((i, letter), kept) in letters.iter().zip(kept) {
            verdicts[*i] = Some(match kept {
                Ok(()) => {
                    dead_letters_sent += 1;
                    notes.push(DeadLetterNote::new(*i, letter));
                    Verdict::DeadLettered {
                        kind: letter.reason.kind,
                    }
                }
                Err(why) => {
                    tracing::error!(
                        kind = letter.reason.kind.as_str(),
                        "a dead letter could not be kept, so its record will be retried: {why}"
                    );
                    Verdict::Retry {
                        reason: format!("dead letter not kept: {why}"),
                    }
                }
            });
        }
    }

    let verdicts = verdicts
        .into_iter()
        .map(|v| {
            v.unwrap_or(Verdict::Retry {
                reason: "no verdict reached".into(),
            })
        })
        .collect();
    Ok(BatchReport {
        verdicts,
        sequence_numbers,
        tenants,
        entries,
        entries_published: published
            .results
            .iter()
            .filter(|r| matches!(r, EntryResult::Accepted))
            .count(),
        put_events_calls: published.calls,
        put_events_retry_calls: published.retry_calls,
        dead_letters_sent,
        plugin_time,
        calls,
        entry_records: owners,
        dead_letters: notes,
    })
}

/// For each coalescing key (table, item, destination) in the batch, the last record with
/// an entry for it: only that record's entries for the key are published. "Last" is by
/// sequence number (a redrive's records come in any order), then by place in the batch.
/// A change that was filtered, dead-lettered or left for retry has no entries, so it
/// supersedes nothing and the item's last change that has entries is published.
fn last_changes(outcomes: &[Processed]) -> std::collections::HashMap<String, usize> {
    let mut last: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, (outcome, seq, ..)) in outcomes.iter().enumerate() {
        let Outcome::Publish { entries, .. } = outcome else {
            continue;
        };
        for key in entries.iter().filter_map(|e| e.coalesce.as_ref()) {
            let later = match last.get(key) {
                None => true,
                Some(&j) => match (seq, &outcomes[j].1) {
                    (Some(a), Some(b)) => compare_sequence_numbers(a, b) != Ordering::Less,
                    _ => true,
                },
            };
            if later {
                last.insert(key.clone(), i);
            }
        }
    }
    last
}

/// One record's outcome, sequence number, tenant and plugin calls.
type Processed = (Outcome, Option<String>, Option<String>, Vec<PluginCall>);

/// The per-record report `weir run --report` and `weir test --report` print: for each plugin
/// call, the instructions (fuel), linear memory and time it used, each beside its limit.
pub fn render_report(report: &BatchReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "| record | tenant | plugin | fuel (instructions) | memory | time |\n| --- | --- | --- | ---: | ---: | ---: |\n",
    );
    for ((calls, seq), tenant) in report
        .calls
        .iter()
        .zip(&report.sequence_numbers)
        .zip(&report.tenants)
    {
        for call in calls {
            let c = &call.cost;
            let fuel = match (c.fuel, c.limits.fuel) {
                (Some(used), Some(limit)) => format!("{used} of {limit}"),
                (Some(used), None) => format!("{used} (no limit set)"),
                (None, _) => "not counted".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {fuel} | {:.2} MiB of {} MiB | {:.3} ms of {} ms |",
                seq.as_deref().unwrap_or("?"),
                crate::text::one_line(tenant.as_deref().unwrap_or("-")),
                crate::text::one_line(&call.plugin),
                c.memory_bytes as f64 / (1024.0 * 1024.0),
                c.limits.memory_mib,
                c.elapsed.as_secs_f64() * 1000.0,
                c.limits.time_ms
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_and_write_the_field_names_of_cases_and_tasks() {
        // A golden case's counts.json line, as committed.
        let case = r#"{"records":8,"published":3,"filtered":0,"coalesced":5,"deadLettered":0}"#;
        let c: Counts = serde_json::from_str(case).expect("a case's counts");
        assert_eq!((c.records, c.coalesced, c.retried, c.entries), (8, 5, 0, 0));
        assert_eq!(serde_json::to_string(&c).expect("JSON"), case);
        // A backfill task's `counts`, as a Step Functions task carries it.
        let task = r#"{"records":400,"published":100,"filtered":300,"coalesced":0,"deadLettered":0,"entries":120}"#;
        let t: Counts = serde_json::from_str(task).expect("a task's counts");
        assert_eq!((t.records, t.entries), (400, 120));
        assert_eq!(serde_json::to_string(&t).expect("JSON"), task);
        // Fields left out read as zero; a record left for retry is written, never dropped.
        let empty: Counts = serde_json::from_str("{}").expect("no counts yet");
        assert_eq!(empty, Counts::default());
        let retried = Counts {
            records: 1,
            retried: 1,
            ..Counts::default()
        };
        let text = serde_json::to_string(&retried).expect("JSON");
        assert!(text.contains(r#""retried":1"#), "{text}");
    }

    #[test]
    fn counts_add_saturates_instead_of_overflowing() {
        // A task's event carries earlier counts, which may hold any number.
        let mut total: Counts =
            serde_json::from_str(&format!(r#"{{"records":{},"entries":1}}"#, usize::MAX))
                .expect("counts");
        total.add(&Counts {
            records: 2,
            published: 2,
            entries: usize::MAX,
            ..Counts::default()
        });
        assert_eq!(
            (total.records, total.published, total.entries),
            (usize::MAX, 2, usize::MAX)
        );
        let mut by_verdict = Counts::default();
        for v in [
            Verdict::Published,
            Verdict::Filtered,
            Verdict::Coalesced,
            Verdict::DeadLettered {
                kind: DeadLetterKind::PutEvents,
            },
            Verdict::Retry { reason: "r".into() },
        ] {
            by_verdict.count(&v);
        }
        assert_eq!(
            (
                by_verdict.records,
                by_verdict.published,
                by_verdict.filtered,
                by_verdict.coalesced,
                by_verdict.dead_lettered,
                by_verdict.retried
            ),
            (5, 1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn sequence_numbers_order_as_big_decimals() {
        let a = "9".repeat(39);
        let b = format!("1{}", "0".repeat(39));
        assert_eq!(compare_sequence_numbers(&a, &b), Ordering::Less);
        assert_eq!(compare_sequence_numbers("200", "1000"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("1000", "0999"), Ordering::Greater);
        assert_eq!(compare_sequence_numbers("42", "42"), Ordering::Equal);
    }
}
