//! `weir backfill`: the items already in a table through the manifest's plugins, as stream
//! INSERTs marked as a backfill (`weir_core::backfill`): a parallel Scan, or the data files
//! of an export to S3, page by page; each page printed as PutEvents entries or published
//! (`--publish`), checkpointed in a state file after it is done, and paced for the
//! destinations. A "part" is a Scan segment or an export's data file.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::{
    EXIT_DEAD_LETTERS, EXIT_UNPUBLISHED, SetupError, load, print_entries, runtime, setup,
    summary_line, write_dead_letters,
};
use weir_aws::dead_letter::{DeadLetterQueue, DeadLetterSink};
use weir_aws::export::{DataFile, ExportSource};
use weir_aws::publish::{PublishConfig, Publisher};
use weir_aws::scan::{Page, TableScan};
use weir_aws::store::ObjectStore;
use weir_core::backfill::{
    BackfillRun, ChunkDone, ChunkPublisher, MAX_RATE, Pace, PacedError, PacedLoop, Stop,
    checked_rate,
};
use weir_core::batch::{self, Counts};
use weir_core::location::Location;
use weir_core::manifest::Manifest;
use weir_core::sink::DeadLetterDir;

/// What `weir backfill` was asked to do.
#[derive(Debug, clap::Args)]
pub struct BackfillOptions {
    /// The manifest: a file or s3://bucket/key.
    #[arg(long)]
    pub manifest: String,
    /// The table to scan (its name).
    #[arg(long, required_unless_present = "export", conflicts_with = "export")]
    pub table: Option<String>,
    /// Instead of scanning: a DynamoDB export to S3 in DYNAMODB_JSON format,
    /// s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID (a point-in-time copy; no read capacity),
    /// or a local copy of that folder.
    #[arg(long)]
    pub export: Option<String>,
    /// The table's key attributes (default: DescribeTable's), repeated for a sort key.
    #[arg(long = "key")]
    pub keys: Vec<String>,
    /// Parallel Scan segments (with --table): 1 to 1,000,000, DynamoDB's limit.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=MAX_SEGMENTS))]
    pub segments: u32,
    /// A checkpoint, a file or s3://BUCKET/KEY: a killed run continues where it stopped;
    /// a finished run does nothing again.
    #[arg(long)]
    pub state: Option<String>,
    /// Only this tenant's items (repeated for several); other tenants' are filtered and
    /// counted.
    #[arg(long = "tenant")]
    pub tenants: Vec<String>,
    /// The run's name, which event ids derive from (default: the table and the time; a
    /// resumed run takes it from --state).
    #[arg(long)]
    pub run: Option<String>,
    /// Publish to EventBridge and send dead letters to the manifest's SQS queue.
    #[arg(long)]
    pub publish: bool,
    /// Where dead letters are written when not sent to a queue.
    #[arg(long, default_value = "weir-dead-letters")]
    pub dead_letter_dir: PathBuf,
    /// Items per page: per Scan request (DynamoDB's 1 MB page otherwise), or per batch
    /// from an export's file (default 100); 1 to 10,000 (a page is held in memory and
    /// checkpointed whole).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=MAX_PAGE_SIZE))]
    pub page_size: Option<i32>,
    /// Entries per second at most, 0.001 to 1,000,000 (default: the slowest destination's
    /// rate_limit_per_second, else unpaced).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// With --publish: seconds allowed for publishing each page (1 to 86,400).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=super::MAX_TIMEOUT_SECS))]
    pub timeout_secs: u64,
}

/// The most segments a parallel Scan takes (DynamoDB's `TotalSegments` limit).
const MAX_SEGMENTS: i64 = 1_000_000;

/// Scan segments read at once: the others wait their turn, so a run of a million segments
/// holds this many readers (and pages in flight), not a million.
const MAX_READERS: usize = 64;

/// The most items a page holds: a page is in memory at once, and checkpointed whole.
const MAX_PAGE_SIZE: i64 = 10_000;

/// The most items one part (a segment or a data file) can count: positions are
/// `part * PART_ITEMS + item`, so a part of more would reach the next part's positions.
const PART_ITEMS: u64 = 1_000_000_000_000;

/// The largest state file read: a checkpoint per part, each a key of at most a few KB.
const MAX_STATE_BYTES: usize = 256 << 20;

/// `--rate`: entries per second a pace can wait for (see `weir_core::backfill::checked_rate`).
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of entries per second"))?;
    checked_rate(rate).map_err(|e| e.to_string())
}

