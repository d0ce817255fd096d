//! The `weir` command line.

//!
//! One file per command in `cli/`; this file parses arguments, dispatches, and holds what
//! several commands share (the runtime, loading a manifest, reading an event, exit codes).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use weir_aws::store::ObjectStore;
use weir_core::location::Location;
use weir_core::record::StreamEvent;
use weir_runtime::loader::Loader;
use weir_runtime::plugin::PluginEngine;

mod backfill;
mod check;
mod compile;
mod completions;
mod decode;
mod infra;
mod new;
mod redrive;
mod run;
mod test;

/// weir maps DynamoDB Streams records with WebAssembly plugins and publishes them to
/// EventBridge.
#[derive(Debug, Parser)]
#[command(name = "weir", version, long_version = LONG_VERSION)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
    /// The memory (MB) the plugin instances kept warm between batches are sized from,
    /// as the Lambda function's `MemorySize` sizes them there (128 to 10,240).
    #[arg(long, global = true, default_value_t = weir_core::pipeline::DEFAULT_FUNCTION_MEMORY_MB,
          value_parser = clap::value_parser!(u64).range(weir_core::pipeline::FUNCTION_MEMORY_MB))]
    pub memory_mb: u64,
}

/// The `--memory-mb` this process was started with: every engine it builds keeps that
/// function's warm instances.
static MEMORY_MB: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The wasmtime weir runs plugins in (the runtime crate pins it exactly; a unit test keeps
/// this in step with Cargo.lock).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// `weir --version`: which plugins this binary loads and what runs them, so an author can
/// tell whether a plugin built for a contract will load (`-V` prints the short version).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nplugin contracts: weir:transform@0.2.0, weir:transform@0.1.0",
    "\nwasmtime 48.0.8"
);

/// weir's commands, one per file in `cli/`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the decoded records of a stream event as JSON Lines: exactly what plugins get.
    Decode {
        /// The stream event: a JSON file holding {"Records": [...]}.
        #[arg(long)]
        event: PathBuf,
    },
    /// Run a stream event through the manifest's plugins and print the PutEvents entries.
    Run {
        /// The manifest: a file or s3://bucket/key.
        #[arg(long)]
        manifest: String,
        /// The stream event: a JSON file holding {"Records": [...]}.
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
        /// With --publish: seconds allowed for publishing before the rest is reported
        /// (1 to 86,400).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
        timeout_secs: u64,
        /// Print, on stderr, each record's plugin calls: fuel (instructions), peak linear
        /// memory and time, each beside its limit. Counting fuel compiles the plugins
        /// afresh (precompiled .cwasm files are for the faster engine without it).
        #[arg(long)]
        report: bool,
    },
    /// Run the items already in a table through the manifest's plugins, as INSERTs marked as
    /// a backfill: a parallel Scan or an export to S3, paced for the destinations, resumable
    /// with --state. Prints the entries, or publishes them with --publish (exit statuses as
    /// `run`'s).
    Backfill(backfill::BackfillOptions),
    /// Load everything a manifest names (plugins, pins, contract, limits) and report every
    /// problem at once. Exit 0 when all is well, 1 otherwise.
    Check {
        /// The manifest: a file or s3://bucket/key.
        #[arg(long)]
        manifest: String,
    },
    /// Precompile plugins to .cwasm files (next to each plugin, or in --out-dir), so the
    /// function never compiles at cold start, and print the pins a manifest needs to run
    /// them (a .cwasm is native code: it runs only when pinned).
    Compile {
        /// The plugins to compile (.wasm).
        #[arg(required_unless_present = "manifest")]
        plugins: Vec<PathBuf>,
        /// The CPU to compile for: x86_64, or aarch64 for Graviton. Default: this machine.
        #[arg(long)]
        target: Option<String>,
        /// The folder to write the .cwasm files to (default: next to each plugin).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Instead: compile every plugin this (local) manifest names to where it looks for
        /// the .cwasm, and write both pins (sha256, compiled_sha256) into it.
        #[arg(long, conflicts_with_all = ["plugins", "out_dir"])]
        manifest: Option<PathBuf>,
        /// With --manifest: pin plugins whose bytes no longer match their sha256 (after
        /// reviewing them); without it such a plugin stops the command.
        #[arg(long, conflicts_with_all = ["plugins", "out_dir"])]
        repin: bool,
    },
    /// Repair dead letters: run weir's dead-lettered records through the current manifest
    /// and plugins (--queue), or put an API destination's undelivered events back on the
    /// bus (--delivery-queue). A message is deleted only once done.
    Redrive {
        /// The manifest: a file or s3://bucket/key.
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
        /// Which letters redrive trusts.
        #[command(flatten)]
        trust: redrive::Trust,
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
        /// What to make.
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
    /// Print the shell's completion script for weir's commands and flags (for example
    /// `weir completions bash > ~/.local/share/bash-completion/completions/weir`).
    Completions {
        /// The shell: bash, zsh or fish.
        shell: completions::Shell,
    },
}

