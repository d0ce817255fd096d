//! The `weir` command line.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use crate::batch::{self, DeadLetterSink};
use crate::dead_letter::{DeadLetterDir, DeadLetterQueue, QueueConfig};
use crate::plugin::PluginEngine;
use crate::publish::{PublishConfig, Publisher};
use crate::record::{self, StreamEvent};
use crate::reload::Loader;
use crate::store::{Location, Store};

mod compile;

/// weir maps DynamoDB Streams records with WebAssembly plugins and publishes them to
/// EventBridge.
#[derive(Debug, Parser)]
#[command(name = "weir", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the decoded records of a stream event as JSON Lines: exactly what plugins get.
    Decode {
        #[arg(long)]
        event: PathBuf,
    },
    /// Run a stream event through the manifest's plugins and print the PutEvents entries.
    Run {
        /// The manifest: a file or s3://bucket/key.
        #[arg(long)]
        manifest: String,
        #[arg(long)]
        event: PathBuf,
        /// Where each dead-lettered record is written, one JSON file per record (unless
        /// publishing to a manifest with a dead_letter_queue).
        #[arg(long, default_value = "weir-dead-letters")]
        dead_letter_dir: PathBuf,
        /// Publish to EventBridge and send dead letters to the manifest's SQS queue, using
        /// the standard AWS SDK configuration (environment, profile, AWS_ENDPOINT_URL).
        #[arg(long)]
        publish: bool,
        /// With --publish: seconds allowed for publishing before the rest is reported.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
        /// Print, on stderr, each record's plugin calls: fuel (instructions), peak linear
        /// memory and time, each beside its limit. Counting fuel compiles the plugins
        /// afresh (precompiled .cwasm files are for the faster engine without it).
        #[arg(long)]
        report: bool,
    },
    /// Load everything a manifest names (plugins, pins, contract, limits) and report every
    /// problem at once. Exit 0 when all is well, 1 otherwise.
    Check {
        #[arg(long)]
        manifest: String,
    },
    /// Precompile plugins to .cwasm files (next to each plugin, or in --out-dir), so the
    /// function never compiles at cold start, and print the pins a manifest needs to run
    /// them (a .cwasm is native code: it runs only when pinned).
    Compile {
        #[arg(required_unless_present = "manifest")]
        plugins: Vec<PathBuf>,
        /// The CPU to compile for: x86_64, or aarch64 for Graviton. Default: this machine.
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Instead: compile every plugin this (local) manifest names to where it looks for
        /// the .cwasm, and write both pins (sha256, compiled_sha256) into it.
        #[arg(long, conflicts_with_all = ["plugins", "out_dir"])]
        manifest: Option<PathBuf>,
    },
    /// Repair dead letters: run weir's dead-lettered records through the current manifest
    /// and plugins (--queue), or put an API destination's undelivered events back on the
    /// bus (--delivery-queue). A message is deleted only once done.
    Redrive {
        #[arg(long)]
        manifest: String,
        /// weir's dead-letter queue URL.
        #[arg(
            long,
            conflicts_with = "delivery_queue",
            required_unless_present = "delivery_queue"
        )]
        queue: Option<String>,
        /// An API destination's dead-letter queue URL.
        #[arg(long)]
        delivery_queue: Option<String>,
        /// The bus to put delivery events back on (default: the manifest's event_bus).
        #[arg(long)]
        bus: Option<String>,
        /// Show what would happen; publish and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print CloudFormation YAML for the manifest's [destinations]: per destination a
    /// Connection, ApiDestination, Rule and target, dead-letter queue, policy and alarm.
    Infra {
        /// The manifest: a file or s3://bucket/key.
        #[arg(long)]
        manifest: String,
    },
    /// Scaffold something new: `weir new plugin NAME --lang rust|js|python`.
    New {
        #[command(subcommand)]
        what: crate::scaffold::NewCommand,
    },
    /// Run a plugin's golden cases (CASES_DIR/<case>/event.json against entries.jsonl and
    /// dead-letters.jsonl) and print a diff for each case that differs. Exit 1 if any does.
    Test {
        /// The plugin under test (.wasm).
        #[arg(long)]
        plugin: PathBuf,
        /// The tenant's config, TOML or JSON (default: CASES_DIR/config.toml or config.json).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The plugin's name in the entries' metadata (default: the folder holding CASES_DIR).
        #[arg(long)]
        name: Option<String>,
        /// Rewrite every case's expectations with what the plugin now produces.
        #[arg(long)]
        update: bool,
        /// Print each case's per-record report: fuel, peak memory and time beside limits.
        #[arg(long)]
        report: bool,
        /// The folder of cases, one folder per case.
        cases_dir: PathBuf,
    },
}

/// A failure that is the caller's to fix (usage, manifest, plugin, event file): exit 2.
#[derive(Debug)]
struct SetupError(anyhow::Error);

