//! `weir-bench`: weir against the limit (the same mapping in native Rust) and against the
//! handlers users deploy today (Python + boto3, Node + the AWS SDK), on one generated
//! batch, on this machine, in one run.
//!
//! Every contender runs in its own process (so each has its own peak RSS), on the same
//! event file, in batches of the same size, and writes its entries; an entry list that
//! differs from the native one by a single byte makes the contender "wrong", whatever its
//! speed. Then cold start (process start to the first batch done) and the publish path
//! (against a local zero-latency PutEvents endpoint) are measured.
//!
//! `./dev bench` builds what it needs and runs `weir-bench all`; the table is printed as
//! Markdown and the rows are written to `target/bench/results.json`.

#![deny(missing_docs)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::Digest as _;

use weir_aws::dead_letter::DeadLetterSink;
use weir_aws::publish::{PublishConfig, Publisher};
use weir_aws::store::ObjectStore;
use weir_core::batch;
use weir_core::image::TypedImage;
use weir_core::location::Location;
use weir_core::manifest::{Limits, Manifest};
use weir_core::model::{Entry, PluginRef};
use weir_core::pipeline::Pipeline;
use weir_core::record::StreamBatch;
use weir_core::record::{Change, LazyRecord};
use weir_core::transform::{
    CallCost, CallError, CallReport, Instance, Loaded, Plugin, PluginEvent, Slot,
};
use weir_runtime::loader::Loader;
use weir_runtime::plugin::PluginEngine;

mod fresh;
mod logs;
mod stages;

#[derive(Parser)]
#[command(
    name = "weir-bench",
    about = "weir's benchmark: throughput, cold start, publish path"
)]
struct Cli {
    #[command(subcommand)]
    command: Step,
}