/// A failure that is the caller's to fix (usage, manifest, plugin, event file): exit 2.
#[derive(Debug)]
struct SetupError(anyhow::Error);

/// The longest `--timeout-secs` taken (a day): a deadline is the clock plus it, which must
/// not overflow, and no publish waits longer.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// The largest event file read (Lambda's batches are at most 6 MB): `--event /dev/zero`
/// is refused, not read until memory runs out.
const MAX_EVENT_BYTES: u64 = 64 << 20;

/// Exit status for setup errors: a usage, manifest, plugin-load or event-file problem.
pub const EXIT_SETUP: u8 = 2;
/// Exit status when any record was dead-lettered.
pub const EXIT_DEAD_LETTERS: u8 = 1;
/// Exit status when any record could not be published within the time allowed.
pub const EXIT_UNPUBLISHED: u8 = 3;

/// Parses arguments, runs the command and maps its result to an exit status.
pub fn main() -> ExitCode {
    quiet_when_output_closes();
    crate::telemetry::init_cli();
    // A developer running a plugin just built has no `.cwasm` for it, and does nothing
    // wrong: compiling it is worth an info line here (the function warns: there it costs
    // cold start).
    weir_runtime::plugin::CompileNotice::Info.set_process_default();
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

/// A closed stdout or stderr (`weir ... | head -1`) ends the command quietly, exit 0: the
/// reader asked for no more. weir's own printing ([`print_entries`], `decode`, `new`) sees
/// the error and stops; this catches `println!` anywhere else, which panics on a closed
/// stream, before the panic is reported. Every other panic is reported as before.
fn quiet_when_output_closes() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or_default();
        let printing = message.starts_with("failed printing to stdout")
            || message.starts_with("failed printing to stderr");
        if printing && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info)
    }));
}

/// An error as one line: its chain joined, and whatever a manifest, a record or a plugin put
/// into it escaped ([`weir_core::text::one_line`]).
fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}").replace('\n', " ");
    weir_core::text::one_line(&text).into_owned()
}

fn setup<T, E: Into<anyhow::Error>>(r: Result<T, E>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError(e.into()))
}

fn run(cli: Cli) -> Result<ExitCode, SetupError> {
    let _ = MEMORY_MB.set(cli.memory_mb);
    match cli.command {
        Command::Decode { event } => decode::decode(&event),
        Command::Run {
            manifest,
            event,
            dead_letter_dir,
            publish,
            timeout_secs,
            report,
        } => run::run_event(
            &manifest,
            &event,
            &dead_letter_dir,
            publish.then_some(Duration::from_secs(timeout_secs)),
            report,
        ),
        Command::Backfill(options) => backfill::backfill(options),
        Command::Check { manifest } => check::check(&manifest),
        Command::Compile {
            plugins,
            target,
            out_dir,
            manifest,
            repin,
        } => setup(match manifest {
            Some(m) => compile::manifest(
                &m,
                target.as_deref(),
                if repin {
                    compile::Repin::Rewrite
                } else {
                    compile::Repin::Refuse
                },
            ),
            None => compile::plugins(&plugins, target.as_deref(), out_dir.as_deref()),
        })
        .map(|()| ExitCode::SUCCESS),
        Command::Redrive {
            manifest,
            queue,
            delivery_queue,
            bus,
            dry_run,
            trust,
        } => redrive::redrive(&manifest, queue, delivery_queue, bus, dry_run, &trust),
        Command::Infra { manifest } => infra::infra(&manifest),
        Command::New { what } => new::new(what),
        Command::Test {
            plugin,
            config,
            name,
            update,
            report,
            cases_dir,
        } => test::test_cases(
            crate::cases::TestOptions {
                plugin,
                config,
                name,
                update,
                report,
            },
            &cases_dir,
        ),
        Command::Completions { shell } => completions::completions(shell),
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
    let memory_mb = MEMORY_MB
        .get()
        .copied()
        .unwrap_or(weir_core::pipeline::DEFAULT_FUNCTION_MEMORY_MB);
    Ok(PluginEngine::with_default_cache(fuel)
        .context("cannot start the plugin engine")?
        .with_warm_budget(weir_core::pipeline::WarmBudget::for_memory_mb(memory_mb)))
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
        ObjectStore::default(),
        engine,
        location,
        weir_runtime::loader::DEFAULT_INTERVAL,
    )
    .await?)
}