/// Exit status for setup errors: a usage, manifest, plugin-load or event-file problem.
pub const EXIT_SETUP: u8 = 2;
/// Exit status when any record was dead-lettered.
pub const EXIT_DEAD_LETTERS: u8 = 1;
/// Exit status when any record could not be published within the time allowed.
pub const EXIT_UNPUBLISHED: u8 = 3;

/// Parses arguments, runs the command and maps its result to an exit status.
pub fn main() -> ExitCode {
    crate::telemetry::init_cli();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_SETUP } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weir: {}", one_line(&e.0));
            ExitCode::from(EXIT_SETUP)
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn setup<T>(r: anyhow::Result<T>) -> Result<T, SetupError> {
    r.map_err(SetupError)
}

fn run(cli: Cli) -> Result<ExitCode, SetupError> {
    match cli.command {
        Command::Decode { event } => decode(&event),
        Command::Run {
            manifest,
            event,
            dead_letter_dir,
            publish,
            timeout_secs,
            report,
        } => run_event(
            &manifest,
            &event,
            &dead_letter_dir,
            publish.then_some(Duration::from_secs(timeout_secs)),
            report,
        ),
        Command::Check { manifest } => check(&manifest),
        Command::Compile {
            plugins,
            target,
            out_dir,
            manifest,
        } => setup(match manifest {
            Some(m) => compile::manifest(&m, target.as_deref()),
            None => compile::plugins(&plugins, target.as_deref(), out_dir.as_deref()),
        })
        .map(|()| ExitCode::SUCCESS),
        Command::Redrive {
            manifest,
            queue,
            delivery_queue,
            bus,
            dry_run,
        } => redrive(&manifest, queue, delivery_queue, bus, dry_run),
        Command::Infra { manifest } => infra(&manifest),
        Command::New { what } => new(what),
        Command::Test {
            plugin,
            config,
            name,
            update,
            report,
            cases_dir,
        } => test_cases(
            crate::cases::TestOptions {
                plugin,
                config,
                name,
                update,
                report,
            },
            &cases_dir,
        ),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, SetupError> {
    setup(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime"),
    )
}

/// The engine for the command line: one that counts fuel for `--report`, else the
/// runtime's own (which uses `.cwasm` files).
pub(crate) fn plugin_engine(fuel: bool) -> anyhow::Result<PluginEngine> {
    PluginEngine::with_default_cache(fuel).context("cannot start the plugin engine")
}

/// Loads the manifest and its plugins once (no reloading in the CLI).
async fn load(manifest: &str) -> anyhow::Result<Loader> {
    load_with(manifest, false).await
}

/// [`load`], with an engine that counts fuel when `fuel` (for `--report`).
async fn load_with(manifest: &str, fuel: bool) -> anyhow::Result<Loader> {
    let location = Location::parse(manifest)?;
    let engine = Arc::new(plugin_engine(fuel)?);
    Ok(Loader::load(
        Store::default(),
        engine,
        location,
        crate::reload::DEFAULT_INTERVAL,
    )
    .await?)
}

fn check(manifest: &str) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    match runtime.block_on(async {
        let location = Location::parse(manifest)?;
        let engine = Arc::new(PluginEngine::new().context("cannot start the plugin engine")?);
        anyhow::Ok(
            Loader::load(
                Store::default(),
                engine,
                location,
                crate::reload::DEFAULT_INTERVAL,
            )
            .await,
        )
    }) {
        Err(e) => Err(SetupError(e)),
        Ok(Ok(loader)) => {
            let m = loader.manifest();
            println!(
                "{manifest}: ok: {} plugins, {} tenants, {} routes, bus {:?}",
                loader.pipeline().loaded_plugins().len(),
                m.tenants.len(),
                m.routes.len(),
                m.event_bus
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(problems)) => {
            for p in &problems.problems {
                println!("{manifest}: {p}");
            }
            println!("{manifest}: {} problems", problems.problems.len());
            Ok(ExitCode::from(EXIT_DEAD_LETTERS))
        }
    }
}

fn infra(manifest: &str) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    let text = setup(runtime.block_on(async {
        let location = Location::parse(manifest)?;
        let (bytes, _) = Store::default().read(&location).await?;
        let text =
            String::from_utf8(bytes).with_context(|| format!("{location}: not UTF-8 text"))?;
        anyhow::Ok((text, location))
    }))?;
    let (m, destinations) = setup(
        crate::manifest::Manifest::parse_with_destinations(&text.0, text.1)
            .map_err(anyhow::Error::from),
    )?;
    if destinations.is_empty() {
        return Err(SetupError(anyhow::anyhow!(
            "{manifest}: no [destinations.<name>] sections: nothing to generate"
        )));
    }
    print!("{}", crate::infra::template(&m, &destinations));
    Ok(ExitCode::SUCCESS)
}

fn redrive(
    manifest: &str,
    queue: Option<String>,
    delivery_queue: Option<String>,
    bus: Option<String>,
    dry_run: bool,
) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    let report = runtime.block_on(async {
        let loader = setup(load(manifest).await)?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let publisher = Publisher::new(Publisher::client_from(&sdk), PublishConfig::default());
        let bus = bus.unwrap_or_else(|| loader.manifest().event_bus.clone());
        if !dry_run {
            setup(publisher.check_bus(&bus).await)?;
        }
        let publisher = (!dry_run).then_some(&publisher);
        let progress = |done: usize, total: usize| eprintln!("redrive: {done} / {total}");
        let report = match (queue, delivery_queue) {
            (Some(q), _) => {
                crate::redrive::dead_letters(&sqs, &q, loader.pipeline(), publisher, progress).await
            }
            (None, Some(q)) => {
                crate::redrive::deliveries(&sqs, &q, &bus, publisher, progress).await
            }
            (None, None) => Err(anyhow::anyhow!("give --queue or --delivery-queue")),
        };
        setup(report)
    })?;
    for line in &report.lines {
        println!("{}{line}", if dry_run { "would: " } else { "" });
    }
    eprintln!(
        "redrive{}: {} received, {} done, {} left in the queue",
        if dry_run { " (dry run)" } else { "" },
        report.received,
        report.done,
        report.left
    );
    Ok(if report.left > 0 {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    })
}

