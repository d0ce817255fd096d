//! The fault matrix: every way a plugin can misbehave and every way input can be bad,
//! with real fault plugins from `tests/plugins/` and the real `weir` binary. Each test
//! writes its rows into docs/RELIABILITY.md's generated sections when
//! `WEIR_UPDATE_GOLDEN=1`, and otherwise checks the committed outcomes still hold.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use weir_aws::store::ObjectStore;
use weir_core::location::Location;
use weir_core::pipeline::Outcome;
use weir_runtime::loader::Loader;
use weir_runtime::plugin::PluginEngine;

/// The fault tests measure wall times and memory: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Set in the child process that runs [`every_plugin_fault_is_contained`] alone.
const ALONE: &str = "WEIR_TEST_FAULTS_ALONE";

/// The process's peak resident set, in MiB (VmHWM). Only meaningful in a process that runs
/// one test: the integration tests share one binary, and in it other tests' memory counts.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Replaces the generated section `name` of docs/RELIABILITY.md when asked to; otherwise
/// checks the committed section names the same outcomes (times may differ per run).
fn section(name: &str, header: &str, rows: &[Vec<String>], outcome_columns: &[usize]) {
    let path = root().join("docs/RELIABILITY.md");
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let mut table = format!("{header}\n");
    for row in rows {
        table.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    let doc = std::fs::read_to_string(&path).expect("docs/RELIABILITY.md exists");
    let (Some(b), Some(e)) = (doc.find(&begin), doc.find(&end)) else {
        panic!("docs/RELIABILITY.md lacks the {begin} … {end} markers");
    };
    if std::env::var_os("WEIR_UPDATE_GOLDEN").is_some() {
        let new = format!("{}{begin}\n{table}{}", &doc[..b], &doc[e..]);
        std::fs::write(&path, new).expect("write docs/RELIABILITY.md");
        return;
    }
    let committed: Vec<Vec<String>> = doc[b + begin.len()..e]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| ---"))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    let pick = |r: &Vec<String>| {
        outcome_columns
            .iter()
            .map(|&i| r.get(i).cloned().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        committed.iter().map(pick).collect::<Vec<_>>(),
        rows.iter().map(pick).collect::<Vec<_>>(),
        "docs/RELIABILITY.md is out of date: regenerate with WEIR_UPDATE_GOLDEN=1 ./dev test"
    );
}

fn record(seq: u64, tenant: &str, fault: bool) -> Value {
    let extra = if fault {
        json!({"fault": {"S": tenant}})
    } else {
        json!({})
    };
    stream_record(seq, &format!("{tenant}-{seq}"), tenant, extra)
}

struct Expect {
    plugin: &'static str,
    does: &'static str,
    kinds: &'static [&'static str],
    message: &'static str,
}

const FAULTS: &[Expect] = &[
    Expect {
        plugin: "spin",
        does: "loops forever",
        kinds: &["time-limit"],
        message: "time limit of 100 ms",
    },
    Expect {
        plugin: "slow",
        does: "busy for twice the time budget",
        kinds: &["time-limit"],
        message: "time limit of 100 ms",
    },
    Expect {
        plugin: "balloon",
        does: "grows memory without bound",
        kinds: &["memory-limit"],
        message: "memory limit of 64 MiB",
    },
    Expect {
        plugin: "recurse",
        does: "recurses without bound",
        kinds: &["stack-overflow", "trap"],
        message: "",
    },
    Expect {
        plugin: "panic",
        does: "panics",
        kinds: &["trap"],
        message: "has no billing country",
    },
    Expect {
        plugin: "garbage",
        does: "returns a detail that is not JSON",
        kinds: &["invalid-output"],
        message: "not valid JSON",
    },
    Expect {
        plugin: "not-object",
        does: "returns a JSON array as detail",
        kinds: &["invalid-output"],
        message: "must be a JSON object",
    },
    Expect {
        plugin: "flood",
        does: "returns 10,000 events",
        kinds: &["too-many-events"],
        message: "10000 events",
    },
    Expect {
        plugin: "huge",
        does: "returns one 5 MB event",
        kinds: &["too-large"],
        message: "limit is 4194304",
    },
    Expect {
        plugin: "chatty",
        does: "logs 100,000 lines, then one event",
        kinds: &["published"],
        message: "",
    },
    Expect {
        plugin: "snoop",
        does: "tries files, a directory, env, args, clock",
        kinds: &["published"],
        message: "",
    },
];