/// Prints entries on stdout, one JSON line each (the shape `aws events put-events` takes).
/// An error is stdout's: closed by its reader (`| head`), or full; the caller stops printing.
fn print_entries(entries: &[weir_core::model::Entry]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for entry in entries {
        writeln!(out, "{}", serde_json::to_string(entry).unwrap_or_default())?;
    }
    out.flush()
}

/// The summary line `weir run` and `weir backfill` end with on stderr (tests and scripts
/// read it): every record counted once; `retried` only when publishing.
fn summary_line(c: &weir_core::batch::Counts, entries: usize, publishing: bool) -> String {
    let retried = if publishing {
        format!(", retried: {}", c.retried)
    } else {
        String::new()
    };
    format!(
        "records: {}, entries: {entries}, published: {}, filtered: {}, coalesced: {}, dead-lettered: {}{retried}",
        c.records, c.published, c.filtered, c.coalesced, c.dead_lettered
    )
}

/// Writes each dead letter to its own file in `dir`, with a warning naming the file.
fn write_dead_letters(
    dir: &weir_core::sink::DeadLetterDir,
    letters: &[weir_core::model::DeadLetter],
) -> Result<(), SetupError> {
    for letter in letters {
        let file = setup(dir.write(letter))?;
        tracing::warn!(
            kind = letter.reason.kind.as_str(),
            file = %file.display(),
            "dead-lettered: {}",
            letter.reason.message
        );
    }
    Ok(())
}

/// The event file's text, read through one handle and at most [`MAX_EVENT_BYTES`].
fn read_event(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let cannot = || format!("{}: cannot read event", path.display());
    let file = std::fs::File::open(path).with_context(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_EVENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(cannot)?;
    if bytes.len() as u64 > MAX_EVENT_BYTES {
        anyhow::bail!(
            "{}: larger than {MAX_EVENT_BYTES} bytes, not a stream event (a Lambda batch is at most 6 MB)",
            path.display()
        );
    }
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: cannot read event: not UTF-8", path.display()))
}

fn parse_event<'a>(path: &Path, text: &'a str) -> anyhow::Result<StreamEvent<'a>> {
    StreamEvent::parse(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A hint for records whose `eventSourceARN` names no table (samples from other tools use
/// placeholders such as `"stream-ARN"`), which only a route with `table = "*"` takes.
fn unknown_table_hint(
    records: &[Box<serde_json::value::RawValue>],
    any_table_route: bool,
) -> Option<String> {
    let unknown: Vec<String> = records
        .iter()
        .filter_map(|r| {
            let parsed = weir_core::record::parse(r.get()).ok()?;
            parsed.unknown_table_arn().map(str::to_owned)
        })
        .collect();
    let count = unknown.len();
    let arns: std::collections::BTreeSet<String> = unknown.into_iter().collect();
    if arns.is_empty() {
        return None;
    }
    let names = arns
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(if any_table_route {
        format!(
            "note: {count} records name no table (eventSourceARN {names}); the route for every table (table = \"*\") took them"
        )
    } else {
        format!(
            "hint: {count} records name no table (eventSourceARN {names}), so no route took them (filtered); a route with table = \"*\" takes them, or give them a table's ARN"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_names_the_contracts_and_the_locked_wasmtime() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
            .expect("the workspace's Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("\nname = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
            .map(|v| v.trim_matches('"').to_owned())
            .expect("wasmtime in Cargo.lock");
        assert_eq!(
            WASMTIME_VERSION, locked,
            "update WASMTIME_VERSION and LONG_VERSION"
        );
        assert!(
            LONG_VERSION.ends_with(&format!("wasmtime {locked}")),
            "{LONG_VERSION}"
        );
        for contract in [
            weir_runtime::plugin::Contract::V0_2,
            weir_runtime::plugin::Contract::V0_1,
        ] {
            let named = contract.export().replace("/transformer", "");
            assert!(
                LONG_VERSION.contains(&named),
                "{LONG_VERSION} lacks {named}"
            );
        }
    }
}
