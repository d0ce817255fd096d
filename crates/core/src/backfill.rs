//! Items already in the table, as records the pipeline takes: the core of a backfill. An
//! item read by a Scan or from an export to S3 (DynamoDB's typed JSON, `{"name": {"S": …}}`)
//! becomes the text of a stream INSERT, so it is routed, transformed, validated, published
//! or dead-lettered exactly like a change from the stream, and a dead letter of it holds
//! the item and is redriven like any other.
//!
//! What marks it: its `eventSource` is [`BACKFILL_EVENT_SOURCE`] (a 0.2 plugin reads
//! `origin = backfill`, a 0.1 plugin sees an INSERT; the envelope's metadata says
//! `"origin": "backfill"`). Its `eventID` is derived from the table, the item's key and the
//! run, so a resumed or repeated run gives the same event ids and receivers de-duplicate.
//! Its sequence number is the item's position in the run, not a stream position.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::value::RawValue;
use sha2::Digest as _;

use crate::batch::Counts;
use crate::record::{BACKFILL_EVENT_SOURCE, table_from_arn, write_json_string};

/// Why an item cannot become a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackfillError {
    /// The table's ARN names no DynamoDB table.
    #[error("{0:?} is not a DynamoDB table ARN")]
    TableArn(String),
    /// The run was given no key attribute names (a table always has one or two).
    #[error("a backfill needs the table's key attribute names")]
    NoKeys,
    /// The item is not an object of attributes.
    #[error("the item is not an object of attributes: {0}")]
    NotAnItem(String),
    /// The item lacks one of the table's key attributes.
    #[error("the item has no key attribute {0:?}")]
    MissingKey(String),
    /// A pace that is not a number of entries per second weir can wait for.
    #[error(
        "{0} is not a rate weir paces at: give entries per second from {MIN_RATE} to {MAX_RATE}"
    )]
    Rate(String),
}

/// The slowest pace a backfill takes, in entries per second (one entry every 1,000 s):
/// slower rates would wait longer than any clock here counts.
pub const MIN_RATE: f64 = 0.001;
/// The fastest pace, in entries per second: beyond any EventBridge quota, so a faster one
/// is a typo, not a plan.
pub const MAX_RATE: f64 = 1_000_000.0;

/// The longest a pace ever waits for one chunk: its wait is computed from counts and a rate,
/// and must stay far inside what a clock adds without overflowing.
const MAX_CHUNK_WAIT: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// `rate` (entries per second, from a flag, a task or a file) if a backfill can pace at it:
/// finite and from [`MIN_RATE`] to [`MAX_RATE`]. Callers name where it came from.
pub fn checked_rate(rate: f64) -> Result<f64, BackfillError> {
    if rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        // Debug, not Display: 1e-300 stays short.
        Err(BackfillError::Rate(format!("{rate:?}")))
    }
}

/// One backfill of one table: what every record it makes shares.
#[derive(Debug, Clone)]
pub struct BackfillRun {
    table_arn: String,
    run: String,
    key_names: Vec<String>,
}

impl BackfillRun {
    /// A run over the table `table_arn` (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`), whose
    /// key attributes are `key_names`. `run` names the run: the same name on a resumed run
    /// gives the same event ids; a new name, new ones.
    pub fn new(table_arn: &str, run: &str, key_names: Vec<String>) -> Result<Self, BackfillError> {
        if table_from_arn(table_arn).is_none() {
            return Err(BackfillError::TableArn(table_arn.to_owned()));
        }
        if key_names.is_empty() {
            return Err(BackfillError::NoKeys);
        }
        Ok(BackfillRun {
            table_arn: table_arn.to_owned(),
            run: run.to_owned(),
            key_names,
        })
    }

