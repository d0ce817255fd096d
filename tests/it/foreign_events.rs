//! Events in the shapes other tools' samples take (tests/events/other-tools/, written for
//! these tests): the command line takes what a user would expect, and refuses in one line
//! what it cannot read.

use std::path::{Path, PathBuf};

use crate::support::*;
use serde_json::Value;

fn sample(name: &str) -> String {
    root()
        .join("tests/events/other-tools")
        .join(name)
        .display()
        .to_string()
}

const GLOBEX: &str = "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"CustomerChanged\", fields = { Name = \"/name\" } }\n";

/// A manifest whose one route takes every table (`table = "*"`); the flag checks use it too.
pub(crate) fn any_table_manifest(dir: &Path) -> PathBuf {
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