/// The matrix runs in a child process, this test binary run again for this one test, so
/// that the peak RSS it measures (and bounds) is the fault plugins' and the host's alone, not
/// that of the tests running beside it in this process.
#[test]
fn every_plugin_fault_is_contained() {
    if std::env::var_os(ALONE).is_some() {
        return every_plugin_fault_is_contained_in_this_process();
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = "faults::every_plugin_fault_is_contained";
    let out = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{test} alone failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{test} did not run alone:\n{stdout}\n{stderr}"
    );
}

fn every_plugin_fault_is_contained_in_this_process() {
    let engine = Arc::new(PluginEngine::with_cache_dir(None).expect("engine"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let loader = runtime
        .block_on(Loader::load(
            ObjectStore::default(),
            engine,
            Location::File(root().join("examples/faults/weir.toml")),
            Duration::from_secs(3600),
        ))
        .expect("the fault manifest loads");
    let pipeline = loader.pipeline();
    let rss_before = peak_rss_mib();
    let mut seq = 0;
    let (rows, rss_after) = {
        let mut batch = pipeline.batch();
        let mut rows = Vec::new();
        for f in FAULTS {
            seq += 2;
            let bad = RawValue::from_string(record(seq, f.plugin, true).to_string()).expect("raw");
            let next =
                RawValue::from_string(record(seq + 1, f.plugin, false).to_string()).expect("raw");
            let started = Instant::now();
            let outcome = batch.process(&bad);
            let took = started.elapsed();
            let (kind, message) = match &outcome {
                Outcome::DeadLetter(l) => (l.reason.kind.to_string(), l.reason.message.clone()),
                Outcome::Publish { .. } => ("published".to_owned(), String::new()),
                Outcome::Filtered { .. } => ("filtered".to_owned(), String::new()),
                Outcome::Retry { reason, .. } => ("retry".to_owned(), reason.clone()),
            };
            assert!(
                f.kinds.contains(&kind.as_str()),
                "{}: got {kind}: {message}",
                f.plugin
            );
            assert!(
                message.contains(f.message),
                "{}: {message:?} lacks {:?}",
                f.plugin,
                f.message
            );
            if let Outcome::DeadLetter(l) = &outcome {
                assert_eq!(
                    l.record.get(),
                    bad.get(),
                    "{}: the whole record is kept",
                    f.plugin
                );
                assert_eq!(l.reason.blame, weir_core::model::Blame::Plugin);
            }
            // The budget holds: a time fault ends within its limit plus a small margin.
            let limit = if f.plugin == "chatty" { 5000 } else { 100 };
            assert!(
                took < Duration::from_millis(limit + 900),
                "{}: took {took:?}",
                f.plugin
            );
            // The same tenant's next record is served normally, by a fresh instance after a trap.
            let after = batch.process(&next);
            assert!(
                matches!(after, Outcome::Publish { .. }),
                "{}: next record: {after:?}",
                f.plugin
            );
            if f.plugin == "snoop" {
                let Outcome::Publish { entries, .. } = &outcome else {
                    unreachable!()
                };
                let d: Value = serde_json::from_str(&entries[0].detail).expect("JSON");
                let p = &d["payload"];
                for k in ["file", "listDir", "home"] {
                    assert!(
                        p[k].as_str().is_some_and(|v| v.starts_with("denied")),
                        "snoop {k}: {p}"
                    );
                }
                assert_eq!(
                    (p["env"].clone(), p["args"].clone(), p["clockSecs"].clone()),
                    (json!([]), json!([]), json!(0))
                );
            }
            rows.push(vec![
                format!("`{}`", f.plugin),
                f.does.to_owned(),
                kind,
                format!("{} ms", took.as_millis()),
                format!("{limit} ms"),
                "published".to_owned(),
            ]);
        }
        (rows, peak_rss_mib())
    };
    // Host memory stays bounded: balloon is held to 64 MiB, huge and flood to their caps.
    assert!(rss_after < 512.0, "peak RSS {rss_after:.0} MiB");
    let mut rows = rows;
    rows.push(vec![
        "all of the above".into(),
        format!("peak host RSS {rss_before:.0} → {rss_after:.0} MiB"),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
    ]);
    section(
        "faults",
        "| plugin | what it does | outcome | wall time | time limit | same tenant's next record |\n| --- | --- | --- | --- | --- | --- |",
        &rows,
        &[0, 2, 5],
    );
}

fn weir(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.args(args).current_dir(root()).env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("weir runs")
}

/// `weir run` on one record per fault tenant: the good one, chatty's and snoop's publish;
/// the other nine are dead-lettered with their kinds; nothing of the host's environment
/// reaches any output.
#[test]
fn one_batch_with_every_fault_publishes_the_good_and_keeps_the_bad() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let dlq = dir.path().join("dlq");
    let secret = "hunter2-do-not-leak";
    let started = Instant::now();
    let out = weir(
        &[
            "run",
            "--manifest",
            "examples/faults/weir.toml",
            "--event",
            "examples/faults/event.json",
            "--dead-letter-dir",
            dlq.to_str().expect("utf-8"),
        ],
        &[
            ("WEIR_TEST_SECRET", secret),
            (
                "WEIR_CACHE_DIR",
                dir.path().join("cache").to_str().expect("utf-8"),
            ),
        ],
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "records: 12, entries: 3, published: 3, filtered: 0, coalesced: 0, dead-lettered: 9"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("plugin log capped: 99900 lines dropped"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let published: Vec<String> = stdout
        .lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).expect("JSON");
            metadata(&e)["tenant"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert_eq!(published, ["good", "chatty", "snoop"]);
    let kinds: Vec<(String, String)> = std::fs::read_dir(&dlq)
        .expect("dead letters")
        .map(|f| {
            let text = std::fs::read_to_string(f.expect("entry").path()).expect("read");
            assert!(!text.contains(secret));
            let l: Value = serde_json::from_str(&text).expect("JSON");
            (
                l["tenant"].as_str().unwrap_or("").to_owned(),
                l["reason"]["kind"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let mut tenants: Vec<&str> = kinds.iter().map(|(t, _)| t.as_str()).collect();
    tenants.sort_unstable();
    let mut expected: Vec<&str> = FAULTS
        .iter()
        .filter(|f| f.kinds[0] != "published")
        .map(|f| f.plugin)
        .collect();
    expected.sort_unstable();
    assert_eq!(tenants, expected, "the nine misbehaving tenants, each once");
    for (tenant, kind) in &kinds {
        let f = FAULTS
            .iter()
            .find(|f| f.plugin == tenant)
            .expect("a fault tenant");
        assert!(f.kinds.contains(&kind.as_str()), "{tenant}: {kind}");
    }
    for text in [&stdout, &stderr] {
        assert!(!text.contains(secret), "the host's environment leaked");
        assert!(
            !text.contains("/root") && !text.contains("HOME="),
            "host paths or env leaked: {text}"
        );
    }
    section(
        "batch",
        "| run | records | published | dead-lettered | wall time (debug build, plugins compiled) |\n| --- | --- | --- | --- | --- |",
        &[vec![
            "`weir run` on examples/faults/event.json".into(),
            "12".into(),
            "3".into(),
            "9".into(),
            format!("{} ms", took.as_millis()),
        ]],
        &[0, 1, 2, 3],
    );
}

/// Each bad input gives a clear error, and only the bad records are dead-lettered.
#[test]
fn bad_input_gets_a_clear_error_and_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let good = |seq: u64| stream_record(seq, &format!("ok-{seq}"), "globex", json!({}));
    let with_image = |seq: u64, attr: &str, value: Value| {
        let mut r = good(seq);
        r["eventID"] = json!(format!("bad-{seq}"));
        r["dynamodb"]["NewImage"][attr] = value;
        r
    };
    let mut deep_text = String::from("{\"S\":\"leaf\"}");
    for _ in 0..100_000 {
        deep_text = format!("{{\"M\":{{\"x\":{deep_text}}}}}");
    }
    let mut missing = good(90);
    missing["eventID"] = json!("bad-90");
    missing["dynamodb"]
        .as_object_mut()
        .map(|d| d.remove("SequenceNumber"));
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing required field (SequenceNumber)",
            missing,
            "dynamodb.SequenceNumber: missing",
        ),
        (
            "unknown type tag",
            with_image(91, "x", json!({"SX": "a"})),
            "unknown type tag \"SX\"",
        ),
        (
            "invalid base64",
            with_image(92, "b", json!({"B": "not base64!"})),
            "invalid base64",
        ),
        (
            "an N with 39 digits",
            with_image(93, "n", json!({"N": "1".repeat(39)})),
            "39 significant digits",
        ),
        (
            "an N that is not a number",
            with_image(94, "n", json!({"N": "12abc"})),
            "is not a number",
        ),
        (
            "an N outside DynamoDB's range (1e99999999999999999999)",
            with_image(95, "n", json!({"N": "1e99999999999999999999"})),
            "is outside DynamoDB's range",
        ),
    ];
    let mut rows = Vec::new();
    let mut text_records: Vec<String> = Vec::new();
    for (i, (_, r, _)) in cases.iter().enumerate() {
        text_records.push(good(10 + i as u64).to_string());
        text_records.push(r.to_string());
    }
    // Nesting 100,000 levels deep, written as text: no JSON library here builds it.
    let deep_record = good(99)
        .to_string()
        .replacen("\"name\":", &format!("\"deep\":{deep_text},\"name\":"), 1)
        .replacen("ok-99", "bad-99", 1);
    text_records.push(deep_record);
    // Records no stream carries, written as text (a JSON value cannot hold them): the
    // tenant named twice (routing read the first, the plugin the last), and a tenant that
    // is not Unicode (it went to no tenant, or the default one). The keys lack the tenant,
    // so routing reads the image.
    let tenant_in_image_only = |seq: u64| {
        let mut r = good(seq);
        r["eventID"] = json!(format!("bad-{seq}"));
        r["dynamodb"]["Keys"]
            .as_object_mut()
            .map(|k| k.remove("tenantId"));
        r.to_string()
    };
    let forged: Vec<(&str, String, &str)> = vec![
        (
            "an image naming its tenant attribute twice",
            tenant_in_image_only(96).replacen(
                "\"tenantId\":{\"S\":\"globex\"}",
                "\"tenantId\":{\"S\":\"globex\"},\"tenantId\":{\"S\":\"acme\"}",
                1,
            ),
            "dynamodb.NewImage.tenantId: the attribute is named twice",
        ),
        (
            "a tenant with a lone surrogate (\\ud800)",
            tenant_in_image_only(97).replacen(
                "\"tenantId\":{\"S\":\"globex\"}",
                "\"tenantId\":{\"S\":\"\\ud800globex\"}",
                1,
            ),
            "dynamodb.NewImage.tenantId",
        ),
    ];
    for (i, (_, text, _)) in forged.iter().enumerate() {
        assert!(text.contains("bad-9"), "{text}");
        text_records.push(good(30 + i as u64).to_string());
        text_records.push(text.clone());
    }
    let event = dir.path().join("bad.json");
    std::fs::write(
        &event,
        format!("{{\"Records\":[{}]}}", text_records.join(",")),
    )
    .expect("write");
    let m = write_manifest(
        dir.path(),
        "b",
        None,
        &["mapping"],
        // The mapping reads every value written wrongly: a 0.2 plugin's values are decoded
        // when read (tests/it/languages.rs shows an unread one does not stop its record).
        "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"T\", fields = { Name = \"/name\", X = \"/x\", B = \"/b\", N = \"/n\", Deep = \"/deep\" } }\n",
    );
    let dlq = dir.path().join("dlq");
    let out = weir(
        &[
            "run",
            "--manifest",
            m.to_str().expect("utf-8"),
            "--event",
            event.to_str().expect("utf-8"),
            "--dead-letter-dir",
            dlq.to_str().expect("utf-8"),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"));
    assert!(
        stderr.contains(
            "records: 17, entries: 8, published: 8, filtered: 0, coalesced: 0, dead-lettered: 9"
        ),
        "{stderr}"
    );
    // (The 100,000-deep letter is too deep for serde_json to read back; it is checked as text.)
    let letters: Vec<Value> = std::fs::read_dir(&dlq)
        .expect("dlq")
        .filter_map(|f| {
            serde_json::from_str(&std::fs::read_to_string(f.expect("entry").path()).expect("read"))
                .ok()
        })
        .collect();
    // The six cases and the repeated tenant (a JSON map keeps one of its values); the
    // lone surrogate's letter, like the deep one, serde_json does not read back.
    assert_eq!(letters.len(), 7);
    let message_of = |id: &str| {
        letters
            .iter()
            .find(|l| l["record"]["eventID"] == id)
            .map(|l| {
                (
                    l["reason"]["kind"].as_str().unwrap_or("").to_owned(),
                    l["reason"]["message"].as_str().unwrap_or("").to_owned(),
                )
            })
            .unwrap_or_else(|| ("missing".into(), String::new()))
    };
    for (i, (what, _, needle)) in cases.iter().enumerate() {
        let id = format!("bad-{}", 90 + i);
        let (kind, message) = message_of(&id);
        assert_eq!(kind, "decode", "{what}");
        assert!(message.contains(needle), "{what}: {message}");
        rows.push(vec![
            what.to_string(),
            "dead-lettered".into(),
            format!("`decode`: {needle}"),
        ]);
    }
    let letter_text = |id: &str| {
        std::fs::read_dir(&dlq)
            .expect("dlq")
            .filter_map(|f| std::fs::read_to_string(f.expect("entry").path()).ok())
            .find(|t| t.contains(&format!("\"{id}\"")))
    };
    for (i, (what, text, needle)) in forged.iter().enumerate() {
        let id = format!("bad-{}", 96 + i);
        let letter = letter_text(&id).unwrap_or_else(|| panic!("{what}: no dead letter"));
        // The record is kept byte for byte, its forged parts included.
        let kept = &text[text.find("\"dynamodb\"").expect("dynamodb")..];
        assert!(
            letter.contains(kept),
            "{what}: the letter lacks the record's text"
        );
        assert!(letter.contains("\"kind\":\"decode\""), "{what}: {letter}");
        assert!(letter.contains(needle), "{what}: {letter}");
        rows.push(vec![
            what.to_string(),
            "dead-lettered".into(),
            format!("`decode`: {needle}"),
        ]);
    }
    let deep_letter = letter_text("bad-99").expect("the deep record is dead-lettered");
    assert!(
        deep_letter.contains("nested deeper than any DynamoDB item can be"),
        "{}",
        &deep_letter[..300.min(deep_letter.len())]
    );
    rows.push(vec![
        "nesting 100,000 levels deep".into(),
        "dead-lettered".into(),
        "`decode`: nested deeper than any DynamoDB item can be".into(),
    ]);

    // Not an event at all: exit 2, one line naming the file.
    for (what, content, needle) in [
        (
            "a malformed event file",
            "{\"Records\": [",
            "bad-event.json: not a DynamoDB Streams event",
        ),
        (
            "a file that is not an event",
            "[1, 2, 3]",
            "bad-event.json: not a DynamoDB Streams event",
        ),
    ] {
        let f = dir.path().join("bad-event.json");
        std::fs::write(&f, content).expect("write");
        let out = weir(
            &[
                "run",
                "--manifest",
                m.to_str().expect("utf-8"),
                "--event",
                f.to_str().expect("utf-8"),
            ],
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(needle) && err.trim_end().lines().count() == 1,
            "{err}"
        );
        rows.push(vec![
            what.into(),
            "exit 2".into(),
            format!("one line: {needle}"),
        ]);
    }

    // A 6 MB batch (Lambda's payload limit): every record is processed.
    let n = 6 * 1024 * 1024 / 1100;
    let pad = "p".repeat(900);
    let big: Vec<String> = (0..n as u64)
        .map(|i| {
            stream_record(
                1000 + i,
                &format!("big-{i}"),
                "globex",
                json!({"pad": {"S": pad}}),
            )
            .to_string()
        })
        .collect();
    let body = format!("{{\"Records\":[{}]}}", big.join(","));
    assert!(body.len() >= 6 * 1000 * 1000, "{} bytes", body.len());
    let f = dir.path().join("six-mb.json");
    std::fs::write(&f, &body).expect("write");
    let started = Instant::now();
    let out = weir(
        &[
            "run",
            "--manifest",
            m.to_str().expect("utf-8"),
            "--event",
            f.to_str().expect("utf-8"),
        ],
        &[],
    );
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("records: {n}, entries: {n}, published: {n}")),
        "{err}"
    );
    rows.push(vec![
        format!("a 6 MB batch ({n} records)"),
        "all published".into(),
        format!("{} ms", took.as_millis()),
    ]);

    // A manifest with unknown keys, a missing plugin and a bad TOML type: all at once.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "event_bus = \"b\"\ncolour = 1\n[plugins.p]\npath = 5\n[tenants.a]\nplugin = \"nope\"\n",
    )
    .expect("write");
    let out = weir(
        &[
            "run",
            "--manifest",
            bad.to_str().expect("utf-8"),
            "--event",
            "examples/events/customers.json",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    for part in [
        "colour: unknown key",
        "plugins.p.path: invalid type: integer `5`, expected a string",
        "tenants.a.plugin: names plugin \"nope\"",
    ] {
        assert!(err.contains(part), "{err} lacks {part}");
    }
    rows.push(vec![
        "a manifest with an unknown key, a bad type and a missing plugin".into(),
        "exit 2".into(),
        "all three problems on one line".into(),
    ]);
    section(
        "bad-input",
        "| input | outcome | error |\n| --- | --- | --- |",
        &rows,
        &[0, 1],
    );
}

/// A plugin that sleeps an hour at a time gets no host time: every sleep returns at once,
/// so it is a busy loop the time limit stops, not a host thread parked for an hour.
#[test]
fn a_plugin_that_sleeps_cannot_hold_the_host() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let m = write_manifest(
        dir.path(),
        "b",
        None,
        &["sleepy"],
        "[tenants.sleepy]\nplugin = \"sleepy\"\n",
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let loader = runtime
        .block_on(Loader::load(
            ObjectStore::default(),
            Arc::new(PluginEngine::with_cache_dir(None).expect("engine")),
            Location::File(m),
            Duration::from_secs(3600),
        ))
        .expect("loads");
    let pipeline = loader.pipeline();
    let mut batch = pipeline.batch();
    let bad = RawValue::from_string(record(1, "sleepy", true).to_string()).expect("raw");
    let started = Instant::now();
    let outcome = batch.process(&bad);
    let took = started.elapsed();
    match outcome {
        Outcome::DeadLetter(l) => assert_eq!(l.reason.kind.as_str(), "time-limit"),
        other => panic!("expected a time-limit dead letter, got {other:?}"),
    }
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let next = RawValue::from_string(record(2, "sleepy", false).to_string()).expect("raw");
    assert!(matches!(batch.process(&next), Outcome::Publish { .. }));
}

/// A plugin that would open a socket is refused when it is loaded, naming the import: it
/// never runs, so it cannot even try (API destinations make weir's network calls).
#[test]
fn a_plugin_importing_sockets_is_refused_at_load() {
    let path = plugin("netcat");
    let bytes = std::fs::read(&path).expect("netcat plugin");
    let engine = PluginEngine::with_cache_dir(None).expect("engine");
    let err = engine
        .load(
            "netcat",
            &path.display().to_string(),
            &bytes,
            Default::default(),
        )
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(
        matches!(err, weir_runtime::plugin::LoadError::ForbiddenImport { .. }),
        "{message}"
    );
    assert!(
        message.contains("imports wasi:sockets/") && message.contains("no network"),
        "{message}"
    );
    // Its neighbour without std::net (snoop) loads: only the network is refused.
    let snoop = std::fs::read(plugin("snoop")).expect("snoop plugin");
    assert!(
        engine
            .load("snoop", "snoop.wasm", &snoop, Default::default())
            .is_ok()
    );
}

/// A plugin's log text (here a record's, logged as written by the chatty plugin through the
/// log import and stdout) cannot forge the host's lines: one summary line, no line the
/// host did not start, no terminal control.
#[test]
fn a_plugins_log_lines_cannot_forge_the_hosts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let forged_summary =
        "records: 1, entries: 1, published: 1, filtered: 0, coalesced: 0, dead-lettered: 0";
    let say = format!(
        "hello\n{forged_summary}\nERROR weir: forged\r\u{1b}[2K\u{85}\u{2028}FORGED-AFTER-SEPARATORS"
    );
    let record = stream_record(1, "say-1", "globex", json!({"say": {"S": say}}));
    let event = dir.path().join("say.json");
    std::fs::write(&event, json!({"Records": [record]}).to_string()).expect("write");
    let m = write_manifest(
        dir.path(),
        "b",
        None,
        &["chatty"],
        "[tenants.globex]\nplugin = \"chatty\"\n",
    );
    let out = weir(
        &[
            "run",
            "--manifest",
            m.to_str().expect("utf-8"),
            "--event",
            event.to_str().expect("utf-8"),
            "--dead-letter-dir",
            dir.path().join("dlq").to_str().expect("utf-8"),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The plugin's text is there, escaped, on the host's lines...
    assert!(stderr.contains("hello\\nrecords: 1"), "{stderr}");
    // ...and starts none of its own.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("records: ")).count(),
        1,
        "{stderr}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("ERROR weir: forged")),
        "{stderr}"
    );
    for bad in ['\r', '\u{1b}', '\u{85}', '\u{2028}'] {
        assert!(
            !stderr.contains(bad),
            "{bad:?} reached the terminal: {stderr:?}"
        );
    }
}
