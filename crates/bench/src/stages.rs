//! Where weir's time goes per record (`weir-bench stages`, run by `all`).
//!
//! The same invocations go through cumulative stages in one process, round after round, each
//! stage in turn, so the machine's drift touches all alike; a stage's cost is the difference
//! between the median round of two neighbours:
//!
//! 1. **batch building**: the invocation's JSON text into records, as the Lambda runtime does;
//! 2. **+ decode**: each record parsed and its images written as plain JSON (beside it, for
//!    the coming contract: each record parsed and only the fields the mapping reads taken
//!    from its image, lazily, with `weir_core::image::TypedImage`);
//! 3. **+ route and verdicts**: `batch::run` with a transformer that returns no events (each
//!    record filtered): routing, the instance, the batch's bookkeeping;
//! 4. **+ validate and envelope**: a transformer that replays the mapping's events, computed
//!    once beforehand: validation, the metadata envelope, the entries;
//! 5. **+ the mapping**: the native mapping (Rust) or the `salesforce-account` plugin (the
//!    sandboxed call, with what it costs to hand the record over and take the events back).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_core::image::TypedImage;
use weir_core::manifest::Limits;
use weir_core::model::PluginRef;
use weir_core::pipeline::Pipeline;
use weir_core::record::StreamBatch;
use weir_core::record::{self, LazyRecord};
use weir_core::transform::{CallError, CallReport, Instance, Plugin, PluginEvent, Slot};

use crate::{
    NativeMapping, dry_batch, invocation_texts, lazy_loader, mapping_reference, native_transform,
    pipeline_with, read_records, report_since, runtime,
};

/// The mapping's events (or its refusal) by eventID.
type Replayed = Arc<Mutex<HashMap<String, Result<Vec<PluginEvent>, CallError>>>>;

/// Returns no events: every record is filtered after routing.
struct NoEvents(Arc<PluginRef>);

/// Replays the mapping's events for each record (by its eventID), computed on first sight.
struct Replay {
    reference: Arc<PluginRef>,
    events: Replayed,
}

/// One tenant's instance of a stage transformer.
struct StageInstance {
    events: Option<Replayed>,
    config: Option<Value>,
}

impl Plugin for NoEvents {
    type Instance = StageInstance;

    fn reference(&self) -> &Arc<PluginRef> {
        &self.0
    }

    fn instantiate(&self, _tenant: &str, _limits: Limits) -> Result<StageInstance, CallError> {
        Ok(StageInstance {
            events: None,
            config: None,
        })
    }
}

impl Plugin for Replay {
    type Instance = StageInstance;

    fn reference(&self) -> &Arc<PluginRef> {
        &self.reference
    }

    fn instantiate(&self, _tenant: &str, _limits: Limits) -> Result<StageInstance, CallError> {
        Ok(StageInstance {
            events: Some(self.events.clone()),
            config: None,
        })
    }
}

impl Instance for StageInstance {
    fn transform(&mut self, record: &LazyRecord<'_>, config_json: &str) -> CallReport {
        let started = Instant::now();
        let result = match &self.events {
            None => Ok(Vec::new()),
            Some(events) => {
                let mut events = events.lock().unwrap_or_else(|p| p.into_inner());
                let event_id = record.parsed().event_id();
                match events.get(event_id) {
                    Some(known) => known.clone(),
                    None => {
                        let config = self
                            .config
                            .get_or_insert_with(|| {
                                serde_json::from_str(config_json).unwrap_or_default()
                            })
                            .clone();
                        let made = native_transform(record, &config);
                        events.insert(event_id.to_owned(), made.clone());
                        made
                    }
                }
            }
        };
        report_since(started, result)
    }
}

/// The stages: batch building, + full decode (or, beside it, + lazy reads), + parse and
/// route and verdicts, + validate and envelope, + the native mapping or the weir-rust
/// plugin.
const STAGES: usize = 7;

/// What the Salesforce mapping reads: its nine fields and the external id.
const MAPPED_POINTERS: [&str; 10] = [
    "/lifetimeValue",
    "/address/city",
    "/address/country",
    "/address/zip",
    "/address/street",
    "/name",
    "/employees",
    "/phone",
    "/website",
    "/customerId",
];

