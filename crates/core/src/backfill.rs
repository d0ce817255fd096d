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
