//! Drop-in plugins against a real moto server (S3, SQS, EventBridge): manifests and
//! plugins in S3, hot reload, the compiled cache, tenant isolation, and redrive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use weir_aws::dead_letter::DeadLetterSink;
use weir_aws::dead_letter::{DeadLetterQueue, QueueConfig};
use weir_aws::publish::{PublishConfig, Publisher};
use weir_aws::store::ObjectStore;
use weir_core::batch::{self, Verdict};
use weir_core::location::Location;
use weir_runtime::loader::Loader;
use weir_runtime::plugin::PluginEngine;

struct S3 {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3 {
    async fn new(moto: &Moto, bucket: &str) -> S3 {
        let conf = aws_sdk_s3::config::Builder::from(&sdk_config(&moto.endpoint()))
            .force_path_style(true)
            .build();
        let client = aws_sdk_s3::Client::from_conf(conf);
        client
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
        S3 {
            client,
            bucket: bucket.to_owned(),
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .expect("put object");
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn store(&self) -> ObjectStore {
        ObjectStore::with_s3(self.client.clone())
    }
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(plugin(name)).expect("plugin bytes")
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn raw(records: &[Value]) -> Vec<Box<RawValue>> {
    records
        .iter()
        .map(|r| RawValue::from_string(r.to_string()).expect("raw"))
        .collect()
}

/// Runs records through a pipeline without publishing, keeping the dead letters.
async fn collect_batch(
    pipeline: Arc<weir_runtime::Pipeline>,
    records: &[Value],
) -> (batch::BatchReport, Vec<weir_core::model::DeadLetter>) {
    let mut letters = Vec::new();
    let report = batch::run(
        pipeline,
        raw(records),
        weir_core::sink::DryRun,
        DeadLetterSink::Collect(&mut letters),
        tokio::time::Instant::now() + Duration::from_secs(30),
    )
    .await
    .expect("batch");
    (report, letters)
}

/// Runs records through a pipeline without publishing; returns each record's entries'
/// detail types and the verdicts.
async fn dry_run(loader: &mut Loader, records: &[Value]) -> (Vec<String>, Vec<Verdict>) {
    let (report, _) = collect_batch(loader.current().await, records).await;
    (
        report
            .entries
            .iter()
            .map(|e| e.detail_type.clone())
            .collect(),
        report.verdicts,
    )
}

fn details(entries: &[weir_core::model::Entry]) -> Vec<Value> {
    entries
        .iter()
        .map(|e| serde_json::from_str(&e.detail).expect("detail JSON"))
        .collect()
}

const MAPPING_TENANT: &str = "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"CustomerChanged\", fields = { Name = \"/name\" } }\n";

fn manifest_text(plugin_path: &str, pin: Option<&str>, tenants: &str) -> String {
    let mut text = format!("event_bus = \"drop-in\"\n[plugins.mapping]\npath = {plugin_path:?}\n");
    if let Some(p) = pin {
        text.push_str(&format!("sha256 = \"{p}\"\n"));
    }
    text.push_str("[[routes]]\ntable = \"Customers\"\nsource = \"weir.customers\"\ntenant = { attribute = \"tenantId\" }\n");
    text.push_str(tenants);
    text
}

async fn s3_loader(
    s3: &S3,
    engine: Arc<PluginEngine>,
    interval: Duration,
) -> Result<Loader, weir_core::transform::LoadProblems> {
    Loader::load(
        s3.store(),
        engine,
        Location::parse(&s3.url("weir.toml")).expect("url"),
        interval,
    )
    .await
}

fn engine() -> Arc<PluginEngine> {
    Arc::new(PluginEngine::with_cache_dir(None).expect("engine"))
}

#[tokio::test]
async fn a_manifest_and_pinned_plugins_in_s3_work_and_a_wrong_pin_is_refused() {
    let moto = Moto::start();
    let s3 = S3::new(&moto, "plugins").await;
    let bytes = wasm("mapping");
    s3.put("v1/mapping.wasm", bytes.clone()).await;
    // The plugin path is relative to the manifest's key.
    s3.put(
        "weir.toml",
        manifest_text("v1/mapping.wasm", Some(&sha256(&bytes)), MAPPING_TENANT).into_bytes(),
    )
    .await;
    let mut loader = s3_loader(&s3, engine(), Duration::from_secs(3600))
        .await
        .expect("loads from S3");
    let records = vec![stream_record(1, "e1", "globex", json!({}))];
    let (types, verdicts) = dry_run(&mut loader, &records).await;
    assert_eq!(types, ["CustomerChanged"]);
    assert_eq!(verdicts, [Verdict::Published]);

    s3.put(
        "weir.toml",
        manifest_text("v1/mapping.wasm", Some(&"ab".repeat(32)), MAPPING_TENANT).into_bytes(),
    )
    .await;
    let err = s3_loader(&s3, engine(), Duration::from_secs(3600))
        .await
        .err()
        .expect("pin mismatch");
    let msg = err.to_string();
    assert!(msg.contains("s3://plugins/v1/mapping.wasm"), "{msg}");
    assert!(
        msg.contains(&format!(
            "sha256 is {}, but the manifest pins {}",
            sha256(&bytes),
            "ab".repeat(32)
        )),
        "{msg}"
    );
}

/// A subscriber that keeps what is logged, for asserting on log lines.
fn captured_logs() -> (tracing::subscriber::DefaultGuard, Arc<Mutex<Vec<u8>>>) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    (tracing::subscriber::set_default(subscriber), buf)
}

#[tokio::test]
async fn a_replaced_plugin_is_picked_up_warm_and_a_broken_one_keeps_the_old() {
    let (_guard, logs) = captured_logs();
    let moto = Moto::start();
    let s3 = S3::new(&moto, "reload").await;
    s3.put("plugins/mapping.wasm", wasm("mapping")).await;
    s3.put(
        "weir.toml",
        manifest_text("plugins/mapping.wasm", None, MAPPING_TENANT).into_bytes(),
    )
    .await;
    let mut loader = s3_loader(&s3, engine(), Duration::from_secs(3600))
        .await
        .expect("loads");
    let records = vec![stream_record(1, "e1", "globex", json!({}))];
    assert_eq!(dry_run(&mut loader, &records).await.0, ["CustomerChanged"]);

    // A new version under the same key: not used before the interval has passed...
    s3.put("plugins/mapping.wasm", wasm("echo-state")).await;
    assert_eq!(dry_run(&mut loader, &records).await.0, ["CustomerChanged"]);
    // ...and used from the next invocation once it has (no restart, same loader).
    loader.check_now();
    assert_eq!(dry_run(&mut loader, &records).await.0, ["EchoState"]);
    assert_eq!((loader.reloads(), loader.reload_failures()), (1, 0));

    // Nothing changed: a check is a conditional GET, and nothing is rebuilt.
    loader.check_now();
    assert_eq!(dry_run(&mut loader, &records).await.0, ["EchoState"]);
    assert_eq!(loader.reloads(), 1);

    // A broken replacement: the old version keeps serving, and the failure is logged.
    s3.put("plugins/mapping.wasm", b"\0asm but not really".to_vec())
        .await;
    loader.check_now();
    assert_eq!(dry_run(&mut loader, &records).await.0, ["EchoState"]);
    assert_eq!(loader.reload_failures(), 1);
    let text = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(
        text.contains(
            "reload refused the plugin's new version; its previous version keeps serving"
        ),
        "{text}"
    );
    assert!(text.contains("not a valid WebAssembly component"), "{text}");

    // A manifest pinning a hash the plugin does not have: the manifest changed the plugin's
    // entry, so the old version (which the new entry does not vouch for) stops serving, and
    // the records are dead-lettered with the reason, as a cold start with it would do.
    s3.put("plugins/mapping.wasm", wasm("mapping")).await;
    s3.put(
        "weir.toml",
        manifest_text(
            "plugins/mapping.wasm",
            Some(&"0".repeat(64)),
            MAPPING_TENANT,
        )
        .into_bytes(),
    )
    .await;
    loader.check_now();
    let (report, letters) = collect_batch(loader.current().await, &records).await;
    assert_eq!(
        report.verdicts,
        [Verdict::DeadLettered {
            kind: weir_core::model::DeadLetterKind::PluginLoad
        }]
    );
    assert!(
        letters[0]
            .reason
            .message
            .contains(&format!("but the manifest pins {}", "0".repeat(64))),
        "{}",
        letters[0].reason.message
    );
    assert_eq!(loader.reload_failures(), 2);
}

#[tokio::test]
async fn an_identical_plugin_under_another_key_is_not_compiled_again() {
    let moto = Moto::start();
    let s3 = S3::new(&moto, "cache").await;
    let bytes = wasm("mapping");
    s3.put("a/mapping.wasm", bytes.clone()).await;
    s3.put("b/copy.wasm", bytes.clone()).await;
    let text = "event_bus = \"b\"\n[plugins.one]\npath = \"a/mapping.wasm\"\n[plugins.two]\npath = \"b/copy.wasm\"\n[[routes]]\ntable = \"Customers\"\nsource = \"s\"\ntenant = { attribute = \"tenantId\" }\n[tenants.t1]\nplugin = \"one\"\n[tenants.t2]\nplugin = \"two\"\n";
    s3.put("weir.toml", text.as_bytes().to_vec()).await;
    let cache = tempfile::tempdir().expect("tempdir");
    let first =
        Arc::new(PluginEngine::with_cache_dir(Some(cache.path().to_path_buf())).expect("engine"));
    let _loader = s3_loader(&s3, first.clone(), Duration::from_secs(3600))
        .await
        .expect("loads");
    assert_eq!(first.compiles(), 1, "two keys, one content: one compile");

    // A cold start sharing the disk cache compiles nothing.
    let second =
        Arc::new(PluginEngine::with_cache_dir(Some(cache.path().to_path_buf())).expect("engine"));
    let _loader = s3_loader(&s3, second.clone(), Duration::from_secs(3600))
        .await
        .expect("loads");
    assert_eq!(second.compiles(), 0);

    // With no cache, a `.cwasm` from `weir compile` next to the plugin is used instead, when
    // the manifest pins its bytes...
    let one_plugin = text
        .replace("[plugins.two]\npath = \"b/copy.wasm\"\n", "")
        .replace("[tenants.t2]\nplugin = \"two\"\n", "");
    let with_cwasm = |cwasm: &[u8], pin: Option<&str>| {
        let manifest = match pin {
            Some(pin) => one_plugin.replace(
                "path = \"a/mapping.wasm\"\n",
                &format!("path = \"a/mapping.wasm\"\ncompiled_sha256 = \"{pin}\"\n"),
            ),
            None => one_plugin.clone(),
        };
        let s3 = &s3;
        let cwasm = cwasm.to_vec();
        async move {
            s3.put("a/mapping.cwasm", cwasm).await;
            s3.put("weir.toml", manifest.into_bytes()).await;
            let engine = engine();
            let _loader = s3_loader(s3, engine.clone(), Duration::from_secs(3600))
                .await
                .expect("loads");
            engine.compiles()
        }
    };
    let good = PluginEngine::precompile(&bytes, None).expect("precompile");
    assert_eq!(
        with_cwasm(&good, Some(&sha256(&good))).await,
        0,
        "the pinned .cwasm was used"
    );
    // With the .wasm pinned too, only the pinned native code runs, and the .wasm is not even
    // read (here it is garbage): one S3 read per plugin less at cold start. A reload takes
    // its version by HEAD and finds nothing changed.
    s3.put("a/mapping.wasm", b"\0asm never read".to_vec()).await;
    s3.put(
        "weir.toml",
        one_plugin
            .replace(
                "path = \"a/mapping.wasm\"\n",
                &format!(
                    "path = \"a/mapping.wasm\"\nsha256 = \"{}\"\ncompiled_sha256 = \"{}\"\n",
                    sha256(&bytes),
                    sha256(&good)
                ),
            )
            .replace(
                "[tenants.t1]\nplugin = \"one\"\n",
                "[tenants.t1]\nplugin = \"one\"\nconfig = { detail_type = \"CustomerChanged\", fields = { Name = \"/name\" } }\n",
            )
            .into_bytes(),
    )
    .await;
    let both = engine();
    let mut loader = Loader::load_lazy(
        s3.store(),
        both.clone(),
        Location::parse(&s3.url("weir.toml")).expect("url"),
        Duration::from_secs(3600),
    )
    .await
    .expect("manifest loads");
    let records = [stream_record(1, "ev-1", "t1", json!({}))];
    let (types, verdicts) = dry_run(&mut loader, &records).await;
    assert_eq!(
        (types, verdicts),
        (vec!["CustomerChanged".to_owned()], vec![Verdict::Published])
    );
    assert_eq!(both.compiles(), 0);
    loader.check_now();
    dry_run(&mut loader, &records).await;
    assert_eq!((loader.reloads(), loader.reload_failures()), (0, 0));
    s3.put("a/mapping.wasm", bytes.clone()).await;

    // ...but never without a pin, nor one whose bytes differ from the pin...
    assert_eq!(
        with_cwasm(&good, None).await,
        1,
        "an unpinned .cwasm is not run"
    );
    let mut forged = PluginEngine::precompile(&wasm("echo-state"), None).expect("precompile");
    let trailer = format!("\nweir-cwasm-2 {}\n", sha256(&wasm("echo-state")));
    forged.truncate(forged.len() - trailer.len());
    forged.extend_from_slice(format!("\nweir-cwasm-2 {}\n", sha256(&bytes)).as_bytes());
    assert_eq!(
        with_cwasm(&forged, Some(&sha256(&good))).await,
        1,
        "another plugin's code under a forged trailer does not match the pin"
    );
    // ...nor a pinned one compiled for another CPU, or from other bytes.
    let other_cpu = if cfg!(target_arch = "x86_64") {
        "aarch64"
    } else {
        "x86_64"
    };
    let triple = weir_runtime::plugin::target_triple(other_cpu);
    let cross = PluginEngine::precompile(&bytes, triple).expect("cross-compile");
    assert_eq!(
        with_cwasm(&cross, Some(&sha256(&cross))).await,
        1,
        "a .cwasm for {other_cpu} is not valid here"
    );
    let echo = PluginEngine::precompile(&wasm("echo-state"), None).expect("precompile");
    assert_eq!(
        with_cwasm(&echo, Some(&sha256(&echo))).await,
        1,
        "a .cwasm of another plugin is never used, pinned or not"
    );
}

/// What the echo-state plugin saw, per entry: the record's eventId, the previous one its
/// instance remembered, and its call count. Asserts the instance never remembered another
/// tenant's record.
fn echoes(entries: &[weir_core::model::Entry]) -> Vec<(String, Value, Value)> {
    details(entries)
        .iter()
        .map(|x| {
            let p = &x["payload"];
            if !p["previousTenant"].is_null() {
                assert_eq!(p["previousTenant"], p["tenant"], "{x}");
            }
            (
                p["eventId"].as_str().unwrap_or("").to_owned(),
                p["previousEventId"].clone(),
                p["calls"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn two_tenants_outputs_never_mix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(
        dir.path(),
        "b",
        None,
        &["echo-state"],
        "[tenants.acme]\nplugin = \"echo-state\"\n[tenants.globex]\nplugin = \"echo-state\"\n",
    );
    let mut loader = Loader::load(
        ObjectStore::default(),
        engine(),
        Location::File(manifest),
        Duration::from_secs(3600),
    )
    .await
    .expect("loads");
    let records: Vec<Value> = [
        ("acme", 1),
        ("globex", 2),
        ("acme", 3),
        ("globex", 4),
        ("acme", 5),
    ]
    .iter()
    .map(|(t, i)| stream_record(*i, &format!("{t}-{i}"), t, json!({})))
    .collect();
    let (report, _) = collect_batch(loader.current().await, &records).await;
    let seen = echoes(&report.entries);
    assert_eq!(
        seen,
        [
            ("acme-1".into(), Value::Null, json!(1)),
            ("globex-2".into(), Value::Null, json!(1)),
            ("acme-3".into(), json!("acme-1"), json!(2)),
            ("globex-4".into(), json!("globex-2"), json!(2)),
            ("acme-5".into(), json!("acme-3"), json!(3)),
        ]
    );
}

/// Instances stay warm across a warm function's batches, per (tenant, plugin), and are
/// recycled after `instance_calls` calls: the echo plugin remembers the previous record in
/// its instance's memory, so a warm one names it, and a recycled one starts clean. Tenants
/// never see each other's state.
#[tokio::test]
async fn instances_stay_warm_across_batches_and_a_recycled_one_starts_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(
        dir.path(),
        "b",
        None,
        &["echo-state"],
        "[tenants.acme]\nplugin = \"echo-state\"\n[tenants.globex]\nplugin = \"echo-state\"\n\
         [limits]\ninstance_calls = 3\n",
    );
    let mut loader = Loader::load(
        ObjectStore::default(),
        engine(),
        Location::File(manifest),
        Duration::from_secs(3600),
    )
    .await
    .expect("loads");
    let pipeline = loader.current().await;
    let batches: [&[(&str, u64)]; 3] = [
        &[("acme", 1), ("globex", 2)],
        &[("acme", 3), ("acme", 4), ("globex", 5)],
        &[("acme", 6)],
    ];
    let mut seen = Vec::new();
    let mut warm = Vec::new();
    for batch in batches {
        let records: Vec<Value> = batch
            .iter()
            .map(|(t, i)| stream_record(*i, &format!("{t}-{i}"), t, json!({})))
            .collect();
        let (report, _) = collect_batch(pipeline.clone(), &records).await;
        seen.extend(echoes(&report.entries));
        warm.push(pipeline.warm_instances());
    }
    assert_eq!(
        seen,
        [
            ("acme-1".into(), Value::Null, json!(1)),
            ("globex-2".into(), Value::Null, json!(1)),
            // The next batch finds both instances warm.
            ("acme-3".into(), json!("acme-1"), json!(2)),
            // acme's third call: its instance is recycled after it.
            ("acme-4".into(), json!("acme-3"), json!(3)),
            ("globex-5".into(), json!("globex-2"), json!(2)),
            // A fresh instance: nothing of acme-4 is left.
            ("acme-6".into(), Value::Null, json!(1)),
        ]
    );
    assert_eq!(warm, [2, 1, 2], "instances kept warm after each batch");
}

#[tokio::test]
async fn tenants_from_key_patterns_default_entries_fan_out_and_destination_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "event_bus = \"b\"\n[plugins.mapping]\npath = {:?}\n[plugins.echo]\npath = {:?}\n[[routes]]\ntable = \"Customers\"\nsource = \"s\"\ntenant = {{ key = \"pk\", pattern = \"TENANT#{{tenant}}#...\" }}\n\
         [tenants.acme]\nplugins = [\"mapping\", \"echo\"]\nconfig = {{ detail_type = \"Mapped\", destination = \"crm\", fields = {{ Name = \"/name\" }} }}\n\
         [tenants.default]\nplugin = \"mapping\"\ndestinations = [\"webhook\"]\nconfig = {{ detail_type = \"Mapped\", destination = \"crm\", fields = {{ Name = \"/name\" }} }}\n",
        plugin("mapping").display().to_string(),
        plugin("echo-state").display().to_string()
    );
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, text).expect("write");
    let mut loader = Loader::load(
        ObjectStore::default(),
        engine(),
        Location::File(path),
        Duration::from_secs(3600),
    )
    .await
    .expect("loads");
    let keyed = |seq: u64, pk: &str| {
        let mut r = stream_record(seq, &format!("e{seq}"), "ignored", json!({"pk": {"S": pk}}));
        r["dynamodb"]["Keys"] = json!({"pk": {"S": pk}});
        r
    };
    let records = vec![
        keyed(1, "TENANT#acme#CUSTOMER#1"),
        keyed(2, "TENANT#initech#CUSTOMER#9"),
        keyed(3, "NOPE"),
    ];
    let (report, letters) = collect_batch(loader.current().await, &records).await;
    // acme fans out to both plugins, each with its own events and ids.
    let d = details(&report.entries);
    assert_eq!(d.len(), 2);
    assert_eq!(
        (
            d[0]["metadata"]["plugin"].as_str(),
            d[1]["metadata"]["plugin"].as_str()
        ),
        (Some("mapping"), Some("echo"))
    );
    assert_eq!(d[1]["payload"]["tenant"], "acme");
    assert_ne!(d[0]["metadata"]["id"], d[1]["metadata"]["id"]);
    assert_eq!(report.verdicts[0], Verdict::Published);
    // initech has no entry: the default serves it, as itself, and its rule refuses "crm".
    assert_eq!(
        report.verdicts[1],
        Verdict::DeadLettered {
            kind: weir_core::model::DeadLetterKind::InvalidOutput
        }
    );
    assert_eq!(letters[0].tenant.as_deref(), Some("initech"));
    assert!(
        letters[0]
            .reason
            .message
            .contains("\"crm\", which tenant \"initech\" may not use (allowed: webhook)"),
        "{}",
        letters[0].reason.message
    );
    // A key that does not fit the pattern has no tenant: the default serves it too.
    assert_eq!(
        report.verdicts[2],
        Verdict::DeadLettered {
            kind: weir_core::model::DeadLetterKind::InvalidOutput
        }
    );
    assert_eq!(letters[1].tenant.as_deref(), Some("default"));
}

fn lazy_manifest(dir: &std::path::Path, tenants: &[(&str, &std::path::Path)]) -> Location {
    let mut text = String::from(
        "event_bus = \"lazy\"\n[[routes]]\ntable = \"Customers\"\nsource = \"weir.customers\"\ntenant = { attribute = \"tenantId\" }\n",
    );
    for (tenant, path) in tenants {
        text.push_str(&format!(
            "[plugins.{tenant}-plugin]\npath = {:?}\n[tenants.{tenant}]\nplugin = \"{tenant}-plugin\"\nconfig = {{ detail_type = \"CustomerChanged\", fields = {{ Name = \"/name\" }} }}\n",
            path.display().to_string()
        ));
    }
    let file = dir.join("weir.toml");
    std::fs::write(&file, text).expect("manifest");
    Location::File(file)
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_load_on_first_use_not_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mapping = plugin("mapping");
    // Two plugins with different bytes, so each is its own compile.
    let echo = plugin("echo-state");
    let location = lazy_manifest(
        dir.path(),
        &[
            ("globex", &mapping),
            ("acme", &echo),
            ("initech", &mapping),
            ("hooli", &mapping),
        ],
    );
    let engine = engine();
    let mut loader = Loader::load_lazy(
        ObjectStore::default(),
        engine.clone(),
        location,
        Duration::from_secs(3600),
    )
    .await
    .expect("manifest loads");
    assert_eq!(engine.compiles(), 0, "nothing is compiled at start");
    assert!(loader.pipeline().loaded_plugins().is_empty());

    let records: Vec<Value> = (1..=3)
        .map(|i| stream_record(i, &format!("ev-{i}"), "globex", json!({})))
        .collect();
    let (types, verdicts) = dry_run(&mut loader, &records).await;
    assert_eq!(verdicts, vec![Verdict::Published; 3]);
    assert_eq!(types.len(), 3);
    let loaded: Vec<String> = loader.pipeline().loaded_plugins().into_keys().collect();
    assert_eq!(
        loaded,
        vec!["globex-plugin".to_owned()],
        "only the plugin used"
    );
    assert_eq!(engine.compiles(), 1);

    // A batch needing two plugins not yet loaded loads both before its records run
    // (side by side), and still not the one no record needs.
    let mixed: Vec<Value> = (4..=7)
        .map(|i| {
            let tenant = if i % 2 == 0 { "initech" } else { "hooli" };
            stream_record(i, &format!("ev-{i}"), tenant, json!({}))
        })
        .collect();
    loader.pipeline().load_needed(&raw(&mixed)).await;
    let mut loaded: Vec<String> = loader.pipeline().loaded_plugins().into_keys().collect();
    loaded.sort();
    assert_eq!(
        loaded,
        vec!["globex-plugin", "hooli-plugin", "initech-plugin"],
        "loaded before any of the batch's records ran"
    );
    let (types, verdicts) = dry_run(&mut loader, &mixed).await;
    assert_eq!(verdicts, vec![Verdict::Published; 4]);
    assert_eq!(types.len(), 4);
    let mut loaded: Vec<String> = loader.pipeline().loaded_plugins().into_keys().collect();
    loaded.sort();
    assert_eq!(
        loaded,
        vec!["globex-plugin", "hooli-plugin", "initech-plugin"]
    );
    assert_eq!(engine.compiles(), 1, "their bytes are globex's: no compile");

    // The same pipeline keeps them: another batch loads nothing more.
    let (_, verdicts) = dry_run(&mut loader, &records).await;
    assert_eq!(verdicts, vec![Verdict::Published; 3]);
    assert_eq!(engine.compiles(), 1);
    assert_eq!(
        loader.pipeline().loaded_plugins().len(),
        3,
        "acme's is never needed"
    );

    // That batch needed nothing new, so the warm pipeline stops scanning batches: acme's
    // plugin, first needed now, is left to its first record.
    let acme = vec![stream_record(8, "ev-8", "acme", json!({}))];
    loader.pipeline().load_needed(&raw(&acme)).await;
    assert_eq!(loader.pipeline().loaded_plugins().len(), 3, "not scanned");
    let (_, verdicts) = dry_run(&mut loader, &acme).await;
    assert_eq!(verdicts, vec![Verdict::Published]);
    assert_eq!(
        loader.pipeline().loaded_plugins().len(),
        4,
        "loaded on first use"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_plugin_dead_letters_its_tenant_and_a_missing_one_retries_while_others_publish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component").expect("write");
    let missing = dir.path().join("not-uploaded-yet.wasm");
    let mapping = plugin("mapping");
    let location = lazy_manifest(
        dir.path(),
        &[
            ("globex", &mapping),
            ("broken", &garbage),
            ("missing", &missing),
        ],
    );
    let mut loader = Loader::load_lazy(
        ObjectStore::default(),
        engine(),
        location.clone(),
        Duration::from_secs(3600),
    )
    .await
    .expect("a lazy start does not read plugins");
    let records = vec![
        stream_record(1, "ev-1", "broken", json!({})),
        stream_record(2, "ev-2", "globex", json!({})),
        stream_record(3, "ev-3", "missing", json!({})),
        stream_record(4, "ev-4", "broken", json!({})),
        stream_record(5, "ev-5", "globex", json!({})),
    ];
    let (report, letters) = collect_batch(loader.current().await, &records).await;
    let kinds: Vec<String> = report
        .verdicts
        .iter()
        .map(|v| match v {
            Verdict::Published => "published".to_owned(),
            Verdict::Filtered => "filtered".to_owned(),
            Verdict::Coalesced => "coalesced".to_owned(),
            Verdict::DeadLettered { kind } => kind.to_string(),
            Verdict::Retry { .. } => "retry".to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "plugin-load",
            "published",
            "retry",
            "plugin-load",
            "published"
        ]
    );
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        assert_eq!(letter.tenant.as_deref(), Some("broken"));
        assert!(
            letter
                .reason
                .message
                .contains("not a valid WebAssembly component"),
            "{}",
            letter.reason.message
        );
    }
    assert_eq!(report.retry_sequence_numbers().len(), 1);

    // The eager load (weir check, weir run) names both plugins at once.
    let problems = Loader::load(
        ObjectStore::default(),
        engine(),
        location,
        Duration::from_secs(3600),
    )
    .await
    .err()
    .expect("eager load refuses");
    let all = problems.to_string();
    assert_eq!(problems.problems.len(), 2, "{all}");
    assert!(
        all.contains("broken-plugin") && all.contains("missing-plugin"),
        "{all}"
    );
    // Typed: a plugin that cannot be read may pass (retry); one that cannot be used needs a fix.
    let kinds: std::collections::BTreeMap<&str, bool> = problems
        .problems
        .iter()
        .filter_map(|p| match p {
            weir_core::transform::LoadProblem::Plugin { name, error } => Some((
                name.as_str(),
                matches!(error, weir_core::transform::SlotError::Broken(_)),
            )),
            weir_core::transform::LoadProblem::Manifest(_) => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [("broken-plugin", true), ("missing-plugin", false)].into(),
        "{all}"
    );
}

/// `require_precompiled = true`: a function that must never compile at cold start. A tenant
/// whose plugin has a pinned `.cwasm` runs with 0 compiles; a tenant whose plugin has none
/// is dead-lettered as `plugin-load`, with the reason, and the other tenant goes on.
#[tokio::test(flavor = "multi_thread")]
async fn under_require_precompiled_a_plugin_without_pinned_code_dead_letters_only_its_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mapping = dir.path().join("mapping.wasm");
    std::fs::copy(plugin("mapping"), &mapping).expect("copy");
    let cwasm = PluginEngine::precompile(&wasm("mapping"), None).expect("precompile");
    std::fs::write(dir.path().join("mapping.cwasm"), &cwasm).expect("write");
    let echo = dir.path().join("echo-state.wasm");
    std::fs::copy(plugin("echo-state"), &echo).expect("copy");
    let text = format!(
        "require_precompiled = true\nevent_bus = \"b\"\n\
         [plugins.mapping]\npath = \"mapping.wasm\"\ncompiled_sha256 = \"{}\"\n\
         [plugins.echo]\npath = \"echo-state.wasm\"\n\
         [[routes]]\ntable = \"Customers\"\nsource = \"weir.customers\"\ntenant = {{ attribute = \"tenantId\" }}\n\
         [tenants.globex]\nplugin = \"mapping\"\nconfig = {{ detail_type = \"CustomerChanged\", fields = {{ Name = \"/name\" }} }}\n\
         [tenants.acme]\nplugin = \"echo\"\n",
        sha256(&cwasm)
    );
    std::fs::write(dir.path().join("weir.toml"), text).expect("manifest");
    let engine = engine();
    let loader = Loader::load_lazy(
        ObjectStore::default(),
        engine.clone(),
        Location::File(dir.path().join("weir.toml")),
        Duration::from_secs(3600),
    )
    .await
    .expect("the manifest loads: plugins load on first use");
    let records: Vec<Value> = (1..=4)
        .map(|i| {
            let tenant = if i % 2 == 0 { "acme" } else { "globex" };
            stream_record(i, &format!("ev-{i}"), tenant, json!({}))
        })
        .collect();
    let (report, letters) = collect_batch(loader.pipeline(), &records).await;
    let load = Verdict::DeadLettered {
        kind: weir_core::model::DeadLetterKind::PluginLoad,
    };
    assert_eq!(
        report.verdicts,
        vec![Verdict::Published, load.clone(), Verdict::Published, load]
    );
    assert_eq!(engine.compiles(), 0, "nothing was compiled");
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        assert_eq!(letter.tenant.as_deref(), Some("acme"));
        assert!(
            letter.reason.message.contains("require_precompiled = true")
                && letter
                    .reason
                    .message
                    .contains("no precompiled .cwasm was found"),
            "{}",
            letter.reason.message
        );
    }
    assert_eq!(
        details(&report.entries)
            .iter()
            .map(|d| d["metadata"]["tenant"].clone())
            .collect::<Vec<_>>(),
        vec![json!("globex"), json!("globex")]
    );
}

/// A moto bus whose one rule sends every `weir.customers` event to a queue, and weir's
/// dead-letter queue: what a batch published and dead-lettered, read back from SQS.
struct PublishedAndDeadLettered {
    sqs: aws_sdk_sqs::Client,
    out: String,
    dlq: String,
    publisher: Publisher,
    dead_letters: DeadLetterQueue,
}

impl PublishedAndDeadLettered {
    async fn new(moto: &Moto, bus: &str) -> Self {
        let config = sdk_config(&moto.endpoint());
        let sqs = aws_sdk_sqs::Client::new(&config);
        let events = aws_sdk_eventbridge::Client::new(&config);
        let (dlq, _) = create_queue(&sqs, &format!("{bus}-dlq"), None).await;
        let (out, out_arn) = create_queue(&sqs, &format!("{bus}-out"), None).await;
        bus_to_queue(&events, bus, &out_arn).await;
        PublishedAndDeadLettered {
            publisher: Publisher::new(
                weir_aws::client::eventbridge(&config),
                PublishConfig::default(),
            ),
            dead_letters: DeadLetterQueue::new(sqs.clone(), &dlq, QueueConfig::default()),
            sqs,
            out,
            dlq,
        }
    }

