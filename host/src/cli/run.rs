//! `weir run`: a stream event through the manifest's plugins, printed as PutEvents entries
//! (or published, with `--publish`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::value::RawValue;

use super::{
    EXIT_DEAD_LETTERS, EXIT_UNPUBLISHED, SetupError, load_with, parse_event, print_entries,
    read_event, runtime, setup, summary_line, unknown_table_hint, write_dead_letters,
};
use weir_aws::dead_letter::{DeadLetterQueue, DeadLetterSink};
use weir_aws::publish::{PublishConfig, Publisher};
use weir_core::batch;
use weir_core::sink::DeadLetterDir;

pub(super) fn run_event(
    manifest: &str,
    event: &Path,
    dead_letter_dir: &Path,
    publish_within: Option<Duration>,
    with_report: bool,
) -> Result<ExitCode, SetupError> {
    let text = setup(read_event(event))?;
    let records: Vec<Box<RawValue>> = setup(parse_event(event, &text))?
        .records
        .into_iter()
        .map(RawValue::to_owned)
        .collect();
    let runtime = runtime()?;
    let deadline = tokio::time::Instant::now() + publish_within.unwrap_or(Duration::from_secs(60));
    let mut collected = Vec::new();
    let mut any_table_route = false;
    let hint_records: Vec<Box<RawValue>> = records.clone();
    let report = runtime.block_on(async {
        let loader = setup(load_with(manifest, with_report).await)?;
        let pipeline = loader.pipeline();
        any_table_route = loader
            .manifest()
            .routes
            .iter()
            .any(|r| r.table == weir_core::manifest::ANY_TABLE);
        let bus = loader.manifest().event_bus.clone();
        let (publisher, queue) = match publish_within {
            None => (None, None),
            Some(_) => {
                let sdk = weir_aws::client::sdk_config().await;
                let publisher = Publisher::new(
                    weir_aws::client::eventbridge(&sdk),
                    PublishConfig::default(),
                );
                setup(publisher.check_bus(&bus).await)?;
                let queue = setup(
                    DeadLetterQueue::for_manifest(&sdk, loader.manifest())
                        .await
                        .map_err(anyhow::Error::from),
                )?;
                (Some(publisher), queue)
            }
        };
        let sink = match &queue {
            Some(q) => DeadLetterSink::Queue(q),
            None => DeadLetterSink::Collect(&mut collected),
        };
        setup(batch::run(pipeline, records, publisher.as_ref(), sink, deadline).await)
    })?;
    if with_report {
        eprint!("{}", batch::render_report(&report));
    }
    // Dead letters first: they are kept whatever becomes of stdout.
    let dead_letters = DeadLetterDir::new(dead_letter_dir);
    write_dead_letters(&dead_letters, &collected)?;
    // A stdout closed by its reader (`| head`) ends the entries; the run is done and its
    // summary and status stand.
    let _ = print_entries(&report.entries);
    let c = report.counts();
    eprintln!(
        "{}{}",
        summary_line(&c, report.entries.len(), publish_within.is_some()),
        if collected.is_empty() {
            String::new()
        } else {
            format!(" (in {})", dead_letters.path().display())
        }
    );
    if let Some(hint) = unknown_table_hint(&hint_records, any_table_route) {
        eprintln!("{hint}");
    }
    let unpublished: Vec<String> = report
        .retry_sequence_numbers()
        .into_iter()
        .map(|s| s.unwrap_or_else(|| "(unknown)".into()))
        .collect();
    if !unpublished.is_empty() {
        eprintln!("not published in time: {}", unpublished.join(" "));
        return Ok(ExitCode::from(EXIT_UNPUBLISHED));
    }
    Ok(if c.dead_lettered > 0 {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    })
}