#[derive(Subcommand)]
enum Step {
    /// Run every contender, cold start and the publish path; print the tables.
    All {
        /// Records in the batch.
        #[arg(long, default_value_t = 10_000)]
        records: usize,
        /// Records per Lambda invocation.
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// Tenant counts the records are spread over, one throughput table each (every
        /// contender at the first; native, weir-rust and node-sdk at the others).
        #[arg(long, value_delimiter = ',', default_value = "8,100,1000,10000")]
        tenants: Vec<usize>,
        /// Runs of each cold-start case (the median is reported).
        #[arg(long, default_value_t = 5)]
        cold_runs: usize,
        /// Runs of each throughput contender (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where plugins were built (`./dev plugins`).
        #[arg(long, default_value = "target/plugins")]
        plugins: PathBuf,
        /// Where the peers live.
        #[arg(long, default_value = "bench/peers")]
        peers: PathBuf,
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
    /// One weir contender in this process (run by `all`).
    Contender {
        #[arg(long)]
        name: String,
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        event: PathBuf,
        #[arg(long)]
        batch_size: usize,
        #[arg(long)]
        entries_out: PathBuf,
        /// The function memory the warm instances are sized from (the template's).
        #[arg(long, default_value_t = weir_core::pipeline::DEFAULT_FUNCTION_MEMORY_MB)]
        memory_mb: u64,
    },
    /// Precompile a plugin as `weir compile` does; print the milliseconds (run by `all`).
    Precompile {
        #[arg(long)]
        plugin: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a local copy of a DynamoDB export (DYNAMODB_JSON: the summary, the file list and
    /// gzipped `{"Item": ...}` lines) of the generated items, for timing `weir backfill
    /// --export DIR`.
    Export {
        #[arg(long)]
        items: usize,
        #[arg(long, default_value_t = 8)]
        tenants: usize,
        #[arg(long, default_value_t = 4)]
        files: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the zero-latency PutEvents endpoint on 127.0.0.1 until killed, printing its
    /// port (for timing `weir backfill --publish` with AWS_ENDPOINT_URL pointed at it).
    ServeEventBridge,
    /// Write the generated batch to a file; print the images' average size (run by `all`).
    Generate {
        #[arg(long)]
        records: usize,
        #[arg(long)]
        tenants: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Where the time goes per record: cumulative stages over the same batches (run by `all`).
    Stages {
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        event: PathBuf,
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// Timed rounds (after two untimed ones); the median is reported.
        #[arg(long, default_value_t = 7)]
        rounds: usize,
    },
    /// What a fresh instance costs, instantiate to the end of its first call, beside a
    /// warm call (run by `all`).
    Fresh {
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        event: PathBuf,
        /// Instances timed (each for a tenant of its own), after `--warmup` untimed ones.
        #[arg(long, default_value_t = 2000)]
        instances: usize,
        #[arg(long, default_value_t = 200)]
        warmup: usize,
        /// One JSON line instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Start, load, run one batch, report (run by `all`, timed from outside).
    ColdStart {
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        event: PathBuf,
    },
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logs::init();
    let result = match cli.command {
        Step::All {
            records,
            batch_size,
            tenants,
            cold_runs,
            runs,
            plugins,
            peers,
            out,
        } => all(&Settings {
            records,
            batch_size,
            tenants,
            cold_runs,
            runs,
            plugins,
            peers,
            out,
        }),
        Step::Contender {
            name,
            manifest,
            event,
            batch_size,
            entries_out,
            memory_mb,
        } => contender(
            &name,
            &manifest,
            &event,
            batch_size,
            &entries_out,
            memory_mb,
        ),
        Step::ColdStart { manifest, event } => cold_start(&manifest, &event),
        Step::Fresh {
            manifest,
            event,
            instances,
            warmup,
            json,
        } => fresh::fresh(&manifest, &event, instances, warmup, json),
        Step::Stages {
            manifest,
            event,
            batch_size,
            rounds,
        } => stages::stages(&manifest, &event, batch_size, rounds),
        Step::Precompile { plugin, out } => (|| {
            let bytes = std::fs::read(&plugin).with_context(|| format!("{}", plugin.display()))?;
            let started = Instant::now();
            let cwasm = PluginEngine::precompile(&bytes, None)?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            std::fs::write(&out, cwasm).with_context(|| format!("{}", out.display()))?;
            println!("{ms}");
            Ok(())
        })(),
        Step::ServeEventBridge => (|| {
            let endpoint = ZeroLatencyEventBridge::start()?;
            println!("{}", endpoint.port);
            std::io::stdout().flush()?;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        })(),
        Step::Export {
            items,
            tenants,
            files,
            out,
        } => write_export(items, tenants, files, &out),
        Step::Generate {
            records,
            tenants,
            out,
        } => (|| {
            let event = generate(records, tenants, 7);
            std::fs::write(&out, serde_json::to_vec(&event)?)
                .with_context(|| format!("{}", out.display()))?;
            println!("{}", average_image_bytes(&event));
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    records: usize,
    batch_size: usize,
    tenants: Vec<usize>,
    cold_runs: usize,
    runs: usize,
    plugins: PathBuf,
    peers: PathBuf,
    out: PathBuf,
}

/// One row of the throughput table, as written to `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The contender measured.
    pub name: String,
    /// The tenants the records were spread over (each with its own config and instances).
    pub tenants: usize,
    /// Records mapped per second over the timed pass.
    pub records_per_s: f64,
    /// Microseconds per record over the timed pass.
    pub us_per_record: f64,
    /// The 99th percentile of batch time in the timed pass, in milliseconds.
    pub p99_batch_ms: f64,
    /// The contender process's peak resident memory, in MB.
    pub peak_rss_mb: f64,
    /// The weir contender process's peak address space (VmPeak), in MB: the instance
    /// pool's reservation shows here.
    pub peak_vm_mb: Option<f64>,
    /// `ok`, `wrong: ...` or `skipped: ...`.
    pub status: String,
}

/// What a contender process reports on its one line of stdout.
#[derive(Debug, serde::Deserialize)]
struct ContenderReport {
    records: usize,
    batch_ms: Vec<f64>,
    peak_rss_mb: f64,
    #[serde(default)]
    peak_vm_mb: Option<f64>,
}

// ---------------------------------------------------------------------------------------
// The batch

/// The tenant config every contender maps with (the acme tenant of examples/weir.toml,
/// with the remove policy varying by tenant).
pub(crate) fn tenant_config(i: usize) -> Value {
    json!({
        "external_id_field": if i.is_multiple_of(3) { "Weir_Customer_Id__c" } else { "External_Id__c" },
        "external_id": "/customerId",
        "api_version": if i.is_multiple_of(2) { "v61.0" } else { "v60.0" },
        "on_remove": if i.is_multiple_of(2) { "delete" } else { "skip" },
    })
}

const TABLE_ARN: &str =
    "arn:aws:dynamodb:eu-west-1:123456789012:table/Customers/stream/2026-11-30T00:00:00.000";

/// A DynamoDB stream event of `n` records of about 1 KB each: every attribute type,
/// unicode and escapes, decimals, 38-digit integers, INSERT/MODIFY/REMOVE over `tenants`
/// tenants, and one record in 200 without a name (the mapping rejects it).
pub fn generate(n: usize, tenants: usize, seed: u64) -> Value {
    let mut rng = fastrand::Rng::with_seed(seed);
    let names = [
        "Hank Scorpio",
        "Zoë Ångström",
        "株式会社グローバル",
        "O'Brien & \"Sons\"",
        "Back\\slash\tTab Ltd",
        "Émile Zola SARL",
        "Ωmega Systems",
        "Ünïcödé GmbH 🚀",
    ];
    const COUNTRIES: [&str; 6] = ["US", "CH", "BR", "JP", "PL", "IS"];
    let cities = [
        "Springfield",
        "Zürich",
        "São Paulo",
        "東京",
        "Kraków",
        "Reykjavík",
    ];
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let tenant = format!("t{}", rng.usize(..tenants.max(1)));
            let customer = if rng.u8(..10) == 0 {
                format!("C-{i}/{}", rng.u16(..1000))
            } else {
                format!("C-{i:06}")
            };
            let image = |rng: &mut fastrand::Rng, version: u32| {
                let lifetime = if rng.u8(..8) == 0 {
                    // More digits than an f64 or an i64 holds.
                    format!("{}{:018}{:018}", rng.u8(1..10), rng.u64(..10u64.pow(18)), rng.u64(..10u64.pow(18)))
                } else {
                    format!("{}.{:02}", rng.u32(..5_000_000), rng.u8(..100))
                };
                let mut img = json!({
                    "tenantId": {"S": tenant},
                    "customerId": {"S": customer},
                    "email": {"S": format!("contact{i}@example.com")},
                    "phone": {"S": format!("+1 555 {:04}", rng.u16(..10000))},
                    "website": {"S": format!("https://customer{i}.example/path?q=a&b=\"c\"")},
                    "lifetimeValue": {"N": lifetime},
                    "employees": {"N": rng.u32(1..250_000).to_string()},
                    "score": {"N": format!("0.{:06}", rng.u32(..1_000_000))},
                    "active": {"BOOL": rng.bool()},
                    "deletedAt": {"NULL": true},
                    "version": {"N": version.to_string()},
                    "address": {"M": {
                        "street": {"S": format!("{} Evergreen Terrace", rng.u16(1..2000))},
                        "city": {"S": cities[rng.usize(..cities.len())]},
                        "country": {"S": COUNTRIES[rng.usize(..COUNTRIES.len())]},
                        "zip": {"S": format!("{:05}", rng.u32(..100_000))},
                        "geo": {"M": {
                            "lat": {"N": format!("{}.{:06}", rng.i8(-89..89), rng.u32(..1_000_000))},
                            "lon": {"N": format!("{}.{:06}", rng.i16(-179..179), rng.u32(..1_000_000))}
                        }}
                    }},
                    "labels": {"SS": ["enterprise", "priority", "emea"]},
                    "luckyNumbers": {"NS": ["7", "42", "12345678901234567890123456789"]},
                    "avatar": {"B": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"},
                    "history": {"L": [
                        {"M": {"at": {"S": "2026-01-01T00:00:00Z"}, "what": {"S": "created"}, "amount": {"N": "0"}}},
                        {"M": {"at": {"S": "2026-03-04T05:06:07Z"}, "what": {"S": "upgraded"}, "amount": {"N": "199.99"}}}
                    ]},
                    "notes": {"S": "Line one.\nLine two with “quotes” and a tab\tand a backslash \\ end."}
                });
                if rng.u8(..200) != 0 {
                    img["name"] = json!({"S": format!("{} #{i}", names[rng.usize(..names.len())])});
                }
                img
            };
            let keys = json!({"tenantId": {"S": tenant}, "customerId": {"S": customer}});
            let roll = rng.u8(..10);
            let (name, new, old) = match roll {
                0..=1 => ("INSERT", Some(image(&mut rng, 1)), None),
                2..=8 => ("MODIFY", Some(image(&mut rng, 2)), Some(image(&mut rng, 1))),
                _ => ("REMOVE", None, Some(image(&mut rng, 2))),
            };
            let mut ddb = json!({
                "ApproximateCreationDateTime": 1_764_489_600 + i as u64,
                "Keys": keys,
                "SequenceNumber": format!("{:021}", 111_000_000_000_000_000_000u128 + i as u128),
                "SizeBytes": 1024,
                "StreamViewType": "NEW_AND_OLD_IMAGES"
            });
            if let Some(v) = new {
                ddb["NewImage"] = v;
            }
            if let Some(v) = old {
                ddb["OldImage"] = v;
            }
            json!({
                "eventID": format!("{:032x}", rng.u128(..)),
                "eventName": name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "eu-west-1",
                "eventSourceARN": TABLE_ARN,
                "dynamodb": ddb
            })
        })
        .collect();
    json!({ "Records": records })
}

// ---------------------------------------------------------------------------------------
// The native contender: salesforce-account written in the host

/// Account fields and the item attributes they come from (as the plugin has them).
const FIELDS: &[(&str, &str)] = &[
    ("AnnualRevenue", "/lifetimeValue"),
    ("BillingCity", "/address/city"),
    ("BillingCountry", "/address/country"),
    ("BillingPostalCode", "/address/zip"),
    ("BillingStreet", "/address/street"),
    ("Name", "/name"),
    ("NumberOfEmployees", "/employees"),
    ("Phone", "/phone"),
    ("Website", "/website"),
];

/// The SDK's `eventbridge_safe`, on raw JSON text: integers outside i64 become strings,
/// everything else is written as serde_json writes it, digits kept.
fn write_safe(raw: &str, out: &mut String) -> anyhow::Result<()> {
    match raw.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(raw)?;
            out.push_str(&serde_json::to_string(&s)?);
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(raw)?;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_safe(item.get(), out)?;
            }
            out.push(']');
        }
        Some(b'{') => {
            let fields: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(raw)?;
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k)?);
                out.push(':');
                write_safe(v.get(), out)?;
            }
            out.push('}');
        }
        Some(b'-' | b'0'..=b'9') => {
            if !raw.contains(['.', 'e', 'E']) && raw.parse::<i64>().is_err() {
                out.push('"');
                out.push_str(raw);
                out.push('"');
            } else {
                out.push_str(raw);
            }
        }
        _ => out.push_str(raw),
    }
    Ok(())
}

fn external_id(image: &TypedImage<'_>, pointer: &str) -> Result<Option<String>, CallError> {
    let Some(v) = image.to_json(pointer).map_err(CallError::Decode)? else {
        return Ok(None);
    };
    Ok(match v.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(&v)
            .ok()
            .filter(|s| !s.is_empty()),
        Some(b'-' | b'0'..=b'9') => Some(v),
        _ => None,
    })
}

fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the `salesforce-account` plugin does, in the host.
pub fn native_transform(
    record: &LazyRecord<'_>,
    config: &Value,
) -> Result<Vec<PluginEvent>, CallError> {
    let text = |k: &str| config.get(k).and_then(Value::as_str);
    let rejected = |why: &str| CallError::Rejected(why.to_owned());
    let field = text("external_id_field").ok_or_else(|| {
        rejected("config.external_id_field must name the Account's external id field")
    })?;
    let id_pointer = text("external_id").unwrap_or("/customerId");
    let api_version = text("api_version").unwrap_or("v61.0");
    let parsed = record.parsed();
    let remove = parsed.change() == Change::Remove;
    if remove && text("on_remove").unwrap_or("skip") == "skip" {
        return Ok(vec![]);
    }
    // Read in place from the stream's typed JSON, as a 0.2 plugin reads through the host.
    let keys = TypedImage::new(parsed.keys_text());
    let image = match parsed.change() {
        Change::Remove => parsed.old_image_text(),
        _ => parsed.new_image_text(),
    }
    .map(TypedImage::new);
    let image = image.as_ref().unwrap_or(&keys);
    let id = match external_id(image, id_pointer)? {
        Some(id) => id,
        None => external_id(&keys, id_pointer)?.ok_or_else(|| {
            CallError::Rejected(format!("the item has no external id at {id_pointer}"))
        })?,
    };
    let path = format!(
        "/services/data/{api_version}/sobjects/Account/{field}/{}",
        encode_path_segment(&id)
    );
    let json = |s: &str| serde_json::to_string(s).map_err(|e| CallError::Host(e.to_string()));
    let strings = |out: &mut String| -> Result<(), CallError> {
        out.push_str("\"externalId\":");
        out.push_str(&json(&id)?);
        out.push_str(",\"externalIdField\":");
        out.push_str(&json(field)?);
        out.push_str(",\"path\":");
        out.push_str(&json(&path)?);
        Ok(())
    };
    let mut detail = String::with_capacity(512);
    detail.push('{');
    let detail_type = if remove {
        strings(&mut detail)?;
        "SalesforceAccountDelete"
    } else {
        let mut body = String::with_capacity(384);
        let mut has_name = false;
        for (account_field, pointer) in FIELDS {
            let Some(v) = image.to_json(pointer).map_err(CallError::Decode)? else {
                continue;
            };
            if v == "null" {
                continue;
            }
            has_name |= *account_field == "Name";
            body.push(if body.is_empty() { '{' } else { ',' });
            body.push('"');
            body.push_str(account_field);
            body.push_str("\":");
            write_safe(&v, &mut body).map_err(|e| CallError::Host(e.to_string()))?;
        }
        if !has_name {
            return Err(rejected(
                "the item has no name; Salesforce requires Account.Name",
            ));
        }
        body.push('}');
        detail.push_str("\"body\":");
        detail.push_str(&body);
        detail.push(',');
        strings(&mut detail)?;
        "SalesforceAccountUpsert"
    };
    detail.push('}');
    Ok(vec![PluginEvent {
        destination: "salesforce".into(),
        detail_type: detail_type.into(),
        detail,
        resources: vec![],
    }])
}

/// The native contender: the same Salesforce mapping written in Rust, behind the core's
/// transform traits, so its records take weir's own path (decode, route, validate,
/// envelope, verdicts) and only the plugin differs.
pub(crate) struct NativeMapping {
    pub(crate) reference: Arc<PluginRef>,
}

/// One tenant's native instance: its config, parsed on the first call (a tenant's config
/// never changes within a pipeline), as a plugin instance parses it once.
pub(crate) struct NativeInstance {
    config: Option<(String, Value)>,
}

impl Plugin for NativeMapping {
    type Instance = NativeInstance;

    fn reference(&self) -> &Arc<PluginRef> {
        &self.reference
    }

    fn instantiate(&self, _tenant: &str, _limits: Limits) -> Result<NativeInstance, CallError> {
        Ok(NativeInstance { config: None })
    }
}

impl Instance for NativeInstance {
    fn transform(&mut self, record: &LazyRecord<'_>, config_json: &str) -> CallReport {
        let started = Instant::now();
        let config = match &self.config {
            Some((text, value)) if text == config_json => Ok(value),
            _ => serde_json::from_str(config_json)
                .map(|v| &self.config.insert((config_json.to_owned(), v)).1)
                .map_err(|e| CallError::Host(format!("tenant config: {e}"))),
        };
        let result = config.and_then(|c| native_transform(record, c));
        report_since(started, result)
    }
}

/// A call of a transformer written in Rust: its result and its time (no fuel, no linear
/// memory, no limits of its own).
pub(crate) fn report_since(
    started: Instant,
    result: Result<Vec<PluginEvent>, CallError>,
) -> CallReport {
    CallReport {
        result,
        cost: CallCost {
            elapsed: started.elapsed(),
            fuel: None,
            memory_bytes: 0,
            limits: Limits::default(),
        },
    }
}

/// The reference every build of the mapping carries, so entries match byte for byte.
pub(crate) fn mapping_reference() -> Arc<PluginRef> {
    Arc::new(PluginRef {
        name: "salesforce-account".into(),
        sha256: String::new(),
    })
}

/// A pipeline over `manifest` whose every plugin is `transformer`.
pub(crate) fn pipeline_with<T: Plugin + 'static>(
    manifest_path: &Path,
    transformer: T,
) -> anyhow::Result<Arc<Pipeline<Loaded<T>>>> {
    let text = std::fs::read_to_string(manifest_path)?;
    let manifest = Manifest::parse(&text, Location::File(std::path::absolute(manifest_path)?))?;
    let slot = Arc::new(Loaded(Arc::new(transformer)));
    let slots = manifest
        .plugins
        .keys()
        .map(|name| (name.clone(), slot.clone()))
        .collect();
    Ok(Arc::new(Pipeline::new(manifest, slots)))
}

/// A pipeline over `manifest` whose every plugin is the native mapping.
fn native_pipeline(manifest_path: &Path) -> anyhow::Result<Arc<Pipeline<Loaded<NativeMapping>>>> {
    pipeline_with(
        manifest_path,
        NativeMapping {
            reference: mapping_reference(),
        },
    )
}

// ---------------------------------------------------------------------------------------
// Child processes

fn peak_rss_mb() -> f64 {
    proc_status_kb("VmHWM:") / 1024.0
}

pub(crate) fn rss_mb() -> f64 {
    proc_status_kb("VmRSS:") / 1024.0
}

fn proc_status_kb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