/// The checkpoint: per part, where its next page starts and how many items it has done.
/// Written after each page is published or dead-lettered, so a killed run resumes at the
/// first page not done (a page half done is done again, with the same event ids).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct State {
    table_arn: String,
    run: String,
    parts: Vec<PartState>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
struct PartState {
    /// Where the next page starts: a Scan's `ExclusiveStartKey` as typed JSON, or the
    /// number of a data file's items already done.
    next: Option<String>,
    items: u64,
    done: bool,
}

/// Where the items come from.
enum Source {
    /// A parallel Scan of this many segments.
    Scan(TableScan, u32),
    /// An export's data files.
    Export(ExportSource, Vec<DataFile>),
}

impl State {
    async fn load(store: &ObjectStore, location: &Location) -> anyhow::Result<Option<State>> {
        match store.read_if_exists(location).await? {
            Some(bytes) if bytes.len() > MAX_STATE_BYTES => {
                bail!("{location}: larger than {MAX_STATE_BYTES} bytes, not a backfill state file")
            }
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{location}: not a backfill state file")),
            None => Ok(None),
        }
    }

    /// Refuses what no run of weir writes, naming the state file and the part: counts past
    /// what a part holds, and resume points that are not a Scan key or an item number.
    fn check(&self, location: &Location, scan: bool) -> anyhow::Result<()> {
        for (i, part) in self.parts.iter().enumerate() {
            if part.items >= PART_ITEMS {
                bail!(
                    "{location}: part {i} has done {} items, more than a part holds ({PART_ITEMS}); not a state file weir wrote",
                    part.items
                );
            }
            match (&part.next, scan) {
                (None, _) => {}
                (Some(key), true) => {
                    weir_aws::scan::item_from_json(key).with_context(|| {
                        format!("{location}: part {i}: its next key is not a DynamoDB key")
                    })?;
                }
                (Some(n), false) => {
                    n.parse::<u64>()
                        .ok()
                        .filter(|n| *n < PART_ITEMS)
                        .with_context(|| {
                            format!("{location}: part {i}: next {n:?} is not an item number")
                        })?;
                }
            }
        }
        Ok(())
    }

    /// Replaced whole (a file renamed over the old one, one S3 put): a kill leaves the old
    /// checkpoint or the new, never half of one.
    async fn save(&self, store: &ObjectStore, location: &Location) -> anyhow::Result<()> {
        store
            .write(location, serde_json::to_vec_pretty(self)?)
            .await
    }
}

pub(super) fn backfill(o: BackfillOptions) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    runtime.block_on(run(o))
}

