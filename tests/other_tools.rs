//! Events in the shapes other tools' samples take (tests/events/other-tools/, written for
//! these tests): the command line takes what a user would expect, and refuses in one line
//! what it cannot read.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

fn sample(name: &str) -> String {
    root()
        .join("tests/events/other-tools")
        .join(name)
        .display()
        .to_string()
}

const GLOBEX: &str = "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"CustomerChanged\", fields = { Name = \"/name\" } }\n";

/// A manifest whose one route takes every table (`table = "*"`).
fn any_table_manifest(dir: &Path) -> PathBuf {
    let text = format!(
        "event_bus = \"b\"\n[plugins.mapping]\npath = {:?}\n[[routes]]\ntable = \"*\"\nsource = \"weir.any\"\ntenant = {{ attribute = \"tenantId\" }}\n{GLOBEX}",
        plugin("mapping").display().to_string()
    );
    let path = dir.join("any.toml");
    std::fs::write(&path, text).expect("write");
    path
}

/// `weir run` of one event file, and its stderr.
fn weir_run(manifest: &Path, event: &str) -> (std::process::Output, String) {
    let out = weir_output(&[
        "run",
        "--manifest",
        manifest.to_str().expect("utf-8"),
        "--event",
        event,
    ]);
    let err = stderr_text(&out);
    (out, err)
}

#[test]
fn a_byte_order_mark_and_a_single_record_are_read_as_events() {
    for (file, name) in [
        ("bom.json", "Written on Windows"),
        ("single-record.json", "Just one"),
    ] {
        let out = weir_output(&["decode", "--event", &sample(file)]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr_text(&out));
        let decoded = stdout_json(&out);
        assert_eq!(decoded.len(), 1, "{file}");
        assert_eq!(decoded[0]["table"], "Customers", "{file}");
        assert_eq!(decoded[0]["newImage"]["name"], name, "{file}");

        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = write_manifest(dir.path(), "b", None, &["mapping"], GLOBEX);
        let (out, err) = weir_run(&manifest, &sample(file));
        assert_eq!(out.status.code(), Some(0), "{file}: {err}");
        assert!(
            err.contains("records: 1, entries: 1, published: 1"),
            "{file}: {err}"
        );
    }
}