    /// The record text for `item` (its typed JSON, as a Scan or an export line gives it), the
    /// `position`-th item of the run.
    pub fn record(&self, item: &str, position: u64) -> Result<String, BackfillError> {
        let attributes: BTreeMap<String, &RawValue> =
            serde_json::from_str(item).map_err(|e| BackfillError::NotAnItem(e.to_string()))?;
        // The key attributes, in name order: the same text for the same key on every run.
        let mut keys = String::from("{");
        let mut names: Vec<&String> = self.key_names.iter().collect();
        names.sort();
        names.dedup();
        for (i, name) in names.into_iter().enumerate() {
            let value = attributes
                .get(name.as_str())
                .ok_or_else(|| BackfillError::MissingKey(name.clone()))?;
            if i > 0 {
                keys.push(',');
            }
            write_json_string(name, &mut keys);
            keys.push(':');
            keys.push_str(value.get());
        }
        keys.push('}');
        let mut out = String::with_capacity(item.len() + keys.len() + 256);
        out.push_str("{\"eventID\":");
        write_json_string(&self.event_id(&keys), &mut out);
        out.push_str(",\"eventName\":\"INSERT\",\"eventSource\":");
        write_json_string(BACKFILL_EVENT_SOURCE, &mut out);
        out.push_str(",\"eventSourceARN\":");
        write_json_string(&self.table_arn, &mut out);
        out.push_str(",\"dynamodb\":{\"Keys\":");
        out.push_str(&keys);
        out.push_str(",\"NewImage\":");
        out.push_str(item.trim());
        let _ = write!(out, ",\"SequenceNumber\":\"{position}\"}}}}");
        Ok(out)
    }

    /// The event id of the item with key text `keys` in this run.
    fn event_id(&self, keys: &str) -> String {
        let mut h = sha2::Sha256::new();
        for part in [self.table_arn.as_str(), keys, self.run.as_str()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        format!("backfill-{}", hex::encode(&h.finalize()[..16]))
    }
}

/// Holds a backfill to at most `rate` entries per second, so no destination is fed faster
/// than its API destination delivers (EventBridge would otherwise hold the excess in
/// retries until `max_age_secs` and then dead-letter it). Records go in chunks of about a
/// second's worth; each chunk waits until the entries before it are due. Time not used
/// (a slow page, a pause) is not saved up: after a stall the pace resumes, it never bursts.
#[derive(Debug, Clone)]
pub struct Pace {
    rate: Option<f64>,
    next: Option<tokio::time::Instant>,
}

impl Pace {
    /// At most `rate` entries per second; `None` (or a rate that is not positive) is
    /// unpaced.
    pub fn new(rate: Option<f64>) -> Self {
        Pace {
            rate: rate.filter(|r| r.is_finite() && *r > 0.0),
            next: None,
        }
    }

    /// The entries per second it holds, if paced.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Records per chunk: about a second's worth when paced (one entry per record is the
    /// least a routed record makes), all of them otherwise.
    pub fn chunk(&self, records: usize) -> usize {
        self.rate
            .map_or(records, |r| r.floor() as usize)
            .clamp(1, records.max(1))
    }

    /// When the next chunk may start (now, when unpaced or not yet started).
    pub fn due(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        self.next.map_or(now, |n| n.max(now))
    }

    /// Waits until the next chunk may start.
    pub async fn ready(&self) {
        tokio::time::sleep_until(self.due()).await;
    }

    /// Counts a chunk's `entries` from now: the next chunk is due when they have had their
    /// time at the rate.
    pub fn sent(&mut self, entries: usize) {
        if let Some(r) = self.rate {
            let from = self.due();
            // Saturating: a tiny rate (or a huge count) waits the longest wait, never
            // overflows a `Duration` or the clock.
            let wait = std::time::Duration::try_from_secs_f64(entries as f64 / r)
                .unwrap_or(MAX_CHUNK_WAIT)
                .min(MAX_CHUNK_WAIT);
            self.next = Some(from.checked_add(wait).unwrap_or(from));
        }
    }
}

/// What a backfill reads its items from, one at a time, as typed JSON: a data file of an
/// export as it streams, or a page of a Scan held in memory (a `VecDeque` of items).
pub trait ItemSource: Send {
    /// Why an item could not be read.
    type Error: Send;