pub(crate) fn read_records(event: &Path) -> anyhow::Result<Vec<Box<RawValue>>> {
    #[derive(serde::Deserialize)]
    struct Event {
        #[serde(rename = "Records")]
        records: Vec<Box<RawValue>>,
    }
    let text = std::fs::read_to_string(event).with_context(|| format!("{}", event.display()))?;
    let e: Event = serde_json::from_str(&text).with_context(|| format!("{}", event.display()))?;
    Ok(e.records)
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub(crate) async fn lazy_loader(manifest: &Path) -> anyhow::Result<Loader> {
    lazy_loader_with(manifest, weir_core::pipeline::DEFAULT_FUNCTION_MEMORY_MB).await
}

/// [`lazy_loader`], its warm instances sized for a function of `memory_mb`.
pub(crate) async fn lazy_loader_with(manifest: &Path, memory_mb: u64) -> anyhow::Result<Loader> {
    let location = Location::File(std::path::absolute(manifest)?);
    let engine = Arc::new(
        PluginEngine::new()?
            .with_warm_budget(weir_core::pipeline::WarmBudget::for_memory_mb(memory_mb)),
    );
    Ok(Loader::load_lazy(
        ObjectStore::default(),
        engine,
        location,
        Duration::from_secs(3600),
    )
    .await?)
}

fn contender(
    name: &str,
    manifest_path: &Path,
    event: &Path,
    batch_size: usize,
    entries_out: &Path,
    memory_mb: u64,
) -> anyhow::Result<()> {
    let records = read_records(event)?;
    let total = records.len();
    let batches = invocation_texts(&records, batch_size);
    let rt = runtime()?;
    let mut batch_ms = Vec::with_capacity(batches.len());
    let mut all_entries: Vec<Entry> = Vec::new();
    let pipeline = if name == "native" {
        Contender::Native(native_pipeline(manifest_path)?)
    } else {
        Contender::Plugins(
            rt.block_on(lazy_loader_with(manifest_path, memory_mb))?
                .pipeline(),
        )
    };
    // Two passes over the batches; the first warms up, the second is the one timed.
    for _pass in 0..2 {
        batch_ms.clear();
        all_entries.clear();
        for text in &batches {
            let started = Instant::now();
            // What the Lambda runtime does with the invocation's bytes.
            let batch = serde_json::from_str::<StreamBatch>(text)?.records;
            let report = match &pipeline {
                Contender::Native(p) => dry_batch(&rt, p, batch)?,
                Contender::Plugins(p) => dry_batch(&rt, p, batch)?,
            };
            batch_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            all_entries.extend(report.entries);
        }
    }
    write_entries(entries_out, &all_entries)?;
    println!(
        "{}",
        json!({
            "name": name,
            "records": total,
            "entries": all_entries.len(),
            "batch_ms": batch_ms,
            "peak_rss_mb": peak_rss_mb(),
            "peak_vm_mb": proc_status_kb("VmPeak:") / 1024.0,
        })
    );
    Ok(())
}

/// Each invocation of `batch_size` records as the JSON text Lambda delivers: parsing it is
/// part of the timed work, as it is for the Node and Python peers.
pub(crate) fn invocation_texts(records: &[Box<RawValue>], batch_size: usize) -> Vec<String> {
    records
        .chunks(batch_size.max(1))
        .map(|chunk| {
            let texts: Vec<&str> = chunk.iter().map(|r| r.get()).collect();
            format!("{{\"Records\":[{}]}}", texts.join(","))
        })
        .collect()
}

/// What runs a contender's records: the native mapping, or weir's plugins.
enum Contender {
    Native(Arc<Pipeline<Loaded<NativeMapping>>>),
    Plugins(Arc<weir_runtime::Pipeline>),
}

/// One batch through weir's whole path, without publishing (dead letters collected).
pub(crate) fn dry_batch<S: Slot>(
    rt: &tokio::runtime::Runtime,
    pipeline: &Arc<Pipeline<S>>,
    records: Vec<Box<RawValue>>,
) -> anyhow::Result<batch::BatchReport> {
    let mut letters = Vec::new();
    rt.block_on(batch::run(
        pipeline.clone(),
        records,
        weir_core::sink::DryRun,
        DeadLetterSink::Collect(&mut letters),
        tokio::time::Instant::now() + Duration::from_secs(60),
    ))
    .map_err(anyhow::Error::from)
}

fn write_entries(path: &Path, entries: &[Entry]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for e in entries {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The cold-start child: everything a Lambda does before and during its first batch.
fn cold_start(manifest: &Path, event: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let rt = runtime()?;
    let records = read_records(event)?;
    let t1 = Instant::now();
    let engine = Arc::new(PluginEngine::new()?);
    let t2 = Instant::now();
    let location = Location::File(std::path::absolute(manifest)?);
    let loader = rt.block_on(Loader::load_lazy(
        ObjectStore::default(),
        engine,
        location,
        Duration::from_secs(3600),
    ))?;
    let t3 = Instant::now();
    let report = dry_batch(&rt, &loader.pipeline(), records)?;
    let t4 = Instant::now();
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
    let loaded = loader.pipeline().loaded_plugins().len();
    println!(
        "{}",
        json!({
            "entries": report.entries.len(),
            "plugins_loaded": loaded,
            "rss_mb": rss_mb(),
            "runtime_and_event_ms": ms(t0, t1),
            "engine_ms": ms(t1, t2),
            "manifest_ms": ms(t2, t3),
            "first_batch_ms": ms(t3, t4),
        })
    );
    std::io::stdout().flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The driver

fn all(s: &Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&s.out)?;
    let out = std::path::absolute(&s.out)?;
    let plugins = std::path::absolute(&s.plugins)?;
    let rust_plugin = plugins.join("salesforce-account.wasm");
    if !rust_plugin.exists() {
        bail!(
            "{} is missing: run ./dev plugins first",
            rust_plugin.display()
        );
    }
    let me = std::env::current_exe()?;
    anyhow::ensure!(!s.tenants.is_empty(), "--tenants names no tenant count");
    eprintln!(
        "weir-bench: {} records of ~1 KB, {:?} tenants, batches of {}",
        s.records, s.tenants, s.batch_size
    );
    let event_path = |n: usize| out.join(format!("events.{n}-tenants.json"));
    let first = s.tenants[0];
    let image_bytes = generate_event(&me, s.records, first, &event_path(first))?;

    // Precompile each plugin for this machine, as `weir compile` would.
    let plugin_dir = out.join("plugins");
    std::fs::create_dir_all(&plugin_dir)?;
    let mut weir_contenders = vec![("weir-rust", "salesforce-account")];
    for (name, file) in [
        ("weir-js", "salesforce-account-js"),
        ("weir-python", "salesforce-account-py"),
    ] {
        if plugins.join(format!("{file}.wasm")).exists() {
            weir_contenders.push((name, file));
        }
    }
    let mut precompile_ms = Vec::new();
    for (_, file) in &weir_contenders {
        let bytes = std::fs::read(plugins.join(format!("{file}.wasm")))?;
        std::fs::write(plugin_dir.join(format!("{file}.wasm")), &bytes)?;
        // In a child, like every heavy step: this process only starts and times others.
        let mut compile = Command::new(&me);
        compile
            .arg("precompile")
            .arg("--plugin")
            .arg(plugin_dir.join(format!("{file}.wasm")))
            .arg("--out")
            .arg(plugin_dir.join(format!("{file}.cwasm")));
        let ms = child_number(compile, &format!("precompiling {file}"))?;
        precompile_ms.push((file.to_string(), bytes.len(), ms));
    }
    let _ = std::fs::remove_dir_all(out.join("cache"));
    let mut rows = Vec::new();
    for (i, &n) in s.tenants.iter().enumerate() {
        if i > 0 {
            generate_event(&me, s.records, n, &event_path(n))?;
        }
        rows.extend(throughput(
            s,
            &me,
            &out,
            &plugin_dir,
            &weir_contenders,
            n,
            &event_path(n),
            i == 0,
        )?);
    }
    let cache = out.join("cache");
    let event_path = event_path(first);
    let weir_rust_manifest = out.join(format!("weir-rust.{first}-tenants.toml"));

    // What a fresh instance costs, in a child of its own.
    eprintln!("weir-bench: timing fresh instances");
    let fresh_out = Command::new(&me)
        .arg("fresh")
        .arg("--manifest")
        .arg(&weir_rust_manifest)
        .arg("--event")
        .arg(&event_path)
        .env("WEIR_CACHE_DIR", &cache)
        .stderr(Stdio::inherit())
        .output()
        .context("timing fresh instances: cannot start")?;
    if !fresh_out.status.success() {
        bail!("timing fresh instances failed: {}", fresh_out.status);
    }
    let fresh_table = String::from_utf8_lossy(&fresh_out.stdout).into_owned();
    let fresh_us = fresh_table
        .lines()
        .find(|l| l.contains("**fresh instance"))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|c| c.trim().trim_matches('*').parse::<f64>().ok());

    // Where the time goes, in a child of its own like every heavy step.
    eprintln!("weir-bench: timing the stages");
    let stages_out = Command::new(&me)
        .args(["stages", "--batch-size", &s.batch_size.to_string()])
        .arg("--manifest")
        .arg(&weir_rust_manifest)
        .arg("--event")
        .arg(&event_path)
        .env("WEIR_CACHE_DIR", &cache)
        .stderr(Stdio::inherit())
        .output()
        .context("timing the stages: cannot start")?;
    if !stages_out.status.success() {
        bail!("timing the stages failed: {}", stages_out.status);
    }
    let stages_table = String::from_utf8_lossy(&stages_out.stdout).into_owned();

    let cold = cold_starts(s, &me, &out, &plugins)?;
    let publish = publish_path(s, &out)?;
    let results = out.join("results.json");
    std::fs::write(&results, serde_json::to_vec_pretty(&rows)?)?;
    std::fs::write(
        out.join("details.json"),
        serde_json::to_vec_pretty(&json!({
            "cold_start": cold,
            "publish": publish,
            "precompile": precompile_ms,
            "image_bytes": image_bytes,
        }))?,
    )?;
    print_tables(
        s,
        &rows,
        &cold,
        &publish,
        &precompile_ms,
        image_bytes,
        fresh_us,
    );
    println!(
        "\n## A fresh instance (weir-rust, {first} tenants)\n\n{}",
        fresh_table.trim_end()
    );
    println!(
        "\n## Where the time goes, per record (batches of {}, median of 7 rounds in one process)\n\n{}",
        s.batch_size,
        stages_table.trim_end()
    );
    eprintln!("weir-bench: rows written to {}", results.display());
    Ok(())
}

/// Writes the generated batch over `tenants` tenants to `out`; returns its images' average
/// size (in a child, like every heavy step: this process only starts and times others).
fn generate_event(me: &Path, records: usize, tenants: usize, out: &Path) -> anyhow::Result<f64> {
    let mut generated = Command::new(me);
    generated
        .args([
            "generate",
            "--records",
            &records.to_string(),
            "--tenants",
            &tenants.to_string(),
        ])
        .arg("--out")
        .arg(out);
    child_number(generated, "generating the batch")
}

/// The throughput rows at one tenant count: each contender's median of `s.runs` runs, the
/// contenders taking turns. `all_contenders` adds weir-js, weir-python and python-boto3
/// (at large tenant counts they would take minutes a run).
#[allow(clippy::too_many_arguments)]
fn throughput(
    s: &Settings,
    me: &Path,
    out: &Path,
    plugin_dir: &Path,
    weir_contenders: &[(&str, &str)],
    tenant_count: usize,
    event_path: &Path,
    all_contenders: bool,
) -> anyhow::Result<Vec<Row>> {
    let cache = out.join("cache");
    let mut rows = Vec::new();
    let tenants: Vec<(String, Value)> = (0..tenant_count)
        .map(|i| (format!("t{i}"), tenant_config(i)))
        .collect();

    let suffix = format!("{tenant_count}-tenants");
    let native_entries = out.join(format!("native.{suffix}.entries.jsonl"));

    let mut contenders: Vec<(String, Command, PathBuf)> = Vec::new();
    for (name, file) in std::iter::once(("native", "salesforce-account")).chain(
        weir_contenders
            .iter()
            .copied()
            .filter(|(name, _)| all_contenders || *name == "weir-rust"),
    ) {
        let manifest = out.join(format!("{name}.{suffix}.toml"));
        std::fs::write(
            &manifest,
            // Every build is named `salesforce-account`, so the entries' metadata match.
            manifest_text(
                &[(
                    "salesforce-account",
                    plugin_dir.join(format!("{file}.wasm")),
                    sha256_of_file(&plugin_dir.join(format!("{file}.cwasm"))),
                )],
                &tenants,
                |_| "salesforce-account",
            ),
        )?;
        let entries = out.join(format!("{name}.{suffix}.entries.jsonl"));
        let mut cmd = Command::new(me);
        cmd.args([
            "contender",
            "--name",
            name,
            "--batch-size",
            &s.batch_size.to_string(),
        ])
        .arg("--manifest")
        .arg(&manifest)
        .arg("--event")
        .arg(event_path)
        .arg("--entries-out")
        .arg(&entries)
        .env("WEIR_CACHE_DIR", &cache);
        contenders.push((name.to_owned(), cmd, entries));
    }
    let peers_config = out.join(format!("peers-config.{suffix}.json"));
    std::fs::write(
        &peers_config,
        serde_json::to_vec_pretty(&json!({
            "event_bus": "weir-bench",
            "source": "weir.customers",
            "plugin": "salesforce-account",
            "tenant_attribute": "tenantId",
            "tenants": tenants.iter().cloned().collect::<serde_json::Map<String, Value>>(),
        }))?,
    )?;
    let peers = std::path::absolute(&s.peers)?;
    let python = out.join("venv/bin/python");
    let peer_specs: [(&str, PathBuf, Vec<PathBuf>); 2] = [
        (
            "python-boto3",
            python.clone(),
            vec![peers.join("python-boto3/run.py")],
        ),
        (
            "node-sdk",
            PathBuf::from("node"),
            vec![peers.join("node-sdk/run.mjs")],
        ),
    ];
    let mut skipped = Vec::new();
    for (name, program, script) in peer_specs {
        if !all_contenders && name != "node-sdk" {
            continue;
        }
        let ready = script.iter().all(|p| p.exists())
            && (program.components().count() == 1 || program.exists())
            && (name != "node-sdk" || peers.join("node-sdk/node_modules").exists());
        if !ready {
            skipped.push((name.to_owned(), "run bench/peers/setup first".to_owned()));
            continue;
        }
        let entries = out.join(format!("{name}.{suffix}.entries.jsonl"));
        let mut cmd = Command::new(&program);
        cmd.args(&script)
            .arg("--event")
            .arg(event_path)
            .arg("--config")
            .arg(&peers_config)
            // Two passes, like the weir contenders: the second is the one timed.
            .args([
                "--batch-size",
                &s.batch_size.to_string(),
                "--iterations",
                "2",
            ])
            .arg("--entries-out")
            .arg(&entries);
        contenders.push((name.to_owned(), cmd, entries));
    }

    // Runs go round the contenders, so a noisy moment of a shared machine hits them alike;
    // each contender's median run is reported.
    let mut runs: Vec<Vec<Row>> = vec![Vec::new(); contenders.len()];
    let mut failures: Vec<Option<Row>> = vec![None; contenders.len()];
    for run in 0..s.runs.max(1) {
        for (i, (name, cmd, entries)) in contenders.iter_mut().enumerate() {
            if failures[i].is_some() {
                continue;
            }
            eprintln!(
                "weir-bench: running {name} at {tenant_count} tenants ({}/{}): {cmd:?}",
                run + 1,
                s.runs.max(1)
            );
            let output = cmd
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| format!("starting {name}"))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            let report: Option<ContenderReport> = stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str(l).ok());
            let Some(report) = report.filter(|_| output.status.success()) else {
                failures[i] = Some(Row {
                    name: name.clone(),
                    tenants: tenant_count,
                    records_per_s: f64::NAN,
                    us_per_record: f64::NAN,
                    p99_batch_ms: f64::NAN,
                    peak_rss_mb: f64::NAN,
                    peak_vm_mb: None,
                    status: format!("failed: {}", output.status),
                });
                continue;
            };
            let status = compare_entries(&native_entries, entries)?;
            let r = row(name, tenant_count, &report, s.batch_size, status);
            eprintln!("weir-bench: {name}: {:.1} µs/record", r.us_per_record);
            runs[i].push(r);
        }
    }
    for (mut done, failure) in runs.into_iter().zip(failures) {
        if let Some(f) = failure {
            rows.push(f);
            continue;
        }
        done.sort_by(|a, b| a.records_per_s.total_cmp(&b.records_per_s));
        // A run whose entries differ makes the contender wrong, whatever the others did.
        let wrong = done.iter().find(|r| !r.status.starts_with("ok")).cloned();
        let median = done.get(done.len() / 2).cloned();
        if let Some(r) = wrong.or(median) {
            rows.push(r);
        }
    }
    for (name, why) in skipped {
        rows.push(Row {
            name,
            tenants: tenant_count,
            records_per_s: f64::NAN,
            us_per_record: f64::NAN,
            p99_batch_ms: f64::NAN,
            peak_rss_mb: f64::NAN,
            peak_vm_mb: None,
            status: format!("skipped: {why}"),
        });
    }
    Ok(rows)
}