#[test]
fn records_whose_arn_names_no_table_are_filtered_with_a_hint_or_taken_by_a_route_for_every_table() {
    let file = sample("placeholder-arn.json");
    // decode decodes them, naming the placeholder.
    let out = weir_output(&["decode", "--event", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert_eq!(stdout_json(&out).len(), 2);
    assert!(
        stderr_text(&out).contains("eventSourceARN \"stream-ARN\" names no table"),
        "{}",
        stderr_text(&out)
    );

    // A manifest routing the Customers table: filtered as no-route, and the hint says why.
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(dir.path(), "b", None, &["mapping"], GLOBEX);
    let (out, err) = weir_run(&manifest, &file);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("records: 2, entries: 0, published: 0, filtered: 2,"),
        "{err}"
    );
    assert!(
        err.contains(
            "hint: 2 records name no table (eventSourceARN \"eventsource_arn\", \"stream-ARN\")"
        ),
        "{err}"
    );
    assert!(err.contains("table = \"*\""), "{err}");

    // A route for every table takes them.
    let any = any_table_manifest(dir.path());
    let (out, err) = weir_run(&any, &file);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("records: 2, entries: 2, published: 2, filtered: 0,"),
        "{err}"
    );
    let names: Vec<String> = stdout_json(&out)
        .iter()
        .map(|e| {
            let d: Value =
                serde_json::from_str(e["Detail"].as_str().expect("Detail")).expect("JSON");
            d["payload"]["Name"].as_str().expect("Name").to_owned()
        })
        .collect();
    assert_eq!(names, ["Placeholder one", "Placeholder two"]);

    // weir test gives such a case the route for every table.
    let cases = dir.path().join("mapping/cases");
    std::fs::create_dir_all(cases.join("placeholder")).expect("mkdir");
    std::fs::copy(&file, cases.join("placeholder/event.json")).expect("copy");
    std::fs::write(
        cases.join("config.toml"),
        "detail_type = \"CustomerChanged\"\n[fields]\nName = \"/name\"\n",
    )
    .expect("config");
    let plugin_path = plugin("mapping").display().to_string();
    let cases_path = cases.display().to_string();
    let out = weir_output(&["test", "--update", "--plugin", &plugin_path, &cases_path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    let entries =
        std::fs::read_to_string(cases.join("placeholder/entries.jsonl")).expect("entries");
    assert_eq!(entries.lines().count(), 2, "{entries}");
}

#[test]
fn kinesis_shapes_are_refused_in_one_line_that_says_what_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(dir.path(), "b", None, &["mapping"], GLOBEX);
    let cases = dir.path().join("cases");
    std::fs::create_dir_all(cases.join("k")).expect("mkdir");
    for (file, says) in [
        (
            "kinesis-shape.json",
            "record 1 is a DynamoDB change as Kinesis Data Streams carries it (tableName, no dynamodb.SequenceNumber)",
        ),
        (
            "kinesis-event.json",
            "a Kinesis event (Records[].kinesis.data, base64)",
        ),
    ] {
        std::fs::copy(sample(file), cases.join("k/event.json")).expect("copy");
        let plugin_path = plugin("mapping").display().to_string();
        let cases_path = cases.display().to_string();
        for args in [
            vec!["decode", "--event", &sample(file)],
            vec![
                "run",
                "--manifest",
                manifest.to_str().expect("utf-8"),
                "--event",
                &sample(file),
            ],
            vec!["test", "--plugin", &plugin_path, &cases_path],
        ] {
            let out = weir_output(&args);
            let err = stderr_text(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(says), "{args:?}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        }
    }
}

/// Runs weir with stdout a real pipe whose reader is already closed (what `| head -1` does
/// once it has its line): every write to stdout fails with EPIPE.
fn weir_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("weir runs")
}

/// `weir compile x.wasm | head -1`, `weir run ... | head -1` and the other printing
/// commands end quietly when their reader closes stdout: no panic, one status.
#[test]
fn a_closed_stdout_ends_each_printing_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().to_str().expect("utf-8");
    let mapping = plugin("mapping");
    let mapping = mapping.to_str().expect("utf-8");
    let dead_letters = dir.path().join("dl");
    let dead_letters = dead_letters.to_str().expect("utf-8");
    let scaffold = dir.path().join("new");
    let scaffold = scaffold.to_str().expect("utf-8");
    let commands: [(&[&str], i32); 5] = [
        // compile's own printing (println!) is caught at the top, in the weir binary.
        (&["compile", mapping, "--out-dir", out_dir], 0),
        // run finishes: its summary and status stand, only the entries stop.
        (
            &[
                "run",
                "--manifest",
                "examples/weir.toml",
                "--event",
                "examples/events/customers.json",
                "--dead-letter-dir",
                dead_letters,
            ],
            0,
        ),
        (&["decode", "--event", "examples/events/customers.json"], 0),
        (&["infra", "--manifest", "examples/weir.toml"], 0),
        (
            &[
                "new", "plugin", "piped", "--lang", "rust", "--dir", scaffold,
            ],
            0,
        ),
    ];
    for (args, status) in commands {
        let out = weir_into_closed_pipe(args);
        let err = stderr_text(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(status), "{args:?}: {err}");
        if args[0] == "run" {
            assert!(
                err.contains("records: 8, entries: 6, published: 6, filtered: 2"),
                "{err}"
            );
        }
    }
    // compile did its work before its output was cut short.
    assert!(dir.path().join("mapping.cwasm").is_file());
}

/// Flags and files whose values once overflowed, divided, made a `Duration` panic or
/// allocated without bound: each is refused in one line naming it, exit 2.
#[test]
fn flags_and_files_out_of_range_are_refused_naming_them_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = any_table_manifest(dir.path());
    let manifest = manifest.to_str().expect("utf-8");
    let event = "examples/events/customers.json";
    let backfill = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["backfill", "--manifest", manifest, "--table", "T"]
            .map(str::to_owned)
            .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["run", "--manifest", manifest, "--event", event]
            .map(str::to_owned)
            .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (backfill(&["--rate", "1e-300"]), "--rate"),
        (backfill(&["--rate", "0"]), "--rate"),
        (backfill(&["--rate=-5"]), "--rate"),
        (backfill(&["--rate", "NaN"]), "--rate"),
        (backfill(&["--rate", "inf"]), "--rate"),
        (backfill(&["--rate", "1e400"]), "--rate"),
        (backfill(&["--segments", "0"]), "--segments"),
        (backfill(&["--segments", "4294967295"]), "--segments"),
        (backfill(&["--page-size", "0"]), "--page-size"),
        (backfill(&["--page-size=-1"]), "--page-size"),
        (backfill(&["--page-size", "2147483647"]), "--page-size"),
        (
            backfill(&["--timeout-secs", "18446744073709551615"]),
            "--timeout-secs",
        ),
        (
            run(&["--publish", "--timeout-secs", "18446744073709551615"]),
            "--timeout-secs",
        ),
        (run(&["--publish", "--timeout-secs", "0"]), "--timeout-secs"),
    ];
    for (args, flag) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = weir_output(&args);
        let err = stderr_text(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
    // An event file past any batch's size is refused, not read until memory runs out.
    let out = weir_output(&["decode", "--event", "/dev/zero"]);
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/dev/zero: larger than"), "{err}");
}