    /// The next item, or `None` after the last.
    fn next_item(&mut self) -> impl Future<Output = Option<Result<String, Self::Error>>> + Send;

    /// Whether every item has been read (a source that streams looks ahead to say).
    fn at_end(&mut self) -> impl Future<Output = bool> + Send;
}

impl ItemSource for std::collections::VecDeque<String> {
    type Error = std::convert::Infallible;

    async fn next_item(&mut self) -> Option<Result<String, Self::Error>> {
        self.pop_front().map(Ok)
    }

    async fn at_end(&mut self) -> bool {
        self.is_empty()
    }
}

/// What takes a chunk of a backfill's records to their verdicts: runs the batch, publishes
/// or prints its entries, keeps its dead letters. The AWS side lives with the caller.
pub trait ChunkPublisher: Send {
    /// Why a chunk reached no verdicts.
    type Error: Send;

    /// Runs `records` (each a backfilled stream INSERT) to their verdicts.
    fn publish(
        &mut self,
        records: Vec<Box<RawValue>>,
    ) -> impl Future<Output = Result<ChunkDone, Self::Error>> + Send;
}

/// What one chunk came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkDone {
    /// Its records by verdict, and the entries published.
    pub counts: Counts,
    /// The entries its records made: what the pace counts.
    pub entries_made: usize,
    /// The publisher cannot go on (a closed stdout): stop after this chunk, counted.
    pub halt: bool,
}

/// Why a paced loop returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every item is done.
    End,
    /// Items are left, and the next chunk would start at or after the loop's `stop_at`.
    Deadline,
    /// A chunk had records left for retry, with these counts: that chunk is not done (a
    /// resume does it again, with the same event ids) and not in [`Progress::counts`].
    Unpublished(Counts),
    /// The publisher asked to stop after a chunk (counted and done).
    Halted,
}

/// How far a paced loop got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Items done, from the loop's first: every one published, filtered, coalesced or
    /// dead-lettered.
    pub done: u64,
    /// The counts of the chunks done.
    pub counts: Counts,
    /// Why it returned.
    pub stop: Stop,
}

/// Why a paced loop stopped short of an answer.
#[derive(Debug, thiserror::Error)]
pub enum PacedError<R, P> {
    /// An item could not be read.
    #[error("{0}")]
    Read(R),
    /// An item could not become a record.
    #[error("item {position} of the run: {error}")]
    Item {
        /// The item's position in the run.
        position: u64,
        /// Why (in the message, so not also a source: a chain would say it twice).
        error: BackfillError,
    },
    /// A chunk reached no verdicts.
    #[error("{0}")]
    Publish(P),
}

/// One paced pass over a backfill's items: what the command (per Scan page or data file
/// page) and the function's task (per data file) both drive.
#[derive(Debug)]
pub struct PacedLoop<'a> {
    /// The run the records belong to.
    pub run: &'a BackfillRun,
    /// The pace, shared across the caller's passes.
    pub pace: &'a mut Pace,
    /// The position in the run of the first item read.
    pub first_position: u64,
    /// The most records in one chunk (a paced chunk is about a second's worth).
    pub max_chunk: usize,
    /// No chunk starts at or after this instant, once one chunk is done (so every pass
    /// moves); `None`: no deadline.
    pub stop_at: Option<tokio::time::Instant>,
}

