//! `weir test`: golden cases for one plugin, so a plugin author can see at once what a
//! change does to the entries and dead letters the plugin produces.
//!
//! A case is a folder `CASES_DIR/<case>/` holding
//! - `event.json`: a Lambda DynamoDB Streams event, `{"Records": [...]}`;
//! - `entries.jsonl`: the PutEvents entries expected, one per line, exactly as `weir run`
//!   prints them;
//! - `dead-letters.jsonl`: the dead letters expected, one per line, as
//!   `{"sequenceNumber": "...", "kind": "...", "message": "..."}`;
//! - `counts.json`: how many records were published, filtered, coalesced and
//!   dead-lettered, one line;
//! - `tenant.toml` (optional, also at `CASES_DIR/tenant.toml` for every case): the tenant
//!   entry's settings besides its config, `coalesce = ["destination", ...]`.
//!
//! A missing `entries.jsonl` or `dead-letters.jsonl` expects nothing, a missing
//! `counts.json` is not compared; `--update` writes all three. Each case runs through the same pipeline as `weir run` (routing, the sandbox,
//! limits, validation, the metadata envelope), in a manifest made for the test:
//! - event bus `weir-test`, source `weir.test`, a route for every table the cases use;
//! - the tenant is the record's `tenantId` attribute (new image, else old image, else
//!   keys), or `default` when it has none, and every tenant is served by the plugin
//!   under test with the tenant config from `--config` (default `CASES_DIR/config.toml`
//!   or `CASES_DIR/config.json`, else `{}`); a case folder's own `config.toml` or
//!   `config.json` replaces it for that case;
//! - the plugin's name (in each entry's `metadata.plugin`) is `--name`, by default the
//!   name of the folder holding `CASES_DIR` (`plugins/mapping/cases` → `mapping`), so the
//!   same cases serve every build of a plugin, whatever its file is called.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use weir_aws::dead_letter::DeadLetterSink;
use weir_aws::store::ObjectStore;
use weir_core::batch;
use weir_core::location::Location;
use weir_core::manifest::DEFAULT_TENANT;
use weir_core::model::DeadLetter;
use weir_core::record::{self, StreamEvent};
use weir_runtime::Pipeline;
use weir_runtime::loader::Loader;
use weir_runtime::plugin::PluginEngine;

/// The event bus every test entry names.
pub const TEST_EVENT_BUS: &str = "weir-test";
/// The `Source` of every test entry.
pub const TEST_SOURCE: &str = "weir.test";
/// The attribute that names a record's tenant in test cases.
pub const TEST_TENANT_ATTRIBUTE: &str = "tenantId";
/// A case's input.
pub const EVENT_FILE: &str = "event.json";
/// A case's expected entries.
pub const ENTRIES_FILE: &str = "entries.jsonl";
/// A case's expected dead letters.
pub const DEAD_LETTERS_FILE: &str = "dead-letters.jsonl";
/// A case's expected counts.
pub const COUNTS_FILE: &str = "counts.json";
/// The tenant entry's settings for a suite or a case.
pub const TENANT_FILE: &str = "tenant.toml";

/// What a case's tenant entry holds besides its config (`tenant.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// Destinations coalesced per item.
    #[serde(default)]
    pub coalesce: Vec<String>,
}

