//! Per-item coalescing (a tenant's `coalesce = [...]`), through the `weir` binary and real
//! plugins: within one batch only each item's last change with events for a coalesced
//! destination is published; the earlier changes are counted as coalesced, never lost
//! from the count; order metadata (`item`, `position`) is on every entry.

use std::path::Path;
use std::process::Output;

use crate::support::*;
use serde_json::{Value, json};

/// `weir run` of `records` under `manifest`, dead letters into `dir/letters`.
fn run_records(dir: &Path, manifest: &Path, records: Vec<Value>) -> Output {
    let event = dir.join("event.json");
    std::fs::write(&event, json!({ "Records": records }).to_string()).expect("write event");
    let letters = dir.join("letters");
    weir_output(&[
        "run",
        "--manifest",
        manifest.to_str().expect("utf-8"),
        "--event",
        event.to_str().expect("utf-8"),
        "--dead-letter-dir",
        letters.to_str().expect("utf-8"),
    ])
}

fn detail(entry: &Value) -> Value {
    serde_json::from_str(entry["Detail"].as_str().expect("Detail")).expect("JSON")
}

/// A tenant mapping every change of an item to one event for destination `crm`.
fn tenant(name: &str, coalesce: bool) -> String {
    format!(
        "[tenants.{name}]\nplugin = \"mapping\"\nconfig = {{ detail_type = \"CustomerChanged\", destination = \"crm\", fields = {{ Name = \"/name\", LTV = \"/lifetimeValue\" }} }}\n{}",
        if coalesce {
            "coalesce = [\"crm\"]\n"
        } else {
            ""
        }
    )
}

/// The issue's example for one tenant: A inserted and modified three times, B inserted and
/// modified, C inserted and removed, interleaved as a shard delivers them.
fn eight_changes(tenant: &str, first_seq: u64) -> Vec<Value> {
    let changes = [
        ("INSERT", "A", "A v1"),
        ("INSERT", "B", "B v1"),
        ("INSERT", "C", "C v1"),
        ("MODIFY", "A", "A v2"),
        ("MODIFY", "B", "B v2"),
        ("MODIFY", "A", "A v3"),
        ("REMOVE", "C", "C v1"),
        ("MODIFY", "A", "A v4"),
    ];
    changes
        .iter()
        .enumerate()
        .map(|(i, (kind, item, name))| {
            item_change(first_seq + i as u64, kind, tenant, item, name, json!({}))
        })
        .collect()
}

#[test]
fn only_each_items_last_change_reaches_a_coalesced_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(
        dir.path(),
        "weir-bus",
        None,
        &["mapping"],
        &(tenant("acme", true) + &tenant("globex", false)),
    );
    let mut records = eight_changes("acme", 1);
    records.extend(eight_changes("globex", 101));
    let out = run_records(dir.path(), &manifest, records);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    let got: Vec<(String, String, String)> = stdout_json(&out)
        .iter()
        .map(|e| {
            let d = detail(e);
            (
                d["metadata"]["tenant"].as_str().expect("tenant").to_owned(),
                d["metadata"]["eventName"]
                    .as_str()
                    .expect("name")
                    .to_owned(),
                d["payload"]["Name"].as_str().expect("Name").to_owned(),
            )
        })
        .collect();
    let acme: Vec<(&str, &str)> = got
        .iter()
        .filter(|(t, ..)| t == "acme")
        .map(|(_, e, n)| (e.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        acme,
        [("MODIFY", "B v2"), ("REMOVE", "C v1"), ("MODIFY", "A v4")],
        "acme gets each item's last change: A's fourth version, B's second, C's REMOVE"
    );
    let globex = got.iter().filter(|(t, ..)| t == "globex").count();
    assert_eq!(globex, 8, "a tenant without coalesce gets every change");
    assert!(
        stderr_text(&out).contains(
            "records: 16, entries: 11, published: 11, filtered: 0, coalesced: 5, dead-lettered: 0"
        ),
        "{}",
        stderr_text(&out)
    );

    // Every entry says which item it is about and its position among the item's changes,
    // so a receiver can drop an update older than what it holds.
    for e in stdout_json(&out) {
        let m = detail(&e)["metadata"].clone();
        let item = m["item"].as_str().expect("item");
        let customer = match detail(&e)["payload"]["Name"].as_str().expect("Name") {
            n if n.starts_with('A') => "A",
            n if n.starts_with('B') => "B",
            _ => "C",
        };
        assert_eq!(
            item,
            format!(
                r#"{{"customerId":{{"S":"{customer}"}},"tenantId":{{"S":"{}"}}}}"#,
                m["tenant"].as_str().expect("tenant")
            )
        );
        let position = m["position"].as_str().expect("position");
        assert_eq!(position.len(), 40, "{position}");
        assert_eq!(
            position.trim_start_matches('0'),
            m["sequenceNumber"]
                .as_str()
                .expect("seq")
                .trim_start_matches('0')
        );
    }
}