/// Runs the stages over `event`'s records in batches of `batch_size`, `rounds` timed rounds
/// after two untimed ones; prints the per-stage table (µs per record, medians).
pub(crate) fn stages(
    manifest: &Path,
    event: &Path,
    batch_size: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let records = read_records(event)?;
    let n = records.len().max(1) as f64;
    let texts = invocation_texts(&records, batch_size);
    let rt = runtime()?;
    let none = pipeline_with(manifest, NoEvents(mapping_reference()))?;
    let replay = pipeline_with(
        manifest,
        Replay {
            reference: mapping_reference(),
            events: Arc::default(),
        },
    )?;
    let native = pipeline_with(
        manifest,
        NativeMapping {
            reference: mapping_reference(),
        },
    )?;
    let plugin = rt.block_on(lazy_loader(manifest))?.pipeline();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); STAGES];
    for round in 0..rounds + 2 {
        let took = [
            time(|| parse_only(&texts)),
            time(|| decode(&texts)),
            time(|| lazy_reads(&texts)),
            time(|| through(&rt, &none, &texts)),
            time(|| through(&rt, &replay, &texts)),
            time(|| through(&rt, &native, &texts)),
            time(|| through(&rt, &plugin, &texts)),
        ];
        if round >= 2 {
            for (stage, t) in took.into_iter().enumerate() {
                times[stage].push(t?);
            }
        }
    }
    let m: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t.get(t.len() / 2)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6 / n)
        })
        .collect();
    println!(
        "| stage | native (µs/record) | weir-rust (µs/record) |\n| --- | ---: | ---: |\n\
         | batch building (event JSON → records) | {:.2} | {:.2} |\n\
         | parse each record, route, instance, verdicts | {:.2} | {:.2} |\n\
         | validate, envelope, entries | {:.2} | {:.2} |\n\
         | the mapping with its reads (native: lazily from the typed JSON; weir-rust: the plugin call, reading through the host) | {:.2} | {:.2} |\n\
         | **total** | **{:.2}** | **{:.2}** |\n\n\
         Decode happens inside the mapping row now: parsing a record and reading the ten \
         fields the mapping reads lazily from its typed JSON (`weir_core::image::TypedImage`, \
         what 0.2 plugins read through) costs {:.2} µs per record; parsing it and decoding its \
         whole images to plain JSON (what 0.1 plugins are given) costs {:.2} µs.\n",
        m[0],
        m[0],
        m[3] - m[0],
        m[3] - m[0],
        m[4] - m[3],
        m[4] - m[3],
        m[5] - m[4],
        m[6] - m[4],
        m[5],
        m[6],
        m[2] - m[0],
        m[1] - m[0],
    );
    Ok(())
}

fn time(f: impl FnOnce() -> anyhow::Result<usize>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    std::hint::black_box(f()?);
    Ok(started.elapsed())
}

fn parse_only(texts: &[String]) -> anyhow::Result<usize> {
    let mut n = 0;
    for text in texts {
        n += serde_json::from_str::<StreamBatch>(text)?.records.len();
    }
    Ok(n)
}

fn decode(texts: &[String]) -> anyhow::Result<usize> {
    let mut n = 0;
    for text in texts {
        for raw in serde_json::from_str::<StreamBatch>(text)?.records {
            if let Ok(r) = record::parse(raw.get()).and_then(|p| p.decode()) {
                n += std::hint::black_box(r).keys.len();
            }
        }
    }
    Ok(n)
}

/// Each record parsed, and the fields the mapping reads taken from its image lazily.
fn lazy_reads(texts: &[String]) -> anyhow::Result<usize> {
    let mut n = 0;
    for text in texts {
        for raw in serde_json::from_str::<StreamBatch>(text)?.records {
            let Ok(parsed) = record::parse(raw.get()) else {
                continue;
            };
            let Some(image) = parsed.new_image_text().or(parsed.old_image_text()) else {
                continue;
            };
            let image = TypedImage::new(image);
            for pointer in MAPPED_POINTERS {
                if let Ok(Some(v)) = image.to_json(pointer) {
                    n += v.len();
                }
            }
        }
    }
    Ok(n)
}

fn through<S: Slot>(
    rt: &tokio::runtime::Runtime,
    pipeline: &Arc<Pipeline<S>>,
    texts: &[String],
) -> anyhow::Result<usize> {
    let mut n = 0;
    for text in texts {
        let records = serde_json::from_str::<StreamBatch>(text)?.records;
        n += dry_batch(rt, pipeline, records)?.entries.len();
    }
    Ok(n)
}