/// Runs a child step that prints one number, and returns it.
fn child_number(mut cmd: Command, what: &str) -> anyhow::Result<f64> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("{what}: cannot start"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("{what}: no number printed"))
}

fn average_image_bytes(event: &Value) -> f64 {
    let Some(records) = event["Records"].as_array() else {
        return 0.0;
    };
    let (mut n, mut bytes) = (0usize, 0usize);
    for r in records {
        for key in ["NewImage", "OldImage"] {
            if let Some(img) = r["dynamodb"].get(key) {
                n += 1;
                bytes += img.to_string().len();
            }
        }
    }
    bytes as f64 / n.max(1) as f64
}

/// The sha256 of a file, if it can be read: the pin of a `.cwasm`.
fn sha256_of_file(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| hex::encode(sha2::Sha256::digest(&b)))
}

/// A manifest naming `plugins` (name, `.wasm`, and the pin of its `.cwasm` if it has one).
fn manifest_text<'a>(
    plugins: &[(&str, PathBuf, Option<String>)],
    tenants: &[(String, Value)],
    plugin_of: impl Fn(usize) -> &'a str,
) -> String {
    let mut m = String::from("event_bus = \"weir-bench\"\n\n");
    for (name, path, compiled_pin) in plugins {
        m.push_str(&format!(
            "[plugins.{name}]\npath = {:?}\n",
            path.display().to_string()
        ));
        if let Some(pin) = compiled_pin {
            m.push_str(&format!("compiled_sha256 = \"{pin}\"\n"));
        }
        m.push('\n');
    }
    m.push_str("[[routes]]\ntable = \"Customers\"\nsource = \"weir.customers\"\ntenant = { attribute = \"tenantId\" }\n\n");
    for (i, (id, config)) in tenants.iter().enumerate() {
        let table: toml::Table = serde_json::from_value(config.clone()).unwrap_or_default();
        m.push_str(&format!(
            "[tenants.{id}]\nplugin = {:?}\nconfig = {}\nlimits = {{ time_ms = 10000 }}\n\n",
            plugin_of(i),
            toml::Value::Table(table)
        ));
    }
    m
}

