//! The JavaScript and Python builds of `salesforce-account` (plugins/salesforce-account-js,
//! plugins/salesforce-account-py) against the Rust one: given the acme tenant's config
//! from examples/weir.toml, the `weir` binary must print byte-identical entries and write
//! identical dead letters for each of them, on the example event, on every golden case,
//! and on tests/events/unseen-accounts.json (unicode, escapes, 38-digit and tiny numbers,
//! exponents, rejected records, REMOVEs, keys-only records) that no plugin was written
//! against. `./dev plugins` builds all three into target/plugins/.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The three builds, by the name weir's manifest gives their files.
const BUILDS: [&str; 3] = [
    "salesforce-account",
    "salesforce-account-js",
    "salesforce-account-py",
];

/// What one `weir run` produced, with what legitimately differs between builds removed.
#[derive(Debug, PartialEq)]
struct RunOutput {
    status: Option<i32>,
    /// stdout exactly: one PutEvents entry per line.
    entries: String,
    /// The summary line from stderr, without the dead-letter directory.
    summary: String,
    /// Dead-letter files by name, each without the plugin's sha256.
    dead_letters: BTreeMap<String, Value>,
}

impl RunOutput {
    fn entry_count(&self) -> usize {
        self.entries.lines().count()
    }
}

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.current_dir(crate::support::root()).env_remove("RUST_LOG");
    c
}

/// The JS and Python builds precompiled once for every test here (compiling the 18 MB
/// Python build takes seconds); the Rust one is compiled as it loads.
fn compiled_dir() -> &'static Path {
    compiled().0.path()
}

/// The `compiled_sha256` pin `weir compile` printed for `build`'s `.cwasm`.
fn compiled_pin(build: &str) -> &'static str {
    compiled()
        .1
        .get(build)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("weir compile printed no pin for {build}"))
}

/// The big builds compiled once by `weir compile`, and the pins it printed for them.
fn compiled() -> &'static (tempfile::TempDir, std::collections::HashMap<String, String>) {
    static DIR: OnceLock<(tempfile::TempDir, std::collections::HashMap<String, String>)> =
        OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut pins = std::collections::HashMap::new();
        for name in &BUILDS[1..] {
            let out = weir()
                .arg("compile")
                .arg(crate::support::plugin(name))
                .arg("--out-dir")
                .arg(dir.path())
                .output()
                .expect("weir compile runs");
            assert!(
                out.status.success(),
                "weir compile {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let printed = String::from_utf8_lossy(&out.stdout).into_owned();
            if let Some(pin) = printed.lines().find_map(|l| {
                l.strip_prefix("compiled_sha256 = \"")
                    .and_then(|p| p.strip_suffix('"'))
            }) {
                pins.insert(name.to_string(), pin.to_owned());
            }
        }
        (dir, pins)
    })
}

/// The example manifest's `[[routes]]` and its acme tenant's `config`.
fn example_routes_and_acme_config() -> (toml::Value, toml::Value) {
    let path = crate::support::root().join("examples/weir.toml");
    let text = std::fs::read_to_string(&path).expect("examples/weir.toml");
    let manifest: toml::Table = toml::from_str(&text).expect("examples/weir.toml is TOML");
    let routes = manifest
        .get("routes")
        .expect("examples/weir.toml has routes");
    let config = manifest
        .get("tenants")
        .and_then(|t| t.get("acme"))
        .and_then(|t| t.get("config"))
        .expect("examples/weir.toml has [tenants.acme] with a config");
    (routes.clone(), config.clone())
}

/// A manifest in `dir` running `build` as plugin `salesforce-account` for acme and, through
/// the default tenant, for every other tenant, all with `config` and the example's routes.
fn manifest(dir: &Path, build: &str, config: &toml::Value) -> PathBuf {
    let (routes, _) = example_routes_and_acme_config();
    let mut plugin = toml::Table::new();
    plugin.insert(
        "path".into(),
        crate::support::plugin(build).display().to_string().into(),
    );
    if BUILDS[1..].contains(&build) {
        let cwasm = compiled_dir().join(format!("{build}.cwasm"));
        plugin.insert("compiled".into(), cwasm.display().to_string().into());
        plugin.insert("compiled_sha256".into(), compiled_pin(build).into());
    }
    let mut tenant = toml::Table::new();
    tenant.insert("plugin".into(), "salesforce-account".into());
    tenant.insert("config".into(), config.clone());
    let mut tenants = toml::Table::new();
    tenants.insert("acme".into(), tenant.clone().into());
    tenants.insert("default".into(), tenant.into());
    let mut plugins = toml::Table::new();
    plugins.insert("salesforce-account".into(), plugin.into());
    // Equivalence, not speed, is tested here: a loaded 2-core CI machine can push a first
    // call of the Python build past the default 100 ms.
    let mut limits = toml::Table::new();
    limits.insert("time_ms".into(), 10_000.into());
    let mut m = toml::Table::new();
    m.insert("event_bus".into(), "weir-languages".into());
    m.insert("limits".into(), limits.into());
    m.insert("plugins".into(), plugins.into());
    m.insert("routes".into(), routes);
    m.insert("tenants".into(), tenants.into());
    let path = dir.join(format!("{build}.toml"));
    std::fs::write(&path, toml::to_string(&m).expect("manifest serialises"))
        .expect("write manifest");
    path
}