/// The `tenant.toml` in `dir`, if there is one.
pub fn tenant_settings(dir: &Path) -> anyhow::Result<Option<TenantSettings>> {
    let path = dir.join(TENANT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .with_context(|| format!("{}: not a tenant.toml", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// What `weir test` was asked to do.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The plugin under test: a `.wasm` component (a `.cwasm` next to it is used if valid).
    pub plugin: PathBuf,
    /// The tenant's config, TOML or JSON by extension.
    pub config: Option<PathBuf>,
    /// The plugin's name in the entries' metadata.
    pub name: Option<String>,
    /// Rewrite the expectations instead of comparing.
    pub update: bool,
    /// Print each case's per-record report (fuel, memory, time beside their limits).
    pub report: bool,
}

/// How a run went: the counts `weir test` prints.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Cases run.
    pub cases: usize,
    /// Cases whose output matched their expectations (with `--update`, every case).
    pub passed: usize,
    /// Cases whose output differed from their expectations.
    pub failed: usize,
    /// Cases whose expectation files `--update` rewrote because they changed.
    pub updated: usize,
}

/// One dead letter as a case expects it: enough to say which record failed and why,
/// without weir's version or the record's text.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedDeadLetter<'a> {
    /// The failed record's sequence number, when it can be read.
    pub sequence_number: Option<String>,
    /// The kind of failure, e.g. `plugin-load`.
    pub kind: &'a str,
    /// What went wrong.
    pub message: &'a str,
}

impl<'a> ExpectedDeadLetter<'a> {
    /// The expectation line for `letter`.
    pub fn of(letter: &'a DeadLetter) -> Self {
        ExpectedDeadLetter {
            sequence_number: record::sequence_number_of(letter.record.get()),
            kind: letter.reason.kind.as_str(),
            message: &letter.reason.message,
        }
    }
}

/// What a case produced: entry lines and dead-letter lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CaseOutput {
    /// One line per PutEvents entry, as `entries.jsonl` holds them.
    pub entries: Vec<String>,
    /// One line per dead letter, as `dead-letters.jsonl` holds them.
    pub dead_letters: Vec<String>,
    /// The counts, one line, as `counts.json` holds it (none: not compared).
    pub counts: Vec<String>,
}

/// One case folder.
#[derive(Debug, Clone)]
pub struct Case {
    /// The folder's name.
    pub name: String,
    /// The folder itself.
    pub dir: PathBuf,
}