fn row(name: &str, tenants: usize, r: &ContenderReport, batch_size: usize, status: String) -> Row {
    // Only the last pass counts: the first warms up caches, JITs and allocators.
    let per_pass = r.records.div_ceil(batch_size.max(1));
    let timed = &r.batch_ms[r.batch_ms.len().saturating_sub(per_pass)..];
    let total_ms: f64 = timed.iter().sum();
    Row {
        name: name.to_owned(),
        tenants,
        records_per_s: r.records as f64 / (total_ms / 1000.0),
        us_per_record: total_ms * 1000.0 / r.records.max(1) as f64,
        p99_batch_ms: percentile(timed, 0.99),
        peak_rss_mb: r.peak_rss_mb,
        peak_vm_mb: r.peak_vm_mb,
        status,
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// `ok` when `actual` holds exactly the native entries, else what differs.
fn compare_entries(expected: &Path, actual: &Path) -> anyhow::Result<String> {
    let want = std::fs::read_to_string(expected).context("native entries")?;
    let got = std::fs::read_to_string(actual).with_context(|| format!("{}", actual.display()))?;
    if want == got {
        return Ok(format!("ok ({} entries)", want.lines().count()));
    }
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let first = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    Ok(format!(
        "wrong: {} entries vs native's {}; first difference at entry {}",
        g.len(),
        w.len(),
        first + 1
    ))
}

/// One cold-start case's median.
#[derive(Debug, Serialize)]
struct ColdStart {
    plugins: usize,
    precompiled: bool,
    start_to_first_batch_ms: f64,
    rss_after_load_mb: f64,
}

fn cold_starts(
    s: &Settings,
    me: &Path,
    out: &Path,
    plugins: &Path,
) -> anyhow::Result<Vec<ColdStart>> {
    let dir = out.join("cold");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let base = std::fs::read(plugins.join("salesforce-account.wasm"))?;
    let event = generate(100, 20, 11);
    let event_path = dir.join("events.json");
    std::fs::write(&event_path, serde_json::to_vec(&event)?)?;
    let mut results = Vec::new();
    for count in [1usize, 20] {
        for precompiled in [true, false] {
            let case = dir.join(format!(
                "{count}-{}",
                if precompiled { "cwasm" } else { "wasm" }
            ));
            std::fs::create_dir_all(&case)?;
            let mut specs = Vec::new();
            for i in 0..count {
                // Distinct bytes per plugin (a custom section naming it), so each is a
                // plugin of its own to load, not a cache hit.
                let bytes =
                    with_custom_section(&base, "weir-bench-variant", i.to_string().as_bytes());
                let path = case.join(format!("p{i}.wasm"));
                std::fs::write(&path, &bytes)?;
                // Precompiled and pinned, as `weir compile --manifest` leaves it.
                let pin = if precompiled {
                    let cwasm = PluginEngine::precompile(&bytes, None)?;
                    std::fs::write(case.join(format!("p{i}.cwasm")), &cwasm)?;
                    Some(hex::encode(sha2::Sha256::digest(&cwasm)))
                } else {
                    None
                };
                specs.push((format!("p{i}"), path, pin));
            }
            let names: Vec<String> = specs.iter().map(|(n, _, _)| n.clone()).collect();
            let spec_refs: Vec<(&str, PathBuf, Option<String>)> = specs
                .iter()
                .map(|(n, p, pin)| (n.as_str(), p.clone(), pin.clone()))
                .collect();
            let tenants: Vec<(String, Value)> = (0..20)
                .map(|i| (format!("t{i}"), tenant_config(i)))
                .collect();
            let manifest = case.join("weir.toml");
            std::fs::write(
                &manifest,
                manifest_text(&spec_refs, &tenants, |i| names[i % count].as_str()),
            )?;
            let mut times = Vec::new();
            let mut rss = Vec::new();
            for run in 0..s.cold_runs.max(1) {
                // A fresh compiled-code cache each run: nothing carried over.
                let cache = case.join(format!("cache-{run}"));
                let started = Instant::now();
                let mut child = Command::new(me)
                    .arg("cold-start")
                    .arg("--manifest")
                    .arg(&manifest)
                    .arg("--event")
                    .arg(&event_path)
                    .env("WEIR_CACHE_DIR", &cache)
                    .env("RUST_LOG", "error")
                    .stdout(Stdio::piped())
                    .spawn()?;
                let mut line = String::new();
                if let Some(stdout) = child.stdout.take() {
                    BufReader::new(stdout).read_line(&mut line)?;
                }
                let elapsed = started.elapsed().as_secs_f64() * 1000.0;
                let status = child.wait()?;
                let report: Value = serde_json::from_str(&line).with_context(|| {
                    format!("cold start ({count} plugins) printed {line:?}, {status}")
                })?;
                if report["plugins_loaded"].as_u64() != Some(count as u64) {
                    bail!(
                        "cold start with {count} plugins loaded {}",
                        report["plugins_loaded"]
                    );
                }
                times.push(elapsed);
                rss.push(report["rss_mb"].as_f64().unwrap_or(f64::NAN));
            }
            results.push(ColdStart {
                plugins: count,
                precompiled,
                start_to_first_batch_ms: percentile(&times, 0.5),
                rss_after_load_mb: percentile(&rss, 0.5),
            });
        }
    }
    Ok(results)
}

/// `component` with a custom section appended (valid anywhere at the top level).
fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = component.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// The publish path's figures.
#[derive(Debug, Serialize)]
struct PublishFigures {
    records: usize,
    entries: usize,
    calls: usize,
    entries_per_call: f64,
    bytes_per_call: f64,
    /// Calls with fewer than 10 entries while 10 or more were pending.
    short_calls_with_10_pending: usize,
    transform_ms: f64,
    publish_ms: f64,
    publish_share: f64,
}

/// The generated records' items (each record's new image, or a REMOVE's old one) as a
/// local copy of a DynamoDB export in `files` data files.
fn write_export(items: usize, tenants: usize, files: usize, out: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let event = generate(items, tenants, 7);
    let records = event["Records"].as_array().context("generated records")?;
    std::fs::create_dir_all(out.join("data"))?;
    let per_file = records.len().div_ceil(files.max(1)).max(1);
    let mut listing = String::new();
    for (f, chunk) in records.chunks(per_file).enumerate() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for r in chunk {
            let image = match r["dynamodb"].get("NewImage") {
                Some(i) => i,
                None => &r["dynamodb"]["OldImage"],
            };
            writeln!(gz, "{}", json!({ "Item": image }))?;
        }
        let name = format!("data/bench-{f}.json.gz");
        std::fs::write(out.join(&name), gz.finish()?)?;
        listing.push_str(&format!(
            "{}\n",
            json!({"itemCount": chunk.len(), "dataFileS3Key": format!("bench/AWSDynamoDB/bench/{name}")})
        ));
    }
    std::fs::write(out.join("manifest-files.json"), listing)?;
    std::fs::write(
        out.join("manifest-summary.json"),
        json!({
            "tableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/Customers",
            "itemCount": records.len(),
            "exportFormat": "DYNAMODB_JSON",
        })
        .to_string(),
    )?;
    println!(
        "{} items in {} files under {}",
        records.len(),
        files,
        out.display()
    );
    Ok(())
}

/// A PutEvents endpoint that accepts everything at once: it stands for EventBridge with no
/// latency, so what is measured is weir's side of publishing.
struct ZeroLatencyEventBridge {
    port: u16,
    calls: Arc<Mutex<Vec<(usize, usize)>>>,
}

impl ZeroLatencyEventBridge {
    fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let calls: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
        let shared = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let calls = shared.clone();
                std::thread::spawn(move || serve_put_events(stream, &calls));
            }
        });
        Ok(ZeroLatencyEventBridge { port, calls })
    }
}