fn run(manifest: &Path, event: &Path, dead_letter_dir: &Path) -> RunOutput {
    let out = weir()
        .arg("run")
        .arg("--manifest")
        .arg(manifest)
        .arg("--event")
        .arg(event)
        .arg("--dead-letter-dir")
        .arg(dead_letter_dir)
        .output()
        .expect("weir run runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stderr
        .lines()
        .rfind(|l| l.starts_with("records: "))
        .unwrap_or_else(|| panic!("no summary line from weir run: {stderr}"));
    let summary = summary.split(" (in ").next().unwrap_or(summary).to_owned();
    let mut dead_letters = BTreeMap::new();
    if dead_letter_dir.exists() {
        for f in std::fs::read_dir(dead_letter_dir).expect("dead-letter dir") {
            let f = f.expect("dead-letter entry").path();
            let text = std::fs::read_to_string(&f).expect("dead letter");
            let mut v: Value = serde_json::from_str(&text).expect("dead letter is JSON");
            let plugin = v
                .get_mut("plugin")
                .and_then(Value::as_object_mut)
                .unwrap_or_else(|| panic!("{} names no plugin", f.display()));
            assert!(
                plugin.remove("sha256").is_some(),
                "{} has no sha256",
                f.display()
            );
            let name = f
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            dead_letters.insert(name, v);
        }
    }
    RunOutput {
        status: out.status.code(),
        entries: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        summary,
        dead_letters,
    }
}

/// Runs `event` through all three builds with `config`; asserts they agree and returns the
/// Rust build's output.
fn same_from_every_build(event: &Path, config: &toml::Value) -> RunOutput {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut outputs = BUILDS.iter().map(|build| {
        let m = manifest(dir.path(), build, config);
        (
            *build,
            run(&m, event, &dir.path().join(format!("{build}-dead-letters"))),
        )
    });
    let (_, rust) = outputs.next().expect("the Rust build");
    assert!(
        matches!(rust.status, Some(0 | 1)),
        "the Rust build failed on {}: {rust:?}",
        event.display()
    );
    for (build, other) in outputs {
        if other.entries != rust.entries {
            let first = rust
                .entries
                .lines()
                .zip(other.entries.lines())
                .find(|(a, b)| a != b);
            panic!(
                "{build} printed other entries than the Rust build on {}; first difference:\n  rust: {:?}\n  {build}: {:?}\n(rust {} lines, {build} {} lines)",
                event.display(),
                first.map(|f| f.0),
                first.map(|f| f.1),
                rust.entry_count(),
                other.entry_count(),
            );
        }
        assert_eq!(
            other.dead_letters,
            rust.dead_letters,
            "{build}'s dead letters differ from the Rust build's on {}",
            event.display()
        );
        assert_eq!(
            other.summary,
            rust.summary,
            "{build} on {}",
            event.display()
        );
        assert_eq!(other.status, rust.status, "{build} on {}", event.display());
    }
    rust
}

fn messages(out: &RunOutput) -> Vec<String> {
    out.dead_letters
        .values()
        .map(|d| {
            d["reason"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn an_unseen_event_maps_byte_identically_in_rust_javascript_and_python() {
    let (_, acme) = example_routes_and_acme_config();
    let event = crate::support::root().join("tests/events/unseen-accounts.json");
    let out = same_from_every_build(&event, &acme);
    // 21 records: 15 become events (upserts, deletes), 6 are rejected by the plugin.
    assert_eq!(out.entry_count(), 15, "{}", out.entries);
    assert_eq!(out.dead_letters.len(), 6, "{:?}", messages(&out));
    assert_eq!(out.status, Some(1));
    let messages = messages(&out);
    for reason in [
        "the item has no name; Salesforce requires Account.Name",
        "the item has no external id at /customerId",
    ] {
        assert!(
            messages.iter().any(|m| m.ends_with(reason)),
            "no dead letter says {reason:?}: {messages:?}"
        );
    }
    // What makes the event nasty reached the output, so the comparison covered it.
    for needle in [
        r#"\"AnnualRevenue\":\"-12345678901234567890123456789012345678\""#,
        r#"\"AnnualRevenue\":0.000000000000000000000000000000000001"#,
        r#"\"NumberOfEmployees\":9223372036854775807"#,
        r#"\"NumberOfEmployees\":\"-9223372036854775809\""#,
        "9.9999999999999999999999999999999999999e+125",
        "Zo\u{eb}",
        "\u{1f980}",
        "%C3%9Cn%C3%AFc%C3%B8d%C3%A9%2F%F0%9F%98%80%20%23%3F%26%3D%25~ok._-",
        "SalesforceAccountDelete",
    ] {
        assert!(out.entries.contains(needle), "no entry holds {needle}");
    }
}

/// The example event and every golden case of salesforce-account, each with the acme
/// tenant's config and again with the case's own.
fn example_and_golden_runs() -> Vec<(PathBuf, toml::Value)> {
    let (_, acme) = example_routes_and_acme_config();
    let root = crate::support::root();
    let mut runs = vec![(root.join("examples/events/customers.json"), acme.clone())];
    let cases = root.join("plugins/salesforce-account/cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cases)
        .expect("plugins/salesforce-account/cases")
        .map(|e| e.expect("case").path())
        .filter(|p| p.join("event.json").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "{} holds no case", cases.display());
    for dir in dirs {
        runs.push((dir.join("event.json"), acme.clone()));
        // And with the case's own config, as `weir test` runs it.
        let own = [dir.join("config.toml"), cases.join("config.toml")]
            .into_iter()
            .find(|p| p.is_file());
        if let Some(own) = own {
            let text = std::fs::read_to_string(&own).expect("case config");
            let table: toml::Table = toml::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not TOML: {e}", own.display()));
            runs.push((dir.join("event.json"), table.into()));
        }
    }
    runs
}

#[test]
fn the_example_event_and_every_golden_case_map_identically() {
    let runs = example_and_golden_runs();
    let (mut entries, mut dead_letters) = (0, 0);
    for (event, config) in &runs {
        let out = same_from_every_build(event, config);
        entries += out.entry_count();
        dead_letters += out.dead_letters.len();
    }
    assert!(
        entries >= 3,
        "only {entries} entries over {} runs",
        runs.len()
    );
    assert!(dead_letters >= 1, "no case dead-lettered a record");
}

/// A component built against `weir:transform@0.1.0` (images as JSON text; `./dev plugins`
/// builds salesforce-account with the SDK's `contract-0-1` feature as
/// salesforce-account-0.1.wasm) still loads, and maps every run here exactly as the 0.2
/// build of the same plugin: the same entries byte for byte, dead letters and summary.
#[test]
fn a_0_1_build_loads_and_maps_byte_identically_to_its_0_2_build() {
    use weir_runtime::plugin::{Contract, LoadOptions, PluginEngine};
    let engine = PluginEngine::with_cache_dir(None).expect("engine");
    for (build, contract) in [
        ("salesforce-account", Contract::V0_2),
        ("salesforce-account-0.1", Contract::V0_1),
    ] {
        let path = crate::support::plugin(build);
        let bytes = std::fs::read(&path).expect("./dev plugins built it");
        let plugin = engine
            .load(
                build,
                &path.display().to_string(),
                &bytes,
                LoadOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{build} does not load: {e}"));
        assert_eq!(
            plugin.contract(),
            contract,
            "{build} is built against {contract:?}"
        );
    }
    let (_, acme) = example_routes_and_acme_config();
    let mut runs = example_and_golden_runs();
    runs.push((
        crate::support::root().join("tests/events/unseen-accounts.json"),
        acme,
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut entries = 0;
    for (i, (event, config)) in runs.iter().enumerate() {
        let [v02, v01] = ["salesforce-account", "salesforce-account-0.1"].map(|build| {
            let m = manifest(dir.path(), build, config);
            run(
                &m,
                event,
                &dir.path().join(format!("{build}-{i}-dead-letters")),
            )
        });
        assert_eq!(
            v01,
            v02,
            "the 0.1 build differs from the 0.2 build on {}",
            event.display()
        );
        entries += v02.entry_count();
    }
    assert!(
        entries >= 18,
        "only {entries} entries over {} runs",
        runs.len()
    );
}

/// What the function does with the big builds (1.7 MB JS, 18 MB Python): nothing at cold
/// start, and at first use the precompiled `.cwasm`, never a compile.
#[tokio::test(flavor = "multi_thread")]
async fn the_big_builds_load_lazily_and_precompiled_in_the_function() {
    let (_, config) = example_routes_and_acme_config();
    let dir = tempfile::tempdir().expect("temp dir");
    let text =
        std::fs::read_to_string(crate::support::root().join("examples/events/customers.json"))
            .expect("example event");
    let event: Value = serde_json::from_str(&text).expect("JSON");
    let records: Vec<Box<serde_json::value::RawValue>> = event["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| serde_json::value::RawValue::from_string(r.to_string()).expect("raw"))
        .collect();
    for build in &BUILDS[1..] {
        let engine = std::sync::Arc::new(
            weir_runtime::plugin::PluginEngine::with_cache_dir(None).expect("engine"),
        );
        let loader = weir_runtime::loader::Loader::load_lazy(
            weir_aws::store::ObjectStore::default(),
            engine.clone(),
            weir_core::location::Location::File(manifest(dir.path(), build, &config)),
            std::time::Duration::from_secs(3600),
        )
        .await
        .expect("manifest loads");
        assert!(loader.pipeline().loaded_plugins().is_empty(), "{build}");
        let mut letters = Vec::new();
        let report = weir_core::batch::run(
            loader.pipeline(),
            records.clone(),
            weir_core::sink::DryRun,
            weir_aws::dead_letter::DeadLetterSink::Collect(&mut letters),
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
        )
        .await
        .expect("batch");
        assert!(!report.entries.is_empty(), "{build}");
        assert_eq!(loader.pipeline().loaded_plugins().len(), 1, "{build}");
        assert_eq!(
            engine.compiles(),
            0,
            "{build} was compiled, not loaded precompiled"
        );
    }
}

/// A value the stream wrote wrongly (here an `N` that is not a number) is found when it is
/// decoded. A 0.2 plugin reads through the host, which decodes only what is read: the
/// record is dead-lettered as `decode`, naming the value, when the plugin reads it, and
/// goes through when no plugin does. A 0.1 plugin is given whole images, so a bad value
/// anywhere in them dead-letters the record.
#[test]
fn a_value_written_wrongly_is_dead_lettered_when_read() {
    let (_, acme) = example_routes_and_acme_config();
    let dir = tempfile::tempdir().expect("temp dir");
    let record = |id: &str, attribute: &str| {
        serde_json::json!({
            "eventID": id,
            "eventName": "INSERT",
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:1:table/Customers/stream/s",
            "dynamodb": {
                "SequenceNumber": "7",
                "Keys": {"tenantId": {"S": "acme"}, "customerId": {"S": id}},
                "NewImage": {
                    "tenantId": {"S": "acme"},
                    "customerId": {"S": id},
                    "name": {"S": "Ada"},
                    attribute: {"N": "12abc"}
                }
            }
        })
    };
    // The mapping reads /lifetimeValue, never /notes.
    let event = dir.path().join("event.json");
    let records = [record("read", "lifetimeValue"), record("unread", "notes")];
    std::fs::write(
        &event,
        serde_json::json!({ "Records": records }).to_string(),
    )
    .expect("write event");
    let [v02, v01] = ["salesforce-account", "salesforce-account-0.1"].map(|build| {
        let m = manifest(dir.path(), build, &acme);
        run(
            &m,
            &event,
            &dir.path().join(format!("{build}-dead-letters")),
        )
    });
    let read_reason = "dynamodb.NewImage.lifetimeValue: N value \"12abc\" is not a number";
    let reasons = |out: &RunOutput| {
        out.dead_letters
            .values()
            .map(|d| {
                (
                    d["reason"]["kind"].as_str().unwrap_or_default().to_owned(),
                    d["record"]["eventID"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    d["reason"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let v02_reasons = reasons(&v02);
    assert_eq!(v02_reasons.len(), 1, "{v02_reasons:?}");
    assert_eq!(
        (v02_reasons[0].0.as_str(), v02_reasons[0].1.as_str()),
        ("decode", "read")
    );
    assert!(v02_reasons[0].2.starts_with(read_reason), "{v02_reasons:?}");
    assert_eq!(
        v02.entry_count(),
        1,
        "the record whose bad value nobody reads goes through"
    );
    assert!(
        v02.entries.contains(r#"\"externalId\":\"unread\""#),
        "{}",
        v02.entries
    );

    let mut v01_reasons = reasons(&v01);
    v01_reasons.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(v01.entry_count(), 0, "{}", v01.entries);
    assert_eq!(
        v01_reasons
            .iter()
            .map(|r| (r.0.as_str(), r.1.as_str()))
            .collect::<Vec<_>>(),
        [("decode", "read"), ("decode", "unread")]
    );
    assert!(v01_reasons[0].2.starts_with(read_reason), "{v01_reasons:?}");
}