/// The case folders under `dir`, by name. A folder without `event.json` is an error, so a
/// misspelt file is not a silently skipped case.
pub fn discover(dir: &Path) -> anyhow::Result<Vec<Case>> {
    let read = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the cases folder", dir.display()))?;
    let mut cases = Vec::new();
    for item in read {
        let item = item.with_context(|| format!("{}: cannot list", dir.display()))?;
        let path = item.path();
        if !path.is_dir() {
            continue;
        }
        if !path.join(EVENT_FILE).is_file() {
            bail!(
                "{}: a case folder needs {EVENT_FILE} (a {{\"Records\": [...]}} stream event)",
                path.display()
            );
        }
        cases.push(Case {
            name: item.file_name().to_string_lossy().into_owned(),
            dir: path,
        });
    }
    if cases.is_empty() {
        bail!(
            "{}: no cases (each case is a folder with {EVENT_FILE}, {ENTRIES_FILE}, {DEAD_LETTERS_FILE})",
            dir.display()
        );
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// The tenant config: `explicit`, else `config.toml` / `config.json` in `cases_dir`, else
/// none. TOML or JSON by extension (JSON must be an object without nulls: the config is a
/// manifest table).
pub fn read_config(
    explicit: Option<&Path>,
    cases_dir: &Path,
) -> anyhow::Result<Option<toml::Table>> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match ["config.toml", "config.json"]
            .iter()
            .map(|f| cases_dir.join(f))
            .find(|p| p.is_file())
        {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read the tenant config", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let table = if is_json {
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        if !value.is_object() {
            bail!(
                "{}: the tenant config must be a JSON object",
                path.display()
            );
        }
        match json_to_toml(&value) {
            Some(toml::Value::Table(t)) => t,
            _ => bail!(
                "{}: cannot be a manifest config table (nulls are not allowed)",
                path.display()
            ),
        }
    } else {
        toml::from_str(&text).with_context(|| format!("{}: not TOML", path.display()))?
    };
    Ok(Some(table))
}

/// A JSON value as TOML, converted by hand: serde's path would see serde_json's private
/// number representation when a build enables `arbitrary_precision` (the SDK does).
fn json_to_toml(value: &Value) -> Option<toml::Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => {
            toml::Value::Array(items.iter().map(json_to_toml).collect::<Option<_>>()?)
        }
        Value::Object(m) => toml::Value::Table(
            m.iter()
                .map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// A case's own tenant config (`config.toml` or `config.json` in its folder), if any.
pub fn case_config(case_dir: &Path) -> anyhow::Result<Option<toml::Table>> {
    if ["config.toml", "config.json"]
        .iter()
        .any(|f| case_dir.join(f).is_file())
    {
        read_config(None, case_dir)
    } else {
        Ok(None)
    }
}

/// The plugin name used in entries: `explicit`, else the folder holding `cases_dir`.
pub fn plugin_name(explicit: Option<&str>, cases_dir: &Path) -> String {
    if let Some(n) = explicit {
        return n.to_owned();
    }
    std::fs::canonicalize(cases_dir)
        .ok()
        .and_then(|p| {
            p.parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "plugin".to_owned())
}

/// The tables named by the records of a case (from `eventSourceARN`).
fn tables(event: &str) -> BTreeSet<String> {
    #[derive(serde::Deserialize)]
    struct Arn {
        #[serde(rename = "eventSourceARN")]
        arn: Option<String>,
    }
    let mut out = BTreeSet::new();
    let Ok(event) = StreamEvent::parse(event) else {
        return out;
    };
    for raw in event.records {
        if let Ok(Arn { arn: Some(arn) }) = serde_json::from_str::<Arn>(raw.get()) {
            // An ARN naming no table (a sample's placeholder) needs the route for every table.
            let table = record::table_from_arn(&arn).unwrap_or(weir_core::manifest::ANY_TABLE);
            out.insert(table.to_owned());
        }
    }
    out
}

/// The manifest a test runs under, as TOML: one plugin serving every tenant of every
/// table the case uses.
pub fn test_manifest(
    plugin_name: &str,
    plugin: &Path,
    config: Option<toml::Table>,
    settings: &TenantSettings,
    tables: impl IntoIterator<Item = String>,
) -> anyhow::Result<String> {
    let mut spec = toml::Table::new();
    spec.insert("path".into(), plugin.display().to_string().into());
    let mut tenant = toml::Table::new();
    tenant.insert("plugin".into(), plugin_name.into());
    if let Some(config) = config {
        tenant.insert("config".into(), config.into());
    }
    if !settings.coalesce.is_empty() {
        tenant.insert(
            "coalesce".into(),
            toml::Value::Array(settings.coalesce.iter().cloned().map(Into::into).collect()),
        );
    }
    let routes: Vec<toml::Value> = tables
        .into_iter()
        .map(|table| {
            let mut selector = toml::Table::new();
            selector.insert("attribute".into(), TEST_TENANT_ATTRIBUTE.into());
            let mut route = toml::Table::new();
            route.insert("table".into(), table.into());
            route.insert("source".into(), TEST_SOURCE.into());
            route.insert("tenant".into(), selector.into());
            route.into()
        })
        .collect();
    let mut manifest = toml::Table::new();
    manifest.insert("event_bus".into(), TEST_EVENT_BUS.into());
    manifest.insert(
        "plugins".into(),
        toml::Table::from_iter([(plugin_name.to_owned(), spec.into())]).into(),
    );
    manifest.insert("routes".into(), routes.into());
    manifest.insert(
        "tenants".into(),
        toml::Table::from_iter([(DEFAULT_TENANT.to_owned(), tenant.into())]).into(),
    );
    toml::to_string(&manifest).context("cannot write the test manifest")
}

/// Runs one stream event through `pipeline` as `weir run` does (no publishing) and returns
/// the lines a case compares.
pub async fn run_event(
    pipeline: Arc<Pipeline>,
    path: &Path,
    text: &str,
) -> anyhow::Result<(CaseOutput, String)> {
    let records: Vec<Box<RawValue>> = StreamEvent::parse(text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .records
        .into_iter()
        .map(RawValue::to_owned)
        .collect();
    let mut letters = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let report = batch::run(
        pipeline,
        records,
        weir_core::sink::DryRun,
        DeadLetterSink::Collect(&mut letters),
        deadline,
    )
    .await?;
    let entries = report
        .entries
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()
        .context("cannot print an entry")?;
    let dead_letters = letters
        .iter()
        .map(|l| serde_json::to_string(&ExpectedDeadLetter::of(l)))
        .collect::<Result<_, _>>()
        .context("cannot print a dead letter")?;
    // Every record is one of the counts; the entries are compared in `entries.jsonl`, so
    // the line counts records only (as `counts.json` always has).
    let counts = serde_json::to_string(&batch::Counts {
        entries: 0,
        ..report.counts()
    })
    .context("cannot print the counts")?;
    Ok((
        CaseOutput {
            entries,
            dead_letters,
            counts: vec![counts],
        },
        batch::render_report(&report),
    ))
}

/// The pipeline for one case: the plugin under test serving every tenant with `config`,
/// loaded as `weir run` loads a manifest (the engine keeps the compiled plugin, so only
/// the first case compiles it).
async fn pipeline_for(
    engine: &Arc<PluginEngine>,
    name: &str,
    plugin: &Path,
    config: Option<toml::Table>,
    settings: &TenantSettings,
    event: &str,
) -> anyhow::Result<Arc<Pipeline>> {
    let text = test_manifest(name, plugin, config, settings, tables(event))?;
    let file = ScratchFile::new("weir-test-manifest", ".toml", &text)?;
    let loader = Loader::load(
        ObjectStore::default(),
        engine.clone(),
        Location::File(file.path.clone()),
        weir_runtime::loader::DEFAULT_INTERVAL,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(loader.pipeline())
}

/// A file in the temporary folder, removed when dropped.
struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    fn new(prefix: &str, suffix: &str, text: &str) -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("{prefix}-{}-{n}{suffix}", std::process::id()));
        std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(ScratchFile { path })
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

fn write_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

/// Runs every case under `cases_dir`, writing a line per case (and a diff per failing
/// case) to `out`. Errors are setup problems: no cases, unreadable files, a plugin that
/// does not load.
pub async fn run(
    options: &TestOptions,
    cases_dir: &Path,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Summary> {
    let cases = discover(cases_dir)?;
    let suite_config = read_config(options.config.as_deref(), cases_dir)?;
    let suite_settings = tenant_settings(cases_dir)?.unwrap_or_default();
    let name = plugin_name(options.name.as_deref(), cases_dir);
    if !options.plugin.is_file() {
        bail!("{}: no such plugin file", options.plugin.display());
    }
    let plugin = std::fs::canonicalize(&options.plugin)
        .with_context(|| format!("{}: cannot resolve", options.plugin.display()))?;
    let engine = Arc::new(
        weir_runtime::plugin::PluginEngine::with_default_cache(options.report)
            .context("cannot start the plugin engine")?,
    );
    let _ = writeln!(
        out,
        "testing {} as plugin {name:?} on {} cases in {}",
        options.plugin.display(),
        cases.len(),
        cases_dir.display()
    );
    let mut summary = Summary::default();
    for case in &cases {
        summary.cases += 1;
        let event_path = case.dir.join(EVENT_FILE);
        let text = std::fs::read_to_string(&event_path)
            .with_context(|| format!("{}: cannot read", event_path.display()))?;
        // A case may carry a config of its own, which replaces the suite's.
        let config = match case_config(&case.dir)? {
            Some(c) => Some(c),
            None => suite_config.clone(),
        };
        let settings = match tenant_settings(&case.dir)? {
            Some(s) => s,
            None => suite_settings.clone(),
        };
        let pipeline = pipeline_for(&engine, &name, &plugin, config, &settings, &text).await?;
        let (mut actual, report) = run_event(pipeline, &event_path, &text).await?;
        if options.report {
            let _ = write!(out, "case {}: report\n{report}", case.name);
        }
        let entries_path = case.dir.join(ENTRIES_FILE);
        let letters_path = case.dir.join(DEAD_LETTERS_FILE);
        let counts_path = case.dir.join(COUNTS_FILE);
        let expected = CaseOutput {
            entries: read_lines(&entries_path)?,
            dead_letters: read_lines(&letters_path)?,
            counts: read_lines(&counts_path)?,
        };
        if !options.update && !counts_path.is_file() {
            // Cases written before counts.json compare what they have.
            actual.counts.clear();
        }
        let counts = format!(
            "{} entries, {} dead letters",
            actual.entries.len(),
            actual.dead_letters.len()
        );
        if options.update {
            let changed = expected != actual;
            write_lines(&entries_path, &actual.entries)?;
            write_lines(&letters_path, &actual.dead_letters)?;
            write_lines(&counts_path, &actual.counts)?;
            summary.passed += 1;
            if changed {
                summary.updated += 1;
            }
            let _ = writeln!(
                out,
                "case {}: {} ({counts})",
                case.name,
                if changed { "updated" } else { "unchanged" }
            );
            continue;
        }
        if expected == actual {
            summary.passed += 1;
            let _ = writeln!(out, "case {}: ok ({counts})", case.name);
            continue;
        }
        summary.failed += 1;
        let _ = writeln!(out, "case {}: FAILED", case.name);
        for (file, want, got) in [
            (ENTRIES_FILE, &expected.entries, &actual.entries),
            (
                DEAD_LETTERS_FILE,
                &expected.dead_letters,
                &actual.dead_letters,
            ),
            (COUNTS_FILE, &expected.counts, &actual.counts),
        ] {
            if want != got {
                let _ = write!(out, "{}", diff(&format!("{}/{file}", case.name), want, got));
            }
        }
    }
    Ok(summary)
}

/// A line diff of `expected` against `actual`: `-` lines are expected but missing, `+`
/// lines were produced but not expected. A changed line also names the first JSON path
/// where the two differ (inside `Detail`, whose text is JSON itself).
pub fn diff(label: &str, expected: &[String], actual: &[String]) -> String {
    let ops = line_ops(expected, actual);
    let mut text = format!("  --- expected {label}\n  +++ actual {label}\n");
    let mut i = 0;
    while i < ops.len() {
        match ops[i] {
            Op::Same => {
                i += 1;
            }
            _ => {
                // A run of changes: removed lines, then added lines.
                let start = i;
                while i < ops.len() && !matches!(ops[i], Op::Same) {
                    i += 1;
                }
                let removed: Vec<usize> = ops[start..i]
                    .iter()
                    .filter_map(|o| match o {
                        Op::Removed(a) => Some(*a),
                        _ => None,
                    })
                    .collect();
                let added: Vec<usize> = ops[start..i]
                    .iter()
                    .filter_map(|o| match o {
                        Op::Added(b) => Some(*b),
                        _ => None,
                    })
                    .collect();
                for k in 0..removed.len().max(added.len()) {
                    match (removed.get(k), added.get(k)) {
                        (Some(&a), Some(&b)) => {
                            let _ = writeln!(
                                text,
                                "  line {} changed{}",
                                a + 1,
                                first_difference(&expected[a], &actual[b])
                                    .map(|d| format!(": {d}"))
                                    .unwrap_or_default()
                            );
                            let _ = writeln!(text, "  - {}", expected[a]);
                            let _ = writeln!(text, "  + {}", actual[b]);
                        }
                        (Some(&a), None) => {
                            let _ = writeln!(text, "  line {} expected, not produced", a + 1);
                            let _ = writeln!(text, "  - {}", expected[a]);
                        }
                        (None, Some(&b)) => {
                            let _ = writeln!(text, "  produced line {}, not expected", b + 1);
                            let _ = writeln!(text, "  + {}", actual[b]);
                        }
                        (None, None) => {}
                    }
                }
            }
        }
    }
    text
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Same,
    Removed(usize),
    Added(usize),
}

/// The edit script of a longest common subsequence over lines (cases are small).
fn line_ops(a: &[String], b: &[String]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(Op::Added(j));
            j += 1;
        } else {
            ops.push(Op::Removed(i));
            i += 1;
        }
    }
    // Show removals before additions within each run of changes.
    let mut sorted = Vec::with_capacity(ops.len());
    let mut run: Vec<Op> = Vec::new();
    for op in ops {
        if let Op::Same = op {
            run.sort_by_key(|o| matches!(o, Op::Added(_)));
            sorted.append(&mut run);
            sorted.push(op);
        } else {
            run.push(op);
        }
    }
    run.sort_by_key(|o| matches!(o, Op::Added(_)));
    sorted.append(&mut run);
    sorted
}

/// `at /Detail/payload/Name: expected "A", found "B"` for two JSON lines, when both parse:
/// the first few paths where they differ.
fn first_difference(expected: &str, actual: &str) -> Option<String> {
    const SHOWN: usize = 3;
    let a: Value = serde_json::from_str(expected).ok()?;
    let b: Value = serde_json::from_str(actual).ok()?;
    let mut found = Vec::new();
    walk(&a, &b, String::new(), &mut found, SHOWN + 1);
    if found.is_empty() {
        return None;
    }
    let mut text = found
        .iter()
        .take(SHOWN)
        .map(|(path, x, y)| {
            format!(
                "at {}: expected {}, found {}",
                if path.is_empty() { "/" } else { path },
                short(x),
                short(y)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if found.len() > SHOWN {
        text.push_str("; ...");
    }
    Some(text)
}

fn short(v: &Option<Value>) -> String {
    match v {
        None => "nothing".to_owned(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 80 {
                format!("{}…", s.chars().take(80).collect::<String>())
            } else {
                s
            }
        }
    }
}

/// The paths at which `a` and `b` differ (up to `limit`), with the two values there.
fn walk(a: &Value, b: &Value, path: String, found: &mut Vec<Difference>, limit: usize) {
    if found.len() >= limit {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => walk(u, v, p, found, limit),
                    (u, v) => found.push((p, u.cloned(), v.cloned())),
                }
                if found.len() >= limit {
                    return;
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}/{i}");
                match (x.get(i), y.get(i)) {
                    (Some(u), Some(v)) => walk(u, v, p, found, limit),
                    (u, v) => found.push((p, u.cloned(), v.cloned())),
                }
                if found.len() >= limit {
                    return;
                }
            }
        }
        // Detail is JSON inside a string: compare what it holds.
        (Value::String(x), Value::String(y)) if x != y => {
            let inner = |s: &str| {
                serde_json::from_str::<Value>(s)
                    .ok()
                    .filter(|v| v.is_object() || v.is_array())
            };
            match (inner(x), inner(y)) {
                (Some(u), Some(v)) if u != v => walk(&u, &v, path, found, limit),
                _ => found.push((path, Some(a.clone()), Some(b.clone()))),
            }
        }
        (Value::Number(x), Value::Number(y)) if x.to_string() != y.to_string() => {
            found.push((path, Some(a.clone()), Some(b.clone())))
        }
        _ if a != b => found.push((path, Some(a.clone()), Some(b.clone()))),
        _ => {}
    }
}

/// A JSON path, the expected value there and the actual one (`None`: not there).
type Difference = (String, Option<Value>, Option<Value>);

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_changed_line_names_the_first_differing_path_inside_detail() {
        let want = lines(&[
            r#"{"Source":"s","Detail":"{\"payload\":{\"Name\":\"Ann\",\"City\":\"X\"}}"}"#,
            r#"{"Source":"same"}"#,
        ]);
        let got = lines(&[
            r#"{"Source":"s","Detail":"{\"payload\":{\"Name\":\"Bob\",\"City\":\"X\"}}"}"#,
            r#"{"Source":"same"}"#,
        ]);
        let d = diff("c/entries.jsonl", &want, &got);
        assert!(
            d.contains("line 1 changed: at /Detail/payload/Name: expected \"Ann\", found \"Bob\""),
            "{d}"
        );
        assert!(!d.contains("same"), "unchanged lines are left out: {d}");
    }

    #[test]
    fn missing_and_extra_lines_are_reported() {
        let d = diff("c/x", &lines(&["a", "b"]), &lines(&["b", "c"]));
        assert!(d.contains("line 1 expected, not produced\n  - a"), "{d}");
        assert!(d.contains("produced line 2, not expected\n  + c"), "{d}");
        assert_eq!(
            diff("c/x", &lines(&["a"]), &lines(&["a"])).lines().count(),
            2
        );
    }

    #[test]
    fn tenant_config_reads_toml_and_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read_config(None, dir.path()).expect("none").is_none());
        std::fs::write(dir.path().join("config.json"), r#"{"a":{"b":[1,2]}}"#).expect("write");
        let t = read_config(None, dir.path()).expect("json").expect("some");
        assert_eq!(t["a"]["b"][1].as_integer(), Some(2));
        let toml_path = dir.path().join("other.toml");
        std::fs::write(&toml_path, "a = \"x\"\n").expect("write");
        let t = read_config(Some(&toml_path), dir.path())
            .expect("toml")
            .expect("some");
        assert_eq!(t["a"].as_str(), Some("x"));
        std::fs::write(dir.path().join("bad.json"), "[1]").expect("write");
        let e = read_config(Some(&dir.path().join("bad.json")), dir.path()).expect_err("array");
        assert!(format!("{e:#}").contains("must be a JSON object"), "{e:#}");
    }
}