fn serve_put_events(stream: TcpStream, calls: &Mutex<Vec<(usize, usize)>>) {
    // Answer at once: no Nagle delay waiting on the client's delayed ACK.
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut target) = (0usize, String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "x-amz-target" => target = v.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = if target == "AWSEvents.PutEvents" {
            let n = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["Entries"].as_array().map(Vec::len))
                .unwrap_or(0);
            if let Ok(mut c) = calls.lock() {
                c.push((n, body.len()));
            }
            let entries: Vec<Value> = (0..n)
                .map(|i| json!({"EventId": format!("e{i}")}))
                .collect();
            json!({"FailedEntryCount": 0, "Entries": entries}).to_string()
        } else {
            json!({"Name": "weir-bench", "Arn": "arn:aws:events:eu-west-1:123456789012:event-bus/weir-bench"}).to_string()
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        if writer
            .write_all(format!("{head}{reply}").as_bytes())
            .is_err()
        {
            return;
        }
    }
}

fn publish_path(s: &Settings, out: &Path) -> anyhow::Result<PublishFigures> {
    let endpoint = ZeroLatencyEventBridge::start()?;
    let rt = runtime()?;
    let first = s.tenants.first().copied().unwrap_or(8);
    let manifest = out.join(format!("weir-rust.{first}-tenants.toml"));
    let records = read_records(&out.join(format!("events.{first}-tenants.json")))?;
    let records: Vec<Box<RawValue>> = records.into_iter().take(10_000).collect();
    let n = records.len();
    let sdk = weir_aws::client::local_sdk_config(
        &format!("http://127.0.0.1:{}", endpoint.port),
        "eu-west-1",
    );
    let publisher = Publisher::new(
        weir_aws::client::eventbridge(&sdk),
        PublishConfig::default(),
    );
    let loader = rt.block_on(lazy_loader(&manifest))?;
    let pipeline = loader.pipeline();
    let (mut transform_ms, mut publish_ms, mut entries_total, mut short) =
        (0.0, 0.0, 0usize, 0usize);
    for batch in records.chunks(s.batch_size.max(1)) {
        let started = Instant::now();
        let report = dry_batch(&rt, &pipeline, batch.to_vec())?;
        transform_ms += started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let published = rt.block_on(publisher.publish(
            &report.entries,
            tokio::time::Instant::now() + Duration::from_secs(60),
        ));
        publish_ms += started.elapsed().as_secs_f64() * 1000.0;
        entries_total += report.entries.len();
        // Calls are packed in order: all but the last carry 10 when 10 were pending.
        let sizes: Vec<usize> = published.call_sizes.iter().map(|(e, _)| *e).collect();
        let mut pending = report.entries.len();
        for size in sizes {
            if pending >= 10 && size < 10 {
                short += 1;
            }
            pending = pending.saturating_sub(size);
        }
    }
    let calls = endpoint.calls.lock().map(|c| c.clone()).unwrap_or_default();
    let (entries_sent, bytes): (usize, usize) =
        calls.iter().fold((0, 0), |(e, b), (n, l)| (e + n, b + l));
    if entries_sent != entries_total {
        bail!("the endpoint received {entries_sent} entries, weir made {entries_total}");
    }
    Ok(PublishFigures {
        records: n,
        entries: entries_total,
        calls: calls.len(),
        entries_per_call: entries_sent as f64 / calls.len().max(1) as f64,
        bytes_per_call: bytes as f64 / calls.len().max(1) as f64,
        short_calls_with_10_pending: short,
        transform_ms,
        publish_ms,
        publish_share: publish_ms / (transform_ms + publish_ms),
    })
}

