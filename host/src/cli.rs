//! The `weir` command line.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::dead_letter::DeadLetterDir;
use crate::manifest::Manifest;
use crate::pipeline::{Outcome, Pipeline, Tally};
use crate::plugin::PluginEngine;
use crate::record::{self, StreamEvent};

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
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        event: PathBuf,
        /// Where each dead-lettered record is written, one JSON file per record.
        #[arg(long, default_value = "weir-dead-letters")]
        dead_letter_dir: PathBuf,
    },
}

/// A failure that is the caller's to fix (usage, manifest, plugin, event file): exit 2.
#[derive(Debug)]
struct SetupError(anyhow::Error);

/// Exit status for setup errors: a usage, manifest, plugin-load or event-file problem.
pub const EXIT_SETUP: u8 = 2;
/// Exit status when any record was dead-lettered.
pub const EXIT_DEAD_LETTERS: u8 = 1;

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
        } => run_event(&manifest, &event, &dead_letter_dir),
    }
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
    manifest: &Path,
    event: &Path,
    dead_letter_dir: &Path,
) -> Result<ExitCode, SetupError> {
    let manifest = setup(Manifest::load(manifest).map_err(anyhow::Error::from))?;
    let text = setup(read_event(event))?;
    let parsed = setup(parse_event(event, &text))?;
    let engine = setup(PluginEngine::new().context("cannot start the plugin engine"))?;
    let pipeline = setup(Pipeline::load(manifest, &engine))?;
    let dead_letters = DeadLetterDir::new(dead_letter_dir);
    let mut tally = Tally::default();
    let mut batch = pipeline.batch();
    let mut out = std::io::stdout().lock();
    for raw in &parsed.records {
        let outcome = batch.process(raw);
        tally.count(&outcome);
        match outcome {
            Outcome::Publish(entries) => {
                for entry in entries {
                    let line = serde_json::to_string(&entry).unwrap_or_default();
                    let _ = writeln!(out, "{line}");
                }
            }
            Outcome::Filtered(_) => {}
            Outcome::DeadLetter(letter) => {
                let file = setup(dead_letters.write(&letter))?;
                tracing::warn!(
                    kind = letter.reason.kind,
                    file = %file.display(),
                    "dead-lettered: {}",
                    letter.reason.message
                );
            }
        }
    }
    let _ = out.flush();
    eprintln!(
        "records: {}, entries: {}, published: {}, filtered: {}, dead-lettered: {}{}",
        tally.records,
        tally.entries,
        tally.published,
        tally.filtered,
        tally.dead_lettered,
        if tally.dead_lettered > 0 {
            format!(" (in {})", dead_letters.path().display())
        } else {
            String::new()
        }
    );
    Ok(if tally.dead_lettered > 0 {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    })
}