async fn run(o: BackfillOptions) -> Result<ExitCode, SetupError> {
    let loader = setup(load(&o.manifest).await)?;
    let pipeline = loader.pipeline();
    let pipeline = if o.tenants.is_empty() {
        pipeline
    } else {
        let m = loader.manifest();
        if let Some(t) = o.tenants.iter().find(|t| m.tenant_entry(t).is_none()) {
            return Err(SetupError(anyhow::anyhow!(
                "--tenant {}: the manifest has no entry for this tenant",
                t.escape_debug()
            )));
        }
        std::sync::Arc::new(pipeline.only_tenants(o.tenants.iter().cloned().collect()))
    };
    let sdk = weir_aws::client::sdk_config().await;
    let store = ObjectStore::with_s3(weir_aws::client::s3(&sdk));
    let state_location = match &o.state {
        Some(s) => Some(setup(Location::parse(s))?),
        None => None,
    };
    // The table's ARN, its keys, about how many items, and the parts to read.
    let (source, table_arn, key_names, estimate, name) = match (&o.table, &o.export) {
        (Some(table), None) => {
            let scan = TableScan::new(&sdk, table, o.page_size);
            let shape = setup(scan.describe().await)?;
            let keys = if o.keys.is_empty() {
                shape.key_names
            } else {
                o.keys.clone()
            };
            let estimate = shape.item_count_estimate.map(|n| n.max(0) as u64);
            (
                Source::Scan(scan, o.segments),
                shape.arn,
                keys,
                estimate,
                table.clone(),
            )
        }
        (None, Some(url)) => {
            let export = setup(weir_aws::export::Exports::new(&sdk).open(url))?;
            let summary = setup(export.summary().await)?;
            let files = setup(export.files(&summary).await)?;
            let table = weir_core::record::table_from_arn(&summary.table_arn)
                .unwrap_or_default()
                .to_owned();
            let keys = if o.keys.is_empty() {
                // The summary names no keys: the table's own, if it is still there.
                let shape = TableScan::new(&sdk, &table, None).describe().await;
                setup(shape.map(|s| s.key_names).with_context(|| {
                    format!(
                        "cannot find the key attributes of {}: name them with --key",
                        table.escape_debug()
                    )
                }))?
            } else {
                o.keys.clone()
            };
            let (arn, count) = (summary.table_arn.clone(), summary.item_count);
            (Source::Export(export, files), arn, keys, count, table)
        }
        _ => {
            return Err(SetupError(anyhow::anyhow!(
                "give exactly one of --table (a Scan) and --export (an export to S3)"
            )));
        }
    };
    let parts = match &source {
        Source::Scan(_, n) => *n as usize,
        Source::Export(_, files) => files.len(),
    };
    let mut state = match &state_location {
        Some(location) => setup(State::load(&store, location).await)?,
        None => None,
    };
    if let Some(s) = &state
        && (s.table_arn != table_arn || s.parts.len() != parts)
    {
        return Err(SetupError(anyhow::anyhow!(
            "{}: a backfill of {:?} in {} parts, not of {table_arn:?} in {parts}",
            o.state.as_deref().unwrap_or_default(),
            s.table_arn,
            s.parts.len(),
        )));
    }
    if let (Some(s), Some(location)) = (&state, &state_location) {
        setup(s.check(location, matches!(source, Source::Scan(..))))?;
    }
    let state = state.get_or_insert_with(|| State {
        table_arn: table_arn.clone(),
        run: o.run.clone().unwrap_or_else(|| {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{name}-{secs}")
        }),
        parts: vec![PartState::default(); parts],
    });
    let run = setup(
        BackfillRun::new(&table_arn, &state.run, key_names.clone()).map_err(anyhow::Error::from),
    )?;
    let rate = match o.rate {
        Some(r) => Some(r),
        None => setup(destination_rate(&o.manifest).await)?.map(|r| r.min(MAX_RATE)),
    };
    eprintln!(
        "backfill of {} (run {}): about {} items{}, {parts} {}, {}{}",
        name.escape_debug(),
        state.run.escape_debug(),
        estimate.map_or("an unknown number of".to_owned(), |n| n.to_string()),
        if matches!(source, Source::Scan(..)) {
            " (DynamoDB's estimate)"
        } else {
            ""
        },
        if matches!(source, Source::Scan(..)) {
            "segments"
        } else {
            "data files"
        },
        match rate {
            Some(r) => format!("at most {r} entries/s"),
            None => "no rate limit".to_owned(),
        },
        match (rate, estimate) {
            (Some(r), Some(n)) if r > 0.0 => format!(", ETA {:.0} s", n as f64 / r),
            _ => String::new(),
        }
    );

    let publisher = if o.publish {
        let p = Publisher::new(
            weir_aws::client::eventbridge(&sdk),
            PublishConfig::default(),
        );
        setup(p.check_bus(&loader.manifest().event_bus).await)?;
        Some(p)
    } else {
        None
    };
    let queue = if o.publish {
        setup(
            DeadLetterQueue::for_manifest(&sdk, loader.manifest())
                .await
                .map_err(anyhow::Error::from),
        )?
    } else {
        None
    };

    // Readers a page or two ahead of the pipeline: one per unfinished Scan segment, or one
    // over the export's unfinished files in turn.
    let (tx, mut rx) =
        mpsc::channel::<(usize, anyhow::Result<Page>)>(parts.min(MAX_READERS) * 2 + 2);
    match source {
        Source::Scan(scan, total) => {
            let todo: std::collections::VecDeque<(usize, Option<String>)> = state
                .parts
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.done)
                .map(|(segment, s)| (segment, s.next.clone()))
                .collect();
            let readers = todo.len().min(MAX_READERS);
            let todo = std::sync::Arc::new(std::sync::Mutex::new(todo));
            for _ in 0..readers {
                let (scan, tx, todo) = (scan.clone(), tx.clone(), todo.clone());
                tokio::spawn(async move {
                    // Segment after segment, while any is left.
                    while let Some((segment, mut next)) =
                        todo.lock().ok().and_then(|mut q| q.pop_front())
                    {
                        loop {
                            let page = scan.page(segment as u32, total, next.as_deref()).await;
                            next = page.as_ref().ok().and_then(|p| p.next.clone());
                            let last = page.is_err() || next.is_none();
                            if tx.send((segment, page)).await.is_err() {
                                return;
                            }
                            if last {
                                break;
                            }
                        }
                    }
                });
            }
        }
        Source::Export(export, files) => {
            let todo: Vec<(usize, DataFile, u64)> = files
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !state.parts[*i].done)
                .map(|(i, f)| {
                    // Checked with the state file: a number below PART_ITEMS.
                    let from = state.parts[i]
                        .next
                        .as_deref()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    (i, f, from)
                })
                .collect();
            let page_size = o.page_size.map_or(100, |n| n.max(1) as usize);
            let tx = tx.clone();
            tokio::spawn(async move {
                for (i, file, from) in todo {
                    if let Err(e) = export_pages(&export, &file, from, page_size, i, &tx).await {
                        let _ = tx.send((i, Err(e))).await;
                        return;
                    }
                }
            });
        }
    }
    drop(tx);

    let started = Instant::now();
    let dead_letters = DeadLetterDir::new(&o.dead_letter_dir);
    let progress = Progress::new(estimate, std::io::stderr().is_terminal());
    let mut pace = Pace::new(rate);
    let (mut total, mut items) = (Counts::default(), 0u64);
    let mut stopped = false;
    while let Some((part, page)) = rx.recv().await {
        let page = setup(page)?;
        // Below u64::MAX: parts ≤ 1,000,000 and a part's items < PART_ITEMS (checked).
        let first_position = (part as u64)
            .saturating_mul(PART_ITEMS)
            .saturating_add(state.parts[part].items);
        let mut page_items: std::collections::VecDeque<String> = page.items.into();
        let n = page_items.len() as u64;
        let paced = PacedLoop {
            run: &run,
            pace: &mut pace,
            first_position,
            max_chunk: page_items.len(),
            stop_at: None,
        }
        .run(
            &mut page_items,
            &mut CommandPublisher {
                pipeline: &pipeline,
                events: publisher.as_ref(),
                queue: queue.as_ref(),
                dead_letters: &dead_letters,
                progress: &progress,
                timeout: Duration::from_secs(o.timeout_secs),
            },
        )
        .await
        .map_err(|e| match e {
            PacedError::Publish(e) => e,
            PacedError::Read(never) => match never {},
            e @ PacedError::Item { .. } => anyhow::Error::from(e),
        });
        let paced = setup(paced)?;
        total.add(&paced.counts);
        if let Stop::Unpublished(chunk) = paced.stop {
            // Counted as it went (retried: N), though the page is done again on resume.
            total.add(&chunk);
        }
        match paced.stop {
            Stop::End => {}
            Stop::Halted => {
                // Its entries were not all printed: this page is left for the resume.
                progress.line(format!(
                    "stdout closed: stopped; part {part} resumes at its last checkpoint"
                ));
                stopped = true;
                break;
            }
            // No deadline is given, so only a chunk left for retry stops here.
            Stop::Unpublished(_) | Stop::Deadline => {
                // This page is left for the resume: its checkpoint is not moved.
                progress.line(format!(
                    "not published in time: part {part} resumes at its last checkpoint"
                ));
                stopped = true;
                break;
            }
        }
        items = items.saturating_add(n);
        let seg = &mut state.parts[part];
        seg.items = seg.items.saturating_add(n);
        seg.done = page.next.is_none();
        seg.next = page.next;
        if let Some(location) = &state_location {
            setup(state.save(&store, location).await)?;
        }
        let seg = &state.parts[part];
        progress.advance(
            n,
            items,
            format!(
                "published {}, filtered {}, dead-lettered {}; part {part}: {} items{}",
                total.published,
                total.filtered,
                total.dead_lettered,
                seg.items,
                if seg.done { " (done)" } else { "" },
            ),
            items as f64 / started.elapsed().as_secs_f64().max(1e-3),
        );
    }
    progress.finish();
    eprintln!("{}", summary_line(&total, total.entries, o.publish));
    Ok(if stopped {
        ExitCode::from(EXIT_UNPUBLISHED)
    } else if total.dead_lettered > 0 {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    })
}