fn print_tables(
    s: &Settings,
    rows: &[Row],
    cold: &[ColdStart],
    publish: &PublishFigures,
    precompile: &[(String, usize, f64)],
    image_bytes: f64,
    fresh_us: Option<f64>,
) {
    for &n in &s.tenants {
        println!(
            "## Throughput: {} records (images {:.0} bytes on average), {n} tenants, batches of {}, median of {} runs\n",
            s.records,
            image_bytes,
            s.batch_size,
            s.runs.max(1)
        );
        println!(
            "| contender | tenants | records/s | µs/record | p99 batch (ms) | peak RSS (MB) | VmPeak (GiB) | entries |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        for r in rows.iter().filter(|r| r.tenants == n) {
            println!(
                "| {} | {} | {:.0} | {:.1} | {:.2} | {:.1} | {} | {} |",
                r.name,
                r.tenants,
                r.records_per_s,
                r.us_per_record,
                r.p99_batch_ms,
                r.peak_rss_mb,
                r.peak_vm_mb
                    .map_or("-".into(), |mb| format!("{:.0}", mb / 1024.0)),
                r.status
            );
        }
        println!();
    }
    println!(
        "\n## Cold start: process start to the first batch of 100 records done (median of {})\n",
        s.cold_runs
    );
    println!(
        "| plugins | precompiled (pinned .cwasm) | start → first batch (ms) | RSS after loading (MB) |"
    );
    println!("| ---: | --- | ---: | ---: |");
    for c in cold {
        println!(
            "| {} | {} | {:.1} | {:.1} |",
            c.plugins,
            if c.precompiled { "yes" } else { "no" },
            c.start_to_first_batch_ms,
            c.rss_after_load_mb
        );
    }
    println!(
        "\n## Publish path: {} records against a zero-latency PutEvents endpoint\n",
        publish.records
    );
    println!(
        "| entries | calls | entries/call | bytes/call | short calls with ≥10 pending | share of batch time publishing |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {} | {:.2} | {:.0} | {} | {:.1} % |",
        publish.entries,
        publish.calls,
        publish.entries_per_call,
        publish.bytes_per_call,
        publish.short_calls_with_10_pending,
        publish.publish_share * 100.0
    );
    println!("\n## Precompiling (`weir compile`) on this machine\n");
    println!("| plugin | size (KB) | compile (ms) |");
    println!("| --- | ---: | ---: |");
    for (name, size, ms) in precompile {
        println!("| {name} | {:.0} | {ms:.0} |", *size as f64 / 1024.0);
    }

    let first = s.tenants.first().copied().unwrap_or(8);
    let get_at = |n: &str, tenants: usize| {
        rows.iter()
            .find(|r| r.name == n && r.tenants == tenants && r.status.starts_with("ok"))
    };
    let get = |n: &str| get_at(n, first);
    let ratio = |a: &str, b: &str| match (get(a), get(b)) {
        (Some(a), Some(b)) => Some(a.records_per_s / b.records_per_s),
        _ => None,
    };
    let cold20 = cold.iter().find(|c| c.plugins == 20 && c.precompiled);
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    println!("\n## Goals (the ratios without a tenant count are at {first} tenants)\n");
    println!("| goal | measured | |");
    println!("| --- | ---: | --- |");
    let mut goals: Vec<(String, String, Option<bool>)> = Vec::new();
    // Per tenant count: weir-rust against its own first-count speed and against node-sdk,
    // its memory against node-sdk's, its address space against the smallest count's.
    let base = get("weir-rust");
    let vm_at = |n: usize| get_at("weir-rust", n).and_then(|r| r.peak_vm_mb);
    for &n in s.tenants.iter().skip(1) {
        let (Some(b), Some(w)) = (base, get_at("weir-rust", n)) else {
            continue;
        };
        let slower = w.us_per_record / b.us_per_record;
        goals.push((
            format!("weir-rust at {n} tenants ≤ 1.3 × its µs/record at {first}"),
            format!("{slower:.2} ×"),
            Some(slower <= 1.3),
        ));
        let node = get_at("node-sdk", n);
        goals.push((
            format!("weir-rust at {n} tenants ≥ 2 × node-sdk"),
            node.map_or("-".into(), |x| {
                format!("{:.1} ×", w.records_per_s / x.records_per_s)
            }),
            node.map(|x| w.records_per_s / x.records_per_s >= 2.0),
        ));
        if n >= 10_000 {
            goals.push((
                format!("weir-rust peak RSS at {n} tenants ≤ 256 MB and below node-sdk's"),
                format!(
                    "{:.0} MB (node-sdk {})",
                    w.peak_rss_mb,
                    node.map_or("-".into(), |x| format!("{:.0} MB", x.peak_rss_mb))
                ),
                Some(w.peak_rss_mb <= 256.0 && node.is_none_or(|x| w.peak_rss_mb < x.peak_rss_mb)),
            ));
        }
    }
    let vm_base = s
        .tenants
        .iter()
        .find(|&&n| n >= 100)
        .and_then(|&n| vm_at(n));
    if let Some(vb) = vm_base {
        let others: Vec<String> = s
            .tenants
            .iter()
            .filter_map(|&n| vm_at(n).map(|v| format!("{n}: {:.0} GiB", v / 1024.0)))
            .collect();
        let same = s
            .tenants
            .iter()
            .filter(|&&n| n >= 100)
            .filter_map(|&n| vm_at(n))
            // The pool is the same; the rest of the process (the event, the manifest) may
            // differ by a little.
            .all(|v| (v - vb).abs() <= 512.0);
        goals.push((
            "weir-rust VmPeak the same at 100, 1,000 and 10,000 tenants (within 0.5 GiB)".into(),
            others.join(", "),
            Some(same),
        ));
    }
    goals.push((
        "a fresh instance, instantiate to the end of its first call, ≤ 20 µs".into(),
        fresh_us.map_or("-".into(), |us| format!("{us:.1} µs")),
        fresh_us.map(|us| us <= 20.0),
    ));
    goals.extend([
        (
            "weir-rust ≥ 0.9 × native records/s".into(),
            ratio("weir-rust", "native").map_or("-".into(), |r| format!("{r:.2} ×")),
            ratio("weir-rust", "native").map(|r| r >= 0.9),
        ),
        (
            "weir-rust ≥ 10 × python-boto3".into(),
            ratio("weir-rust", "python-boto3").map_or("-".into(), |r| format!("{r:.1} ×")),
            ratio("weir-rust", "python-boto3").map(|r| r >= 10.0),
        ),
        (
            "weir-rust ≥ 5 × node-sdk".into(),
            ratio("weir-rust", "node-sdk").map_or("-".into(), |r| format!("{r:.1} ×")),
            ratio("weir-rust", "node-sdk").map(|r| r >= 5.0),
        ),
        (
            "weir-js ≥ 0.5 × node-sdk".into(),
            ratio("weir-js", "node-sdk").map_or("-".into(), |r| format!("{r:.2} ×")),
            ratio("weir-js", "node-sdk").map(|r| r >= 0.5),
        ),
        (
            "weir-python ≥ 0.5 × node-sdk".into(),
            ratio("weir-python", "node-sdk").map_or("-".into(), |r| format!("{r:.2} ×")),
            ratio("weir-python", "node-sdk").map(|r| r >= 0.5),
        ),
        (
            "cold start with 20 pinned precompiled plugins no worse than before issue 14 (20.6 ms)"
                .into(),
            cold20.map_or("-".into(), |c| {
                format!("{:.1} ms", c.start_to_first_batch_ms)
            }),
            cold20.map(|c| c.start_to_first_batch_ms <= 20.6),
        ),
        (
            "RSS ≤ 64 MB with 20 plugins loaded".into(),
            cold20.map_or("-".into(), |c| format!("{:.1} MB", c.rss_after_load_mb)),
            cold20.map(|c| c.rss_after_load_mb <= 64.0),
        ),
        (
            "PutEvents calls carry 10 entries whenever ≥ 10 are pending".into(),
            format!(
                "{} short calls of {}",
                publish.short_calls_with_10_pending, publish.calls
            ),
            Some(publish.short_calls_with_10_pending == 0),
        ),
    ]);
    for (goal, measured, ok) in goals {
        println!("| {goal} | {measured} | {} |", verdict(ok));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_section_is_appended_with_its_length() {
        let out = with_custom_section(b"\0asm", "n", b"xy");
        assert_eq!(&out[4..], &[0, 4, 1, b'n', b'x', b'y']);
    }

    #[test]
    fn percentile_takes_the_rank_not_an_average() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
    }

    #[test]
    fn big_integers_become_strings_and_decimals_keep_their_digits() {
        let mut out = String::new();
        write_safe(
            r#"{"b":12345678901234567890123456789012345678,"a":[100000.00,-7,"x\by"]}"#,
            &mut out,
        )
        .expect("valid");
        assert_eq!(
            out,
            r#"{"a":[100000.00,-7,"x\by"],"b":"12345678901234567890123456789012345678"}"#
        );
    }

    #[test]
    fn generated_images_are_about_a_kilobyte() {
        let event = generate(200, 4, 1);
        let bytes = average_image_bytes(&event);
        assert!((800.0..1600.0).contains(&bytes), "{bytes}");
        assert_eq!(event["Records"].as_array().map(Vec::len), Some(200));
    }
}