/// When an item's last change is dead-lettered, its previous change is published: the
/// destination gets the newest state weir could map, and the newer one waits in the
/// dead-letter queue, whose redrive publishes it with a greater position.
#[test]
fn a_dead_lettered_last_change_leaves_the_previous_one_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(
        dir.path(),
        "weir-bus",
        None,
        &["mapping"],
        &tenant("acme", true),
    );
    let records = vec![
        item_change(1, "INSERT", "acme", "A", "A v1", json!({})),
        item_change(2, "MODIFY", "acme", "A", "A v2", json!({})),
        // A number written wrongly, which the mapping reads: a decode dead letter.
        item_change(
            3,
            "MODIFY",
            "acme",
            "A",
            "A v3",
            json!({"lifetimeValue": {"N": "12abc"}}),
        ),
    ];
    let out = run_records(dir.path(), &manifest, records);
    let letters = dir.path().join("letters");
    assert_eq!(out.status.code(), Some(1), "{}", stderr_text(&out));
    let names: Vec<String> = stdout_json(&out)
        .iter()
        .map(|e| {
            detail(e)["payload"]["Name"]
                .as_str()
                .expect("Name")
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["A v2"]);
    // published + filtered + coalesced + dead-lettered = records.
    assert!(
        stderr_text(&out).contains(
            "records: 3, entries: 1, published: 1, filtered: 0, coalesced: 1, dead-lettered: 1"
        ),
        "{}",
        stderr_text(&out)
    );
    let files: Vec<_> = std::fs::read_dir(&letters)
        .expect("letters")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1);
    let letter: Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).expect("read")).expect("JSON");
    assert_eq!(
        letter["record"]["dynamodb"]["SequenceNumber"],
        "000000000000000000003"
    );
    assert_eq!(letter["reason"]["kind"], "decode");
}

#[test]
fn weir_check_refuses_coalescing_a_destination_the_tenant_may_not_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenants = "[tenants.acme]\nplugin = \"mapping\"\nconfig = { detail_type = \"X\", fields = {} }\n\
                   destinations = [\"crm\"]\ncoalesce = [\"crm\", \"slack\"]\n";
    let manifest = write_manifest(dir.path(), "weir-bus", None, &["mapping"], tenants);
    let out = weir_output(&["check", "--manifest", manifest.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_text(&out));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_text(&out)
    );
    assert!(
        said.contains(
            "tenants.acme.coalesce: names \"slack\", a destination tenant \"acme\" may not use (allowed: crm)"
        ),
        "{said}"
    );
    // Naming only what it may use passes.
    let fine = tenants.replace(", \"slack\"", "");
    let manifest = write_manifest(dir.path(), "weir-bus", None, &["mapping"], &fine);
    let out = weir_output(&["check", "--manifest", manifest.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
}