/// The command's chunks: published (`--publish`) or printed as PutEvents entries, dead
/// letters sent to the manifest's queue or written to the dead-letter folder. Its
/// `entries` count is the entries made (printed, or sent to be published).
struct CommandPublisher<'a> {
    pipeline: &'a std::sync::Arc<weir_runtime::Pipeline>,
    events: Option<&'a Publisher>,
    queue: Option<&'a DeadLetterQueue>,
    dead_letters: &'a DeadLetterDir,
    progress: &'a Progress,
    timeout: Duration,
}

impl ChunkPublisher for CommandPublisher<'_> {
    type Error = anyhow::Error;

    async fn publish(&mut self, records: Vec<Box<RawValue>>) -> anyhow::Result<ChunkDone> {
        let mut collected = Vec::new();
        let sink = match self.queue {
            Some(q) => DeadLetterSink::Queue(q),
            None => DeadLetterSink::Collect(&mut collected),
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let report =
            batch::run(self.pipeline.clone(), records, self.events, sink, deadline).await?;
        write_dead_letters(self.dead_letters, &collected).map_err(|e| e.0)?;
        let halt = self.events.is_none()
            && self
                .progress
                .suspend(|| print_entries(&report.entries))
                .is_err();
        Ok(ChunkDone {
            counts: Counts {
                entries: report.entries.len(),
                ..report.counts()
            },
            entries_made: report.entries.len(),
            halt,
        })
    }
}