fn new(what: crate::scaffold::NewCommand) -> Result<ExitCode, SetupError> {
    let crate::scaffold::NewCommand::Plugin {
        name,
        lang,
        dir,
        sdk,
    } = what;
    let made = setup(crate::scaffold::new_plugin(
        &name,
        lang,
        &dir,
        sdk.as_deref(),
    ))?;
    println!(
        "created {} ({} files)",
        made.dir.display(),
        made.files.len()
    );
    println!("next:");
    for command in &made.next {
        println!("  {command}");
    }
    Ok(ExitCode::SUCCESS)
}

fn test_cases(
    options: crate::cases::TestOptions,
    cases_dir: &Path,
) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    let mut out = std::io::stdout().lock();
    let summary = setup(runtime.block_on(crate::cases::run(&options, cases_dir, &mut out)))?;
    let _ = writeln!(
        out,
        "cases: {}, passed: {}, failed: {}{}",
        summary.cases,
        summary.passed,
        summary.failed,
        if options.update {
            format!(", updated: {}", summary.updated)
        } else {
            String::new()
        }
    );
    Ok(if summary.failed > 0 {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    })
}

fn read_event(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read event", path.display()))
}

fn parse_event<'a>(path: &Path, text: &'a str) -> anyhow::Result<StreamEvent<'a>> {
    StreamEvent::parse(text).with_context(|| {
        format!(
            "{}: not a DynamoDB Streams event (expected {{\"Records\": [...]}})",
            path.display()
        )
    })
}

fn decode(event: &Path) -> Result<ExitCode, SetupError> {
    let text = setup(read_event(event))?;
    let parsed = setup(parse_event(event, &text))?;
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for (i, raw) in parsed.records.iter().enumerate() {
        match record::decode(raw.get()) {
            Ok(r) => {
                let line = serde_json::to_string(&r).unwrap_or_default();
                let _ = writeln!(out, "{line}");
            }
            Err(e) => {
                failed = true;
                eprintln!("weir: record {i}: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_event(
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
    let report = runtime.block_on(async {
        let loader = setup(load_with(manifest, with_report).await)?;
        let pipeline = loader.pipeline();
        let queue_url = loader.manifest().dead_letter_queue.clone();
        let bus = loader.manifest().event_bus.clone();
        let (publisher, queue) = match publish_within {
            None => (None, None),
            Some(_) => {
                let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let publisher =
                    Publisher::new(Publisher::client_from(&sdk), PublishConfig::default());
                setup(publisher.check_bus(&bus).await)?;
                let queue = queue_url.map(|url| {
                    DeadLetterQueue::new(
                        aws_sdk_sqs::Client::new(&sdk),
                        url,
                        QueueConfig::default(),
                    )
                });
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
    let mut out = std::io::stdout().lock();
    for entry in &report.entries {
        let line = serde_json::to_string(entry).unwrap_or_default();
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
    let dead_letters = DeadLetterDir::new(dead_letter_dir);
    for letter in &collected {
        let file = setup(dead_letters.write(letter))?;
        tracing::warn!(
            kind = letter.reason.kind,
            file = %file.display(),
            "dead-lettered: {}",
            letter.reason.message
        );
    }
    let c = report.counts();
    let retried = if publish_within.is_some() {
        format!(", retried: {}", c.retried)
    } else {
        String::new()
    };
    eprintln!(
        "records: {}, entries: {}, published: {}, filtered: {}, dead-lettered: {}{retried}{}",
        c.records,
        report.entries.len(),
        c.published,
        c.filtered,
        c.dead_lettered,
        if collected.is_empty() {
            String::new()
        } else {
            format!(" (in {})", dead_letters.path().display())
        }
    );
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