    /// Runs `records` through the loader's current pipeline (reloading first if asked),
    /// publishing to the bus and dead-lettering to SQS. Every record must be published
    /// or dead-lettered, and each exactly once: returns what the rule's queue received,
    /// as sorted (tenant, detail-type) pairs, and what the dead-letter queue received, as
    /// sorted (tenant, kind, message) triples, each dead letter carrying its whole record.
    async fn run(
        &self,
        loader: &mut Loader,
        records: &[Value],
    ) -> (Vec<(String, String)>, Vec<(String, String, String)>) {
        let report = batch::run(
            loader.current().await,
            raw(records),
            Some(&self.publisher),
            DeadLetterSink::Queue(&self.dead_letters),
            tokio::time::Instant::now() + Duration::from_secs(30),
        )
        .await
        .expect("batch");
        let counts = report.counts();
        assert_eq!(counts.records, records.len());
        assert_eq!(
            counts.published + counts.dead_lettered,
            records.len(),
            "every record published or dead-lettered: {counts:?}"
        );
        let limit = Duration::from_secs(10);
        let mut published: Vec<(String, String)> =
            drain_queue(&self.sqs, &self.out, counts.published, limit)
                .await
                .iter()
                .map(|m| {
                    let event: Value =
                        serde_json::from_str(m.body().unwrap_or("")).expect("event JSON");
                    (
                        event["detail"]["metadata"]["tenant"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                        event["detail-type"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
        published.sort();
        let mut dead: Vec<(String, String, String)> =
            drain_queue(&self.sqs, &self.dlq, counts.dead_lettered, limit)
                .await
                .iter()
                .map(|m| {
                    let letter: Value =
                        serde_json::from_str(m.body().unwrap_or("")).expect("dead letter JSON");
                    assert!(
                        records.contains(&letter["record"]),
                        "the dead letter carries its whole record: {letter}"
                    );
                    (
                        letter["tenant"].as_str().unwrap_or("").to_owned(),
                        letter["reason"]["kind"].as_str().unwrap_or("").to_owned(),
                        letter["reason"]["message"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                    )
                })
                .collect();
        dead.sort();
        assert_eq!(
            (published.len(), dead.len()),
            (counts.published, counts.dead_lettered),
            "one event per published record, one dead letter per dead-lettered one"
        );
        (published, dead)
    }
}

/// Tenant acme on plugin `a` (the mapping, unpinned, its detail type from the config) and
/// tenant globex on plugin `b`, whose manifest entry is `b_entry`.
fn acme_and_globex(acme_detail_type: &str, b_entry: &str) -> String {
    format!(
        "event_bus = \"partial\"\n[plugins.a]\npath = \"a/mapping.wasm\"\n[plugins.b]\n{b_entry}\
         [[routes]]\ntable = \"Customers\"\nsource = \"weir.customers\"\ntenant = {{ attribute = \"tenantId\" }}\n\
         [tenants.acme]\nplugin = \"a\"\nconfig = {{ detail_type = \"{acme_detail_type}\", fields = {{ Name = \"/name\" }} }}\n\
         [tenants.globex]\nplugin = \"b\"\n"
    )
}

/// Two records of acme and two of globex, numbered from `first`.
fn acme_and_globex_records(first: u64) -> Vec<Value> {
    [("acme", 0), ("globex", 1), ("acme", 2), ("globex", 3)]
        .iter()
        .map(|(t, i)| {
            let seq = first + i;
            stream_record(seq, &format!("{t}-{seq}"), t, json!({}))
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Issue 23, item 10: one plugin's bad upload, or a manifest entry of one plugin that
/// cannot be used, affects only that plugin's slot; the rest of the new manifest applies.
/// The manifest in S3 changes acme's config (its detail type) at every step, while
/// globex's plugin `b` goes bad in each way a plugin can: its old version keeps serving
/// while its manifest entry is unchanged (a garbage upload under its pin), and its records
/// are dead-lettered with the reason when the manifest changed its entry (as a cold start
/// with that manifest would). A manifest that does not parse keeps the whole old one.
#[tokio::test]
async fn one_plugins_bad_upload_never_freezes_the_rest_of_the_manifest() {
    let (_guard, logs) = captured_logs();
    let moto = Moto::start();
    let s3 = S3::new(&moto, "partial").await;
    let sinks = PublishedAndDeadLettered::new(&moto, "partial").await;
    let echo = wasm("echo-state");
    let pinned_echo = format!("path = \"b/echo.wasm\"\nsha256 = \"{}\"\n", sha256(&echo));
    s3.put("a/mapping.wasm", wasm("mapping")).await;
    s3.put("b/echo.wasm", echo.clone()).await;
    s3.put(
        "weir.toml",
        acme_and_globex("CustomerChanged", &pinned_echo).into_bytes(),
    )
    .await;
    let mut loader = Loader::load_lazy(
        s3.store(),
        engine(),
        Location::parse(&s3.url("weir.toml")).expect("url"),
        Duration::from_secs(3600),
    )
    .await
    .expect("loads");
    let (published, dead) = sinks.run(&mut loader, &acme_and_globex_records(10)).await;
    assert_eq!(
        published,
        pairs(&[
            ("acme", "CustomerChanged"),
            ("acme", "CustomerChanged"),
            ("globex", "EchoState"),
            ("globex", "EchoState")
        ])
    );
    assert!(dead.is_empty(), "{dead:?}");

    // globex's pinned plugin is overwritten with garbage, and acme's config changes: acme
    // publishes with its new config at once, and globex's old version keeps serving.
    s3.put("b/echo.wasm", b"\0asm garbage under the pin".to_vec())
        .await;
    s3.put(
        "weir.toml",
        acme_and_globex("CustomerUpdated", &pinned_echo).into_bytes(),
    )
    .await;
    loader.check_now();
    let (published, dead) = sinks.run(&mut loader, &acme_and_globex_records(20)).await;
    assert_eq!(
        published,
        pairs(&[
            ("acme", "CustomerUpdated"),
            ("acme", "CustomerUpdated"),
            ("globex", "EchoState"),
            ("globex", "EchoState")
        ])
    );
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!((loader.reloads(), loader.reload_failures()), (1, 1));
    let text = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    let refused = text
        .lines()
        .find(|l| l.contains("reload refused the plugin's new version"))
        .unwrap_or_else(|| panic!("no refusal logged: {text}"));
    assert!(refused.contains("plugin=\"b\""), "{refused}");
    assert!(
        refused.contains("its previous version keeps serving")
            && refused.contains("but the manifest pins"),
        "{refused}"
    );
    // The refused version is not read or checked again while it stays (a conditional GET
    // on it), nor counted again.
    loader.check_now();
    let _ = loader.current().await;
    assert_eq!((loader.reloads(), loader.reload_failures()), (1, 1));

    // The manifest points globex's plugin at one that fails weir check's checks, then at
    // one that does not compile, then at one without the contract: each time acme's new
    // config applies, and globex's records are dead-lettered with the reason.
    s3.put("b/netcat.wasm", wasm("netcat")).await;
    s3.put("b/garbage.wasm", b"\0asm but not really".to_vec())
        .await;
    // An empty component: the preamble (magic, version 0x0d, layer 1) and nothing else.
    s3.put("b/empty.wasm", b"\0asm\x0d\x00\x01\x00".to_vec())
        .await;
    let steps = [
        (
            "b/netcat.wasm",
            "CustomerMoved",
            "which plugins may not use",
        ),
        (
            "b/garbage.wasm",
            "CustomerRenamed",
            "not a valid WebAssembly component",
        ),
        ("b/empty.wasm", "CustomerMerged", "it exports neither"),
    ];
    for (n, (path, detail_type, why)) in steps.into_iter().enumerate() {
        s3.put(
            "weir.toml",
            acme_and_globex(detail_type, &format!("path = \"{path}\"\n")).into_bytes(),
        )
        .await;
        loader.check_now();
        let first = 30 + 10 * n as u64;
        let (published, dead) = sinks
            .run(&mut loader, &acme_and_globex_records(first))
            .await;
        assert_eq!(
            published,
            pairs(&[("acme", detail_type), ("acme", detail_type)]),
            "{path}"
        );
        assert_eq!(dead.len(), 2, "{path}");
        for (tenant, kind, message) in &dead {
            assert_eq!((tenant.as_str(), kind.as_str()), ("globex", "plugin-load"));
            assert!(
                message.contains(&format!("s3://partial/{path}")) && message.contains(why),
                "{message}"
            );
        }
        assert_eq!(
            (loader.reloads(), loader.reload_failures()),
            (2 + n, 2 + n),
            "{path}"
        );
    }

    let text = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    for (path, _, why) in steps {
        assert!(
            text.lines()
                .any(|l| l.contains("reload refused the plugin's new version")
                    && l.contains("plugin=\"b\"")
                    && l.contains("dead-lettered with the reason")
                    && l.contains(path)
                    && l.contains(why)),
            "no refusal of {path} logged: {text}"
        );
    }

    // A manifest that does not parse keeps the whole old one: acme's last config, and
    // globex's records dead-lettered as before.
    s3.put("weir.toml", b"event_bus = [".to_vec()).await;
    loader.check_now();
    let (published, dead) = sinks.run(&mut loader, &acme_and_globex_records(70)).await;
    assert_eq!(
        published,
        pairs(&[("acme", "CustomerMerged"), ("acme", "CustomerMerged")])
    );
    assert_eq!(dead.len(), 2);
    assert_eq!((loader.reloads(), loader.reload_failures()), (4, 5));
    let text = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(
        text.contains("reload failed; the previous manifest and plugins stay in use"),
        "{text}"
    );

    // Fixed: globex's plugin back under its pin.
    s3.put("b/echo.wasm", echo.clone()).await;
    s3.put(
        "weir.toml",
        acme_and_globex("CustomerChanged", &pinned_echo).into_bytes(),
    )
    .await;
    loader.check_now();
    let (published, dead) = sinks.run(&mut loader, &acme_and_globex_records(80)).await;
    assert_eq!(
        published,
        pairs(&[
            ("acme", "CustomerChanged"),
            ("acme", "CustomerChanged"),
            ("globex", "EchoState"),
            ("globex", "EchoState")
        ])
    );
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!((loader.reloads(), loader.reload_failures()), (5, 5));
}

/// Reads through the store, noting every location asked for: moto cannot count GETs.
struct Watched {
    store: ObjectStore,
    asked: Mutex<Vec<String>>,
}

impl Watched {
    fn note(&self, location: &Location) {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(location.to_string());
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl weir_core::location::Fetch for Watched {
    fn fetch<'a>(
        &'a self,
        location: &'a Location,
        known_version: Option<&'a str>,
    ) -> weir_core::location::FetchFuture<'a, weir_core::location::Fetched> {
        self.note(location);
        weir_core::location::Fetch::fetch(&self.store, location, known_version)
    }

    fn version<'a>(
        &'a self,
        location: &'a Location,
    ) -> weir_core::location::FetchFuture<'a, String> {
        self.note(location);
        weir_core::location::Fetch::version(&self.store, location)
    }

    fn read<'a>(
        &'a self,
        location: &'a Location,
    ) -> weir_core::location::FetchFuture<'a, (Vec<u8>, String)> {
        self.note(location);
        weir_core::location::Fetch::read(&self.store, location)
    }
}

/// Issue 23, item 6: an S3 `.cwasm` is fetched only when the manifest pins one. Beside an
/// unpinned plugin it is never read (not at first use, not when a reload loads a new
/// version); once pinned, it is read and used.
#[tokio::test]
async fn an_unpinned_cwasm_in_s3_is_never_fetched() {
    let moto = Moto::start();
    let s3 = S3::new(&moto, "cwasm").await;
    let bytes = wasm("mapping");
    let cwasm = PluginEngine::precompile(&bytes, None).expect("precompile");
    s3.put("a/mapping.wasm", bytes.clone()).await;
    s3.put("a/mapping.cwasm", cwasm.clone()).await;
    let manifest = |extra: &str| {
        format!(
            "event_bus = \"b\"\n[plugins.mapping]\npath = \"a/mapping.wasm\"\n{extra}\
             [[routes]]\ntable = \"Customers\"\nsource = \"s\"\ntenant = {{ attribute = \"tenantId\" }}\n\
             [tenants.t1]\nplugin = \"mapping\"\nconfig = {{ detail_type = \"CustomerChanged\", fields = {{ Name = \"/name\" }} }}\n"
        )
    };
    let records = [stream_record(1, "ev-1", "t1", json!({}))];
    let (wasm_url, cwasm_url) = (s3.url("a/mapping.wasm"), s3.url("a/mapping.cwasm"));

    s3.put("weir.toml", manifest("").into_bytes()).await;
    let watched = Arc::new(Watched {
        store: s3.store(),
        asked: Mutex::default(),
    });
    let unpinned = engine();
    let mut loader = Loader::load_lazy_from(
        watched.clone(),
        unpinned.clone(),
        Location::parse(&s3.url("weir.toml")).expect("url"),
        Duration::from_secs(3600),
    )
    .await
    .expect("loads");
    assert_eq!(
        dry_run(&mut loader, &records).await,
        (vec!["CustomerChanged".to_owned()], vec![Verdict::Published])
    );
    // A new version, loaded by a warm reload: its .cwasm is not read either.
    s3.put("a/mapping.wasm", wasm("echo-state")).await;
    loader.check_now();
    assert_eq!(dry_run(&mut loader, &records).await.0, ["EchoState"]);
    let asked = watched.asked();
    assert!(asked.contains(&wasm_url), "{asked:?}");
    assert!(!asked.contains(&cwasm_url), "{asked:?}");
    assert_eq!(unpinned.compiles(), 2, "both versions compiled");

    // Pinned, it is read, and used: nothing is compiled.
    s3.put("a/mapping.wasm", bytes).await;
    s3.put(
        "weir.toml",
        manifest(&format!("compiled_sha256 = \"{}\"\n", sha256(&cwasm))).into_bytes(),
    )
    .await;
    let watched = Arc::new(Watched {
        store: s3.store(),
        asked: Mutex::default(),
    });
    let pinned = engine();
    let mut loader = Loader::load_lazy_from(
        watched.clone(),
        pinned.clone(),
        Location::parse(&s3.url("weir.toml")).expect("url"),
        Duration::from_secs(3600),
    )
    .await
    .expect("loads");
    assert_eq!(dry_run(&mut loader, &records).await.0, ["CustomerChanged"]);
    assert!(
        watched.asked().contains(&cwasm_url),
        "{:?}",
        watched.asked()
    );
    assert_eq!(pinned.compiles(), 0, "the pinned .cwasm was used");
}

/// Answers every request with one HTTP status and an S3 error body: stands in for an S3
/// that refuses (403, as a bucket policy does) or is down (503), which moto does not do.
fn s3_answering(status: u16, code: &'static str) -> String {
    use std::io::{BufRead as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let body = format!(
        "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{code} here</Message></Error>"
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            // The request line and headers, up to the blank line (GET and HEAD have no body).
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let mut writer = stream;
            let _ = write!(
                writer,
                "HTTP/1.1 {status} {code}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn store_at(endpoint: &str) -> ObjectStore {
    let conf = aws_sdk_s3::config::Builder::from(&sdk_config(endpoint))
        .force_path_style(true)
        .build();
    ObjectStore::with_s3(aws_sdk_s3::Client::from_conf(conf))
}

/// Issue 24: a read that fails says which kind of failure it is, for files and S3 alike:
/// nothing there, there but refused (a link, a directory, a 403), or unavailable for now (a
/// 503, no answer). The message names the location, escaped.
#[tokio::test]
async fn a_failed_read_says_whether_the_location_is_missing_refused_or_unavailable() {
    use weir_core::location::{Fetch, FetchErrorKind};
    let kind_of = |result: Result<(Vec<u8>, String), weir_core::location::FetchError>| {
        let error = result.expect_err("the read fails");
        (error.kind(), error.to_string())
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let files = ObjectStore::default();

    let missing = dir.path().join("missing\n.wasm");
    let (kind, message) = kind_of(files.read(&Location::File(missing)).await);
    assert_eq!(kind, FetchErrorKind::NotFound, "{message}");
    assert!(
        message.contains("missing\\n.wasm: cannot read"),
        "{message}"
    );
    let link = dir.path().join("link.wasm");
    std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
    assert_eq!(
        kind_of(files.read(&Location::File(link)).await).0,
        FetchErrorKind::Refused
    );
    assert_eq!(
        kind_of(files.read(&Location::File(dir.path().to_path_buf())).await).0,
        FetchErrorKind::Refused
    );

    let moto = Moto::start();
    let s3 = S3::new(&moto, "kinds").await;
    let (kind, message) = kind_of(s3.store().read(&loc(&s3.url("nothing.wasm"))).await);
    assert_eq!(kind, FetchErrorKind::NotFound, "{message}");
    assert!(
        message.starts_with("s3://kinds/nothing.wasm: cannot read: NoSuchKey"),
        "{message}"
    );
    // Through the trait, as the loader reads: the same kind.
    let store = s3.store();
    let (kind, _) = kind_of(Fetch::read(&store, &loc("s3://no-such-bucket/p.wasm")).await);
    assert_eq!(kind, FetchErrorKind::NotFound);

    let refusing = store_at(&s3_answering(403, "AccessDenied"));
    let (kind, message) = kind_of(refusing.read(&loc("s3://b/p.wasm")).await);
    assert_eq!(kind, FetchErrorKind::Refused, "{message}");
    assert!(message.contains("AccessDenied"), "{message}");
    assert_eq!(
        refusing
            .version(&loc("s3://b/p.wasm"))
            .await
            .map_err(|e| e.kind())
            .err(),
        Some(FetchErrorKind::Refused)
    );
    let down = store_at(&s3_answering(503, "ServiceUnavailable"));
    let (kind, message) = kind_of(down.read(&loc("s3://b/p.wasm")).await);
    assert_eq!(kind, FetchErrorKind::Unavailable, "{message}");
    // Nothing listening: no response at all.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!(
            "http://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        )
    };
    let (kind, message) = kind_of(store_at(&closed).read(&loc("s3://b/p.wasm")).await);
    assert_eq!(kind, FetchErrorKind::Unavailable, "{message}");
}

fn loc(text: &str) -> Location {
    Location::parse(text).expect("a location")
}