impl PacedLoop<'_> {
    /// Reads `items` in chunks, each started when the pace allows, made into records and
    /// handed to `publisher`, until the items end, the deadline nears, a chunk is not
    /// published in time, or the publisher halts.
    pub async fn run<I: ItemSource, P: ChunkPublisher>(
        self,
        items: &mut I,
        publisher: &mut P,
    ) -> Result<Progress, PacedError<I::Error, P::Error>> {
        let mut progress = Progress {
            done: 0,
            counts: Counts::default(),
            stop: Stop::End,
        };
        loop {
            if items.at_end().await {
                return Ok(progress);
            }
            if progress.done > 0 && self.stop_at.is_some_and(|at| self.pace.due() >= at) {
                progress.stop = Stop::Deadline;
                return Ok(progress);
            }
            self.pace.ready().await;
            let want = self.pace.chunk(self.max_chunk);
            let mut records = Vec::with_capacity(want);
            while records.len() < want {
                let Some(item) = items.next_item().await else {
                    break;
                };
                let item = item.map_err(PacedError::Read)?;
                let position = self
                    .first_position
                    .saturating_add(progress.done)
                    .saturating_add(records.len() as u64);
                let record = self
                    .run
                    .record(&item, position)
                    .and_then(|text| {
                        RawValue::from_string(text)
                            .map_err(|e| BackfillError::NotAnItem(e.to_string()))
                    })
                    .map_err(|error| PacedError::Item { position, error })?;
                records.push(record);
            }
            if records.is_empty() {
                return Ok(progress);
            }
            let n = records.len() as u64;
            let chunk = publisher
                .publish(records)
                .await
                .map_err(PacedError::Publish)?;
            self.pace.sent(chunk.entries_made);
            if chunk.counts.retried > 0 {
                progress.stop = Stop::Unpublished(chunk.counts);
                return Ok(progress);
            }
            progress.counts.add(&chunk.counts);
            progress.done = progress.done.saturating_add(n);
            if chunk.halt {
                progress.stop = Stop::Halted;
                return Ok(progress);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Change, LazyRecord, Origin, parse};

    const ARN: &str = "arn:aws:dynamodb:eu-west-1:123456789012:table/Customers";
    const ITEM: &str = r#"{"tenantId": {"S": "acme"}, "customerId": {"S": "C-1"},
        "lifetimeValue": {"N": "12345678901234567890123456789012345678"}}"#;

    fn run(name: &str) -> BackfillRun {
        BackfillRun::new(ARN, name, vec!["tenantId".into(), "customerId".into()]).expect("run")
    }

    #[test]
    fn an_item_becomes_a_backfilled_insert_with_its_keys_and_every_digit() {
        let text = run("r1").record(ITEM, 41).expect("record");
        let parsed = parse(&text).expect("parses as a stream record");
        assert_eq!(parsed.origin(), Origin::Backfill);
        assert_eq!(parsed.change(), Change::Insert);
        assert_eq!(parsed.table(), "Customers");
        assert_eq!(parsed.sequence_number(), "41");
        assert_eq!(
            parsed
                .string_attribute("tenantId")
                .expect("reads")
                .as_deref(),
            Some("acme")
        );
        let record = LazyRecord::new(parsed);
        let decoded = record.decoded().expect("decodes");
        assert_eq!(decoded.keys, r#"{"customerId":"C-1","tenantId":"acme"}"#);
        assert!(
            decoded
                .new_image
                .as_deref()
                .is_some_and(|i| i.contains("12345678901234567890123456789012345678")),
            "{decoded:?}"
        );
        assert_eq!(decoded.old_image, None);
    }

    #[test]
    fn event_ids_are_the_same_per_key_and_run_and_differ_otherwise() {
        let id = |run_name: &str, item: &str| {
            let text = run(run_name).record(item, 0).expect("record");
            parse(&text).expect("parses").event_id().to_owned()
        };
        let other_key = ITEM.replace("C-1", "C-2");
        let changed_value = ITEM.replace("1234567890123", "9999999999999");
        assert_eq!(id("r1", ITEM), id("r1", ITEM));
        assert_eq!(
            id("r1", ITEM),
            id("r1", &changed_value),
            "the key, not the item's other values, names it"
        );
        assert_ne!(id("r1", ITEM), id("r1", &other_key));
        assert_ne!(id("r1", ITEM), id("r2", ITEM));
    }

    #[test]
    fn what_cannot_become_a_record_says_why() {
        assert_eq!(
            run("r").record(r#"{"tenantId": {"S": "acme"}}"#, 0),
            Err(BackfillError::MissingKey("customerId".into()))
        );
        assert!(matches!(
            run("r").record("[1]", 0),
            Err(BackfillError::NotAnItem(_))
        ));
        assert_eq!(
            BackfillRun::new("stream-ARN", "r", vec!["k".into()]).map(|_| ()),
            Err(BackfillError::TableArn("stream-ARN".into()))
        );
        assert_eq!(
            BackfillRun::new(ARN, "r", vec![]).map(|_| ()),
            Err(BackfillError::NoKeys)
        );
    }

    #[test]
    fn only_rates_a_clock_can_wait_for_are_taken() {
        for bad in [1e-300, 0.0, -1.0, f64::NAN, f64::INFINITY, 1e7] {
            assert!(
                matches!(checked_rate(bad), Err(BackfillError::Rate(_))),
                "{bad}"
            );
        }
        assert_eq!(checked_rate(0.5), Ok(0.5));
        assert_eq!(checked_rate(MIN_RATE), Ok(MIN_RATE));
        assert!(
            checked_rate(1e-300)
                .unwrap_err()
                .to_string()
                .contains("from 0.001 to 1000000")
        );
    }

    /// A publisher that publishes every record (one entry each), noting each chunk's
    /// sequence numbers and when it started; chunk `retry_at` leaves its records for retry,
    /// chunk `halt_at` halts.
    #[derive(Default)]
    struct Recorder {
        chunks: Vec<(Vec<String>, std::time::Duration)>,
        retry_at: Option<usize>,
        halt_at: Option<usize>,
        started: Option<tokio::time::Instant>,
    }

    impl ChunkPublisher for Recorder {
        type Error = std::convert::Infallible;

        async fn publish(&mut self, records: Vec<Box<RawValue>>) -> Result<ChunkDone, Self::Error> {
            let started = *self.started.get_or_insert_with(tokio::time::Instant::now);
            let seqs: Vec<String> = records
                .iter()
                .map(|r| {
                    parse(r.get())
                        .expect("a record")
                        .sequence_number()
                        .to_owned()
                })
                .collect();
            let i = self.chunks.len();
            self.chunks.push((seqs, started.elapsed()));
            let n = records.len();
            let retry = self.retry_at == Some(i);
            Ok(ChunkDone {
                counts: Counts {
                    records: n,
                    published: if retry { 0 } else { n },
                    retried: if retry { n } else { 0 },
                    entries: if retry { 0 } else { n },
                    ..Counts::default()
                },
                entries_made: n,
                halt: self.halt_at == Some(i),
            })
        }
    }

    fn items(n: usize) -> std::collections::VecDeque<String> {
        (0..n)
            .map(|i| ITEM.replace("C-1", &format!("C-{i}")))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_loop_sends_a_seconds_worth_per_chunk_and_stops_before_its_deadline() {
        let run = run("r");
        let mut pace = Pace::new(Some(10.0));
        let mut source = items(35);
        let mut publisher = Recorder::default();
        let start = tokio::time::Instant::now();
        let progress = PacedLoop {
            run: &run,
            pace: &mut pace,
            first_position: 7,
            max_chunk: 500,
            stop_at: Some(start + std::time::Duration::from_millis(2500)),
        }
        .run(&mut source, &mut publisher)
        .await
        .expect("runs");
        assert_eq!(progress.stop, Stop::Deadline);
        assert_eq!(progress.done, 30);
        assert_eq!((progress.counts.records, progress.counts.entries), (30, 30));
        assert_eq!(
            source.len(),
            5,
            "the items after the deadline are left unread"
        );
        let starts: Vec<u128> = publisher.chunks.iter().map(|c| c.1.as_millis()).collect();
        assert_eq!(starts, [0, 1000, 2000], "10 entries at 10/s per chunk");
        let first: Vec<&str> = publisher.chunks[0].0.iter().map(String::as_str).collect();
        assert_eq!(first[0], "7", "positions start at the loop's first");
        assert_eq!(publisher.chunks[2].0[9], "36");

        // A deadline already past: one chunk still goes, so every pass moves.
        let mut source = items(35);
        let progress = PacedLoop {
            run: &run,
            pace: &mut Pace::new(Some(10.0)),
            first_position: 0,
            max_chunk: 500,
            stop_at: Some(tokio::time::Instant::now()),
        }
        .run(&mut source, &mut Recorder::default())
        .await
        .expect("runs");
        assert_eq!((progress.stop, progress.done), (Stop::Deadline, 10));

        // Unpaced, no deadline: chunks of at most `max_chunk`, to the end.
        let mut publisher = Recorder::default();
        let progress = PacedLoop {
            run: &run,
            pace: &mut Pace::new(None),
            first_position: 0,
            max_chunk: 16,
            stop_at: None,
        }
        .run(&mut items(35), &mut publisher)
        .await
        .expect("runs");
        assert_eq!((progress.stop, progress.done), (Stop::End, 35));
        let sizes: Vec<usize> = publisher.chunks.iter().map(|c| c.0.len()).collect();
        assert_eq!(sizes, [16, 16, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunk_left_for_retry_is_not_done_and_a_halt_stops_after_its_chunk() {
        let run = run("r");
        let mut publisher = Recorder {
            retry_at: Some(1),
            ..Recorder::default()
        };
        let progress = PacedLoop {
            run: &run,
            pace: &mut Pace::new(None),
            first_position: 0,
            max_chunk: 4,
            stop_at: None,
        }
        .run(&mut items(10), &mut publisher)
        .await
        .expect("runs");
        let Stop::Unpublished(chunk) = progress.stop else {
            panic!("{progress:?}");
        };
        assert_eq!((chunk.records, chunk.retried), (4, 4));
        assert_eq!((progress.done, progress.counts.records), (4, 4));
        assert_eq!(
            publisher.chunks.len(),
            2,
            "no chunk after the one not published"
        );

        let mut publisher = Recorder {
            halt_at: Some(0),
            ..Recorder::default()
        };
        let progress = PacedLoop {
            run: &run,
            pace: &mut Pace::new(None),
            first_position: 0,
            max_chunk: 4,
            stop_at: None,
        }
        .run(&mut items(10), &mut publisher)
        .await
        .expect("runs");
        assert_eq!((progress.stop, progress.done), (Stop::Halted, 4));
        assert_eq!(progress.counts.published, 4, "the halting chunk is counted");
    }

    #[tokio::test]
    async fn an_item_that_cannot_become_a_record_is_named_by_its_position() {
        let run = run("r");
        let mut source = items(3);
        source[1] = r#"{"tenantId": {"S": "acme"}}"#.to_owned();
        let err = PacedLoop {
            run: &run,
            pace: &mut Pace::new(None),
            first_position: 100,
            max_chunk: 10,
            stop_at: None,
        }
        .run(&mut source, &mut Recorder::default())
        .await
        .expect_err("a key is missing");
        assert_eq!(
            err.to_string(),
            "item 101 of the run: the item has no key attribute \"customerId\""
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pace_spaces_chunks_by_their_entries_and_never_bursts() {
        let mut pace = Pace::new(Some(20.0));
        assert_eq!(pace.chunk(1000), 20);
        assert_eq!(pace.chunk(7), 7);
        let start = tokio::time::Instant::now();
        pace.ready().await;
        assert_eq!(
            start.elapsed(),
            std::time::Duration::ZERO,
            "the first chunk goes at once"
        );
        pace.sent(10);
        pace.ready().await;
        assert_eq!(start.elapsed().as_millis(), 500, "10 entries at 20/s");
        pace.sent(20);
        // A stall of 5 s: the time is not saved up for a burst afterwards.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        pace.ready().await;
        let resumed = start.elapsed();
        pace.sent(20);
        pace.ready().await;
        assert_eq!(
            (start.elapsed() - resumed).as_millis(),
            1000,
            "20 entries at 20/s"
        );
        // A rate too small for a clock: it waits the longest wait, and does not panic.
        let mut crawl = Pace::new(Some(1e-300));
        crawl.sent(1);
        assert!(crawl.due() > tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
        let unpaced = Pace::new(None);
        assert_eq!(unpaced.chunk(1000), 1000);
        assert_eq!(Pace::new(Some(0.0)).rate(), None);
    }
}
