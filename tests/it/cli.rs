//! The `weir` binary end to end, with real plugins compiled from `plugins/` and
//! `tests/plugins/` (`./dev plugins` builds them into `target/plugins/`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{plugin, root, stderr_text, stdout_json, weir_output};
use serde_json::Value;
use sha2::Digest as _;

/// A manifest in a temp dir, routing Customers by tenantId to the given tenants.
fn manifest(dir: &Path, plugins: &[(&str, &Path, Option<&str>)], tenants: &str) -> PathBuf {
    let mut text = String::from("event_bus = \"test-bus\"\n");
    for (name, path, pin) in plugins {
        text.push_str(&format!(
            "[plugins.{name}]\npath = {:?}\n",
            path.display().to_string()
        ));
        if let Some(pin) = pin {
            text.push_str(&format!("sha256 = \"{pin}\"\n"));
        }
    }
    text.push_str(
        "[[routes]]\ntable = \"Customers\"\nsource = \"test.customers\"\ntenant = { attribute = \"tenantId\" }\n",
    );
    text.push_str(tenants);
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

fn dead_letters(dir: &Path) -> Vec<Value> {
    let mut letters: Vec<Value> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                let text = std::fs::read_to_string(e.expect("entry").path()).expect("read");
                serde_json::from_str(&text).expect("dead letter is JSON")
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    letters.sort_by_key(|l| {
        l["record"]["eventID"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    letters
}

#[test]
fn decode_prints_exactly_what_plugins_receive() {
    let out = weir_output(&["decode", "--event", "examples/events/customers.json"]);
    assert!(out.status.success(), "{}", stderr_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8);
    // Digit for digit: these would be mangled by any trip through f64.
    assert!(lines[0].contains(r#""lifetimeValue":12345678901234567890123456789012345678"#));
    assert!(lines[0].contains(r#""score":0.000000000000000000000000000000000001"#));
    assert!(lines[0].contains(r#""luckyNumbers":[7,99999999999999999999999999999999999999]"#));
    let first: Value = serde_json::from_str(lines[0]).expect("JSON");
    assert_eq!(first["table"], "Customers");
    assert_eq!(first["change"], "INSERT");
    assert_eq!(first["sequenceNumber"], "111000000000000000001");
    assert_eq!(first["approximateCreationTimeMs"], 1_764_489_600_000u64);
    let img = &first["newImage"];
    assert_eq!(img["labels"], serde_json::json!(["enterprise", "volcano"]));
    assert_eq!(img["signingKeys"], serde_json::json!(["AAEC", "/w=="]));
    assert_eq!(img["avatar"], "iVBORw0KGgo=");
    assert_eq!(img["active"], true);
    assert_eq!(img["deletedAt"], Value::Null);
    assert_eq!(img["address"]["geo"][1].to_string(), "-118.4065");
    assert_eq!(img["history"][0]["plan"], "gold");
    assert_eq!(first["oldImage"], Value::Null);
    let ttl: Value = serde_json::from_str(lines[4]).expect("JSON");
    assert_eq!(
        (ttl["change"].as_str(), ttl["removedByTtl"].as_bool()),
        (Some("REMOVE"), Some(true))
    );
    let user_remove: Value = serde_json::from_str(lines[5]).expect("JSON");
    assert_eq!(user_remove["removedByTtl"], false);
}

/// The exact entries both example plugins produce on the example event. Regenerate the
/// golden file with `WEIR_UPDATE_GOLDEN=1 ./dev test` and review the diff.
#[test]
fn run_prints_the_exact_entries_of_both_plugins() {
    let dlq = tempfile::tempdir().expect("tempdir");
    let out = weir_output(&[
        "run",
        "--manifest",
        "examples/weir.toml",
        "--event",
        "examples/events/customers.json",
        "--dead-letter-dir",
        dlq.path().to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert_eq!(
        stderr_text(&out).trim_end().lines().last(),
        Some("records: 8, entries: 6, published: 6, filtered: 2, coalesced: 0, dead-lettered: 0")
    );
    let golden = root().join("tests/golden/customers.entries.jsonl");
    let actual = String::from_utf8_lossy(&out.stdout).into_owned();
    if std::env::var_os("WEIR_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&golden).expect("golden file exists");
    for (n, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
        assert_eq!(a, e, "entry {} differs from {}", n + 1, golden.display());
    }
    assert_eq!(
        actual.lines().count(),
        expected.lines().count(),
        "entry count"
    );

    let entries = stdout_json(&out);
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["DetailType"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        [
            "CustomerChanged",
            "CustomerChanged",
            "SalesforceAccountUpsert",
            "SalesforceAccountUpsert",
            "SalesforceAccountDelete",
            "CustomerChanged"
        ]
    );
    for e in &entries {
        assert_eq!(e["EventBusName"], "weir-demo");
        assert_eq!(e["Source"], "weir.customers");
        let detail: Value = serde_json::from_str(e["Detail"].as_str().expect("Detail is a string"))
            .expect("Detail is JSON");
        for field in [
            "id",
            "tenant",
            "table",
            "eventName",
            "sequenceNumber",
            "approximateCreationTime",
        ] {
            assert!(
                !detail["metadata"][field].is_null(),
                "metadata.{field} missing in {detail}"
            );
        }
    }
    // The mapping plugin writes an integer outside i64 as a string, and keeps other numbers.
    let globex = e_detail(&entries[0]);
    assert!(
        globex.contains(r#""LTV":"12345678901234567890123456789012345678""#),
        "{globex}"
    );
    assert!(
        globex.contains(r#""Score":0.000000000000000000000000000000000001"#),
        "{globex}"
    );
    let acme = e_detail(&entries[2]);
    assert!(
        acme.contains(
            r#""path":"/services/data/v61.0/sobjects/Account/Weir_Customer_Id__c/A-42%2F7""#
        ),
        "{acme}"
    );
}

fn e_detail(entry: &Value) -> String {
    entry["Detail"].as_str().expect("Detail").to_owned()
}

#[test]
fn a_bad_record_is_dead_lettered_whole_while_the_others_publish() {
    let dlq = tempfile::tempdir().expect("tempdir");
    let out = weir_output(&[
        "run",
        "--manifest",
        "examples/weir.toml",
        "--event",
        "tests/events/one-bad-record.json",
        "--dead-letter-dir",
        dlq.path().to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_text(&out));
    let entries = stdout_json(&out);
    let published: Vec<String> = entries
        .iter()
        .map(|e| {
            let d: Value = serde_json::from_str(&e_detail(e)).expect("JSON");
            d["metadata"]["eventID"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(published, ["good-1", "good-2"]);
    let letters = dead_letters(dlq.path());
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter["reason"]["kind"], "decode");
    assert_eq!(letter["reason"]["blame"], "record");
    let message = letter["reason"]["message"].as_str().expect("message");
    assert!(
        message.contains("dynamodb.NewImage.lifetimeValue"),
        "{message}"
    );
    assert!(message.contains("12abc"), "{message}");
    assert_eq!(letter["tenant"], "globex");
    // The original record, exactly as it was in the event.
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/events/one-bad-record.json")).expect("read"),
    )
    .expect("JSON");
    assert_eq!(letter["record"], event["Records"][1]);
    // Every record is accounted for.
    assert!(
        stderr_text(&out).contains(
            "records: 3, entries: 2, published: 2, filtered: 0, coalesced: 0, dead-lettered: 1"
        ),
        "{}",
        stderr_text(&out)
    );
}

#[test]
fn the_dead_letter_file_holds_the_record_byte_for_byte() {
    let dlq = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    // Odd spacing and key order that a re-serialisation would not reproduce.
    let raw = r#"{"eventName" :"INSERT",  "eventID":"x1","eventSourceARN":"arn:aws:dynamodb:eu-west-1:1:table/Customers/stream/s","dynamodb":{"SequenceNumber":"5","Keys":{"tenantId":{"S":"globex"}},"NewImage":{"tenantId":{"S":"globex"},"lifetimeValue":{"N":"1.2.3"}}}}"#;
    let event = dir.path().join("event.json");
    std::fs::write(&event, format!("{{\"Records\": [{raw}]}}")).expect("write");
    let out = weir_output(&[
        "run",
        "--manifest",
        "examples/weir.toml",
        "--event",
        event.to_str().expect("utf-8"),
        "--dead-letter-dir",
        dlq.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_text(&out));
    let file = std::fs::read_dir(dlq.path())
        .expect("dir")
        .next()
        .expect("one dead letter")
        .expect("entry")
        .path();
    let text = std::fs::read_to_string(file).expect("read");
    assert!(text.contains(&format!("\"record\":{raw}")), "{text}");
}

#[test]
fn a_pinned_plugin_loads_only_with_its_own_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mapping = plugin("mapping");
    let actual = hex::encode(sha2::Sha256::digest(std::fs::read(&mapping).expect("read")));
    // The mapping reads /lifetimeValue, which the bad record wrote wrongly.
    let tenants = "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"T\", fields = { Name = \"/name\", LTV = \"/lifetimeValue\" } }\n";
    let wrong = "0".repeat(64);

    let m = manifest(dir.path(), &[("mapping", &mapping, Some(&wrong))], tenants);
    let out = weir_output(&[
        "run",
        "--manifest",
        m.to_str().expect("utf-8"),
        "--event",
        "tests/events/one-bad-record.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing may be published");
    let err = stderr_text(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("mapping.wasm"), "{err}");
    assert!(
        err.contains(&format!(
            "sha256 is {actual}, but the manifest pins {wrong}"
        )),
        "{err}"
    );

    let m = manifest(dir.path(), &[("mapping", &mapping, Some(&actual))], tenants);
    let dlq = dir.path().join("dlq");
    let out = weir_output(&[
        "run",
        "--manifest",
        m.to_str().expect("utf-8"),
        "--event",
        "tests/events/one-bad-record.json",
        "--dead-letter-dir",
        dlq.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_text(&out));
    assert_eq!(stdout_json(&out).len(), 2);
}

#[test]
fn runaway_plugins_are_stopped_and_the_next_record_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spin, balloon, mapping) = (plugin("spin"), plugin("balloon"), plugin("mapping"));
    let m = manifest(
        dir.path(),
        &[
            ("spin", &spin, None),
            ("balloon", &balloon, None),
            ("mapping", &mapping, None),
        ],
        concat!(
            "[tenants.spinner]\nplugin = \"spin\"\nlimits = { time_ms = 50 }\n",
            "[tenants.ballooner]\nplugin = \"balloon\"\nlimits = { memory_mib = 16 }\n",
            "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"T\", fields = { Name = \"/name\" } }\n",
        ),
    );
    let dlq = dir.path().join("dlq");
    let out = weir_output(&[
        "run",
        "--manifest",
        m.to_str().expect("utf-8"),
        "--event",
        "tests/events/runaway-plugins.json",
        "--dead-letter-dir",
        dlq.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_text(&out));
    let letters = dead_letters(&dlq);
    let kinds: Vec<(&str, &str)> = letters
        .iter()
        .map(|l| {
            (
                l["record"]["eventID"].as_str().unwrap_or(""),
                l["reason"]["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("balloon-1", "memory-limit"), ("spin-1", "time-limit")]
    );
    for l in &letters {
        assert_eq!(l["reason"]["blame"], "plugin");
        assert_eq!(l["plugin"]["sha256"].as_str().map(str::len), Some(64));
    }
    // The same tenants' next records got fresh instances and published.
    let published: Vec<String> = stdout_json(&out)
        .iter()
        .map(|e| {
            let d: Value = serde_json::from_str(&e_detail(e)).expect("JSON");
            d["metadata"]["eventID"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(published, ["spin-2", "balloon-2", "good-1"]);
}

#[test]
fn setup_errors_exit_2_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_event = dir.path().join("not-event.json");
    std::fs::write(&not_event, "{\"Records\": 5}").expect("write");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"Records\": [").expect("write");
    let missing_plugin = manifest(
        dir.path(),
        &[("mapping", Path::new("/nonexistent/mapping.wasm"), None)],
        "[tenants.globex]\nplugin = \"mapping\"\n",
    );
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "event_bus = 5\n").expect("write");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "run".into(),
                "--manifest".into(),
                "nope.toml".into(),
                "--event".into(),
                "examples/events/customers.json".into(),
            ],
            "nope.toml: cannot read",
        ),
        (
            vec![
                "run".into(),
                "--manifest".into(),
                bad_toml.display().to_string(),
                "--event".into(),
                "examples/events/customers.json".into(),
            ],
            "bad.toml",
        ),
        (
            vec![
                "run".into(),
                "--manifest".into(),
                "examples/weir.toml".into(),
                "--event".into(),
                not_event.display().to_string(),
            ],
            "not a DynamoDB Streams event",
        ),
        (
            vec![
                "run".into(),
                "--manifest".into(),
                "examples/weir.toml".into(),
                "--event".into(),
                broken.display().to_string(),
            ],
            "broken.json",
        ),
        (
            vec![
                "run".into(),
                "--manifest".into(),
                missing_plugin.display().to_string(),
                "--event".into(),
                "examples/events/customers.json".into(),
            ],
            "/nonexistent/mapping.wasm: cannot read",
        ),
        (vec!["run".into(), "--bogus".into()], "--bogus"),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = weir_output(&args);
        let err = stderr_text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn check_reports_every_problem_at_once() {
    let out = weir_output(&["check", "--manifest", "examples/weir.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 3 plugins, 3 tenants, 1 routes"));

    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm").expect("write");
    let mapping = plugin("mapping");
    let m = manifest(
        dir.path(),
        &[
            ("mapping", &mapping, Some(&"1".repeat(64))),
            ("garbage", &garbage, None),
            ("gone", Path::new("/nonexistent.wasm"), None),
        ],
        "[tenants.a]\nplugin = \"mapping\"\n[tenants.b]\nplugin = \"garbage\"\n[tenants.c]\nplugin = \"gone\"\n",
    );
    let out = weir_output(&["check", "--manifest", m.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("plugins.mapping:") && text.contains("refusing to load"),
        "{text}"
    );
    assert!(
        text.contains("plugins.garbage:") && text.contains("not a valid WebAssembly component"),
        "{text}"
    );
    assert!(
        text.contains("plugins.gone:") && text.contains("/nonexistent.wasm: cannot read"),
        "{text}"
    );
    assert!(text.contains("3 problems"), "{text}");
}

#[test]
fn compile_writes_cwasm_for_both_lambda_architectures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("mapping.wasm");
    std::fs::copy(plugin("mapping"), &src).expect("copy");
    for target in ["x86_64", "aarch64"] {
        let out_dir = dir.path().join(target);
        std::fs::create_dir_all(&out_dir).expect("mkdir");
        let out = weir_output(&[
            "compile",
            src.to_str().expect("utf-8"),
            "--target",
            target,
            "--out-dir",
            out_dir.to_str().expect("utf-8"),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
        let cwasm = std::fs::read(out_dir.join("mapping.cwasm")).expect("cwasm written");
        let source_sha = hex::encode(sha2::Sha256::digest(std::fs::read(&src).expect("wasm")));
        assert!(
            cwasm.ends_with(format!("\nweir-cwasm-2 {source_sha}\n").as_bytes()),
            "the trailer names the plugin it was made from"
        );
        // The precompiled code starts the file (so it can be mapped): an ELF object for the
        // named CPU (e_machine at byte 18).
        let body = &cwasm[..];
        assert_eq!(&body[..4], b"\x7fELF");
        let machine = u16::from_le_bytes([body[18], body[19]]);
        assert_eq!(
            machine,
            if target == "x86_64" { 62 } else { 183 },
            "{target}"
        );
    }
    let out = weir_output(&["compile", src.to_str().expect("utf-8"), "--target", "sparc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_text(&out).contains("expected x86_64 or aarch64"));
}

#[test]
fn report_shows_fuel_memory_and_time_beside_limits_and_a_fuel_limit_holds() {
    let out = weir_output(&[
        "run",
        "--manifest",
        "examples/weir.toml",
        "--event",
        "examples/events/customers.json",
        "--report",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    let err = stderr_text(&out);
    let rows: Vec<&str> = err.lines().filter(|l| l.starts_with("| 1110")).collect();
    // One row per plugin call: the six records that reach a plugin.
    assert_eq!(rows.len(), 6, "{err}");
    for row in &rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let fuel: u64 = cells[4]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(fuel > 1000, "{row}");
        assert!(
            cells[5].ends_with("of 64 MiB") && cells[6].ends_with("of 100 ms"),
            "{row}"
        );
    }

    // A fuel limit below what a call needs stops the call, as a fuel-limit dead letter.
    let dir = tempfile::tempdir().expect("tempdir");
    let mapping = plugin("mapping");
    let m = manifest(
        dir.path(),
        &[("mapping", &mapping, None)],
        "[tenants.globex]\nplugin = \"mapping\"\nlimits = { fuel = 1000 }\nconfig = { detail_type = \"C\", fields = { Name = \"/name\" } }\n",
    );
    let letters = dir.path().join("letters");
    let out = weir_output(&[
        "run",
        "--manifest",
        m.to_str().expect("utf-8"),
        "--event",
        "examples/events/customers.json",
        "--report",
        "--dead-letter-dir",
        letters.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_text(&out));
    let err = stderr_text(&out);
    assert!(err.contains("fuel limit of 1000 instructions"), "{err}");
    assert!(err.contains("of 1000 |"), "{err}");
}

/// `weir` with its compiled-code cache in `cache` (a fresh one compiles every plugin) and
/// RUST_LOG set to `log` (or unset, weir's own default).
fn weir_cached(args: &[&str], cache: &Path, log: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(args)
        .current_dir(root())
        .env("WEIR_CACHE_DIR", cache)
        .env_remove("RUST_LOG");
    if let Some(log) = log {
        command.env("RUST_LOG", log);
    }
    command.output().expect("weir runs")
}

/// The example as a fresh clone has it: examples/weir.toml as it is, beside the three
/// plugins `./dev plugins` builds, and no `.cwasm` next to any of them.
fn fresh_clone_example(dir: &Path) -> PathBuf {
    let manifest = dir.join("examples/weir.toml");
    std::fs::create_dir_all(dir.join("examples")).expect("mkdir");
    std::fs::create_dir_all(dir.join("target/plugins")).expect("mkdir");
    std::fs::copy(root().join("examples/weir.toml"), &manifest).expect("copy the manifest");
    for name in ["mapping", "salesforce-account", "slack-message"] {
        std::fs::copy(
            plugin(name),
            dir.join("target/plugins").join(format!("{name}.wasm")),
        )
        .expect("copy the plugin");
    }
    manifest
}

#[test]
fn the_demo_compiles_its_plugins_without_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = fresh_clone_example(dir.path());
    let run = |cache: &str, log: Option<&str>| {
        weir_cached(
            &[
                "run",
                "--manifest",
                manifest.to_str().expect("utf-8"),
                "--event",
                "examples/events/customers.json",
                "--dead-letter-dir",
                dir.path().join("dead-letters").to_str().expect("utf-8"),
            ],
            &dir.path().join(cache),
            log,
        )
    };
    // What `./dev demo` prints: the entries, the summary, and no warning.
    let out = run("cache", None);
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(stdout_json(&out).len(), 6);
    assert!(!err.contains("WARN"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("records: 8, entries: 6, published: 6,"),
        "nothing but the summary: {err}"
    );
    // Not because nothing was compiled: all three were, into the fresh cache.
    let cached = std::fs::read_dir(dir.path().join("cache"))
        .expect("cache")
        .count();
    assert_eq!(cached, 3);

    // With info lines on, each compile is said once, at info level, naming the plugin and,
    // in a field of its own, where it was read from.
    let out = run("cache-2", Some("info"));
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("WARN"), "{err}");
    for name in ["mapping", "salesforce-account", "slack-message"] {
        let said: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(&format!("plugin=\"{name}\"")))
            .filter(|l| l.contains("compiling plugin: no precompiled .cwasm next to it"))
            .collect();
        assert_eq!(said.len(), 1, "{name}: {err}");
        assert!(said[0].contains(" INFO "), "{}", said[0]);
        assert!(
            said[0].contains(&format!("location={}", dir.path().display()))
                && said[0].ends_with(&format!("target/plugins/{name}.wasm")),
            "{}",
            said[0]
        );
    }
}

#[test]
fn a_cwasm_for_the_other_cpu_says_whether_it_compiled_or_found_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(plugin("mapping"), dir.path().join("mapping.wasm")).expect("copy");
    let m = manifest(
        dir.path(),
        &[("mapping", Path::new("mapping.wasm"), None)],
        "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"C\", fields = { Name = \"/name\" } }\n",
    );
    let m = m.to_str().expect("utf-8");
    let other_cpu = if cfg!(target_arch = "x86_64") {
        "aarch64"
    } else {
        "x86_64"
    };
    // Precompiled for the Lambda architecture this machine is not, and pinned.
    let cache = dir.path().join("cache");
    let out = weir_cached(
        &["compile", "--target", other_cpu, "--manifest", m],
        &cache,
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    let event = "examples/events/customers.json";
    let letters = dir.path().join("dead-letters");
    let letters = letters.to_str().expect("utf-8");
    let run = || {
        weir_cached(
            &[
                "run",
                "--manifest",
                m,
                "--event",
                event,
                "--dead-letter-dir",
                letters,
            ],
            &cache,
            None,
        )
    };
    let warning = |err: &str| -> String {
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(" WARN ")).collect();
        assert_eq!(lines.len(), 1, "one warning: {err}");
        assert!(
            lines[0].contains("mapping.cwasm not used")
                && lines[0].contains("plugin=\"mapping\"")
                && lines[0].contains(&format!(
                    "location={}",
                    dir.path().join("mapping.wasm").display()
                )),
            "{}",
            lines[0]
        );
        lines[0].to_owned()
    };
    // The first run compiles, and says so.
    let first = run();
    assert_eq!(first.status.code(), Some(0), "{}", stderr_text(&first));
    let said = warning(&stderr_text(&first));
    assert!(said.contains("compiling the plugin instead"), "{said}");
    assert_eq!(std::fs::read_dir(&cache).expect("cache").count(), 1);
    // The next finds the compiled plugin in the cache, compiles nothing, and says that.
    let second = run();
    assert_eq!(stdout_json(&second), stdout_json(&first));
    let said = warning(&stderr_text(&second));
    assert!(
        said.contains("loaded from weir's own compiled-code cache instead (nothing compiled)")
            && !said.contains("compiling"),
        "{said}"
    );
}