/// Sends the pages of one data file (part `part`) from its item `from` on, `page_size`
/// items each, as the file is read: a page's `next` is the number of the file's items done
/// after it, and the last page has none. Stops quietly when no one receives.
async fn export_pages(
    export: &ExportSource,
    file: &DataFile,
    from: u64,
    page_size: usize,
    part: usize,
    tx: &mpsc::Sender<(usize, anyhow::Result<Page>)>,
) -> anyhow::Result<()> {
    let mut items = export.items(file).await?;
    let mut at = 0u64;
    while at < from {
        match items.next().await {
            Some(item) => {
                item?;
                at += 1;
            }
            None => break,
        }
    }
    loop {
        let mut page = Vec::with_capacity(page_size);
        while page.len() < page_size {
            match items.next().await {
                Some(item) => page.push(item?),
                None => break,
            }
        }
        at += page.len() as u64;
        let last = items.at_end().await;
        let page = Page {
            items: page,
            next: (!last).then(|| at.to_string()),
        };
        if tx.send((part, Ok(page))).await.is_err() || last {
            return Ok(());
        }
    }
}

/// Progress on stderr: a bar on a terminal (items, items/s, the counts, ETA, the part that
/// moved); one plain line per page otherwise, for logs.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines(Option<u64>),
}

impl Progress {
    fn new(estimate: Option<u64>, terminal: bool) -> Self {
        if !terminal {
            return Progress::Lines(estimate);
        }
        let bar = match estimate {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::no_length(),
        };
        let template = if estimate.is_some() {
            "{bar:30} {pos}/{len} items, {per_sec}, ETA {eta}; {msg}"
        } else {
            "{pos} items, {per_sec}; {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        Progress::Bar(bar)
    }

    /// A page of `items` done, `all` so far.
    fn advance(&self, items: u64, all: u64, message: String, per_second: f64) {
        match self {
            Progress::Bar(bar) => {
                bar.inc(items);
                bar.set_message(message);
            }
            Progress::Lines(estimate) => {
                eprintln!(
                    "{message}; all: {all} items{}, {per_second:.0} items/s",
                    estimate.map_or(String::new(), |n| format!(" of about {n}")),
                );
            }
        }
    }

    /// Runs `f` (printing to stdout) with the bar out of the way.
    fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        match self {
            Progress::Bar(bar) => bar.suspend(f),
            Progress::Lines(_) => f(),
        }
    }

    fn line(&self, text: String) {
        match self {
            Progress::Bar(bar) => bar.println(text),
            Progress::Lines(_) => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }
}

/// The slowest destination's `rate_limit_per_second` in the manifest, if any names one: a
/// backfill never feeds the bus faster than its slowest API destination delivers.
async fn destination_rate(manifest: &str) -> anyhow::Result<Option<f64>> {
    let location = Location::parse(manifest)?;
    let (bytes, _) = weir_aws::store::ObjectStore::default()
        .read_at_most(&location, weir_core::location::MAX_MANIFEST_BYTES)
        .await?;
    let text = String::from_utf8(bytes).context("the manifest is not UTF-8")?;
    let (_, destinations) = Manifest::parse_with_destinations(&text, location)?;
    Ok(destinations
        .values()
        .filter_map(|d| d.rate_limit_per_second)
        .min()
        .map(f64::from))
}
