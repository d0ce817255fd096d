//! `weir backfill` against a moto server on 127.0.0.1: a table of items of several tenants,
//! scanned in segments through the real AWS SDK, mapped by a real plugin, published through
//! a rule into an SQS queue, killed and resumed, and paced.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use serde_json::{Value, json};

const GLOBEX: &str = "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"CustomerChanged\", fields = { Name = \"/name\", LTV = \"/lifetimeValue\" } }\n";

/// The 38-digit lifetime value of globex's item `i`.
fn ltv(i: usize) -> String {
    format!("{:038}", 10u128.pow(37) + i as u128 * 7_919)
}

/// Customers (tenantId, customerId) holding `globex` items of globex and `others` of
/// initech and umbrella, which no route maps.
async fn table_with_items(config: &aws_config::SdkConfig, globex: usize, others: usize) {
    let db = aws_sdk_dynamodb::Client::new(config);
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    db.create_table()
        .table_name("Customers")
        .attribute_definitions(attr("tenantId"))
        .attribute_definitions(attr("customerId"))
        .key_schema(key("tenantId", KeyType::Hash))
        .key_schema(key("customerId", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    let s = |v: String| AttributeValue::S(v);
    for i in 0..globex + others {
        let tenant = if i < globex {
            "globex"
        } else if i % 2 == 0 {
            "initech"
        } else {
            "umbrella"
        };
        db.put_item()
            .table_name("Customers")
            .item("tenantId", s(tenant.into()))
            .item("customerId", s(format!("C-{i:05}")))
            .item("name", s(format!("Customer {i}")))
            .item("lifetimeValue", AttributeValue::N(ltv(i)))
            .send()
            .await
            .expect("put item");
    }
}

fn weir(moto: &Moto, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.arg("backfill")
        .args(args)
        .current_dir(root())
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG");
    c
}

fn entries(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an entry per line"))
        .collect()
}

fn ids(entries: &[Value]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| metadata(e)["id"].as_str().expect("id").to_owned())
        .collect()
}

fn args<'a>(manifest: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--manifest",
        manifest.to_str().expect("utf-8"),
        "--table",
        "Customers",
        "--segments",
        "4",
        "--page-size",
        "50",
    ];
    a.extend_from_slice(extra);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_backfill_publishes_exactly_the_routed_tenants_items_through_a_rule() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    table_with_items(&config, 400, 600).await;
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    // The routed tenant's events go through a rule to a queue of their own.
    let urls = bus_with_rules(
        &events,
        &sqs,
        "backfill-bus",
        &[("CustomerChanged", "globex")],
    )
    .await;
    let url = &urls[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(dir.path(), "backfill-bus", None, &["mapping"], GLOBEX);
    let out = weir(&moto, &args(&manifest, &["--publish", "--rate", "100000"]))
        .output()
        .expect("weir runs");
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "records: 1000, entries: 400, published: 400, filtered: 600, coalesced: 0, dead-lettered: 0, retried: 0"
        ),
        "{err}"
    );
    let messages = drain_queue(&sqs, url, 400, Duration::from_secs(60)).await;
    assert_eq!(messages.len(), 400);
    let mut customers = BTreeSet::new();
    for m in &messages {
        let event: Value = serde_json::from_str(m.body().expect("body")).expect("JSON");
        let detail = &event["detail"];
        assert_eq!(detail["metadata"]["tenant"], "globex");
        assert_eq!(detail["metadata"]["origin"], "backfill");
        assert_eq!(detail["metadata"]["eventName"], "INSERT");
        let name = detail["payload"]["Name"].as_str().expect("name");
        let i: usize = name
            .trim_start_matches("Customer ")
            .parse()
            .expect("customer number");
        // Every digit of the 38-digit number arrives (as a string: EventBridge cannot
        // carry integers past i64).
        let body = m.body().expect("body");
        assert!(body.contains(&ltv(i)), "{i}: {body}");
        customers.insert(i);
    }
    assert_eq!(
        customers,
        (0..400).collect(),
        "each globex item exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backfill_resumes_with_the_same_ids_and_a_finished_one_does_nothing() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    table_with_items(&config, 200, 200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(dir.path(), "unused-bus", None, &["mapping"], GLOBEX);

    // The whole run at once, for the ids it gives.
    let whole_state = dir.path().join("whole.json");
    let whole_args = [
        "--state",
        whole_state.to_str().expect("utf-8"),
        "--run",
        "onboarding",
    ];
    let whole = weir(&moto, &args(&manifest, &whole_args))
        .output()
        .expect("weir runs");
    assert_eq!(whole.status.code(), Some(0), "{}", stderr_text(&whole));
    let whole_ids = ids(&entries(&whole.stdout));
    assert_eq!(whole_ids.len(), 200);

    // The same run killed once its first checkpoint is written (paced, so it is midway).
    let state = dir.path().join("state.json");
    let state_args = [
        "--state",
        state.to_str().expect("utf-8"),
        "--run",
        "onboarding",
        "--rate",
        "50",
    ];
    let mut child = weir(&moto, &args(&manifest, &state_args))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    // Killed once a checkpoint holds some items (a segment may be empty and done at once).
    let items_done = |state: &Path| -> u64 {
        std::fs::read_to_string(state)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| {
                v["parts"]
                    .as_array()
                    .map(|segs| segs.iter().map(|s| s["items"].as_u64().unwrap_or(0)).sum())
            })
            .unwrap_or(0)
    };
    let started = Instant::now();
    while items_done(&state) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    let killed = child.wait_with_output().expect("output");
    let checkpoint: Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("JSON");
    let done = checkpoint["parts"]
        .as_array()
        .expect("segments")
        .iter()
        .filter(|s| s["done"] == true)
        .count();
    assert!(done < 4, "the run was killed midway: {checkpoint}");
    let first = entries(&killed.stdout);

    // Resumed: together the two runs give every item, with the whole run's ids.
    let resumed = weir(&moto, &args(&manifest, &state_args[..4]))
        .output()
        .expect("weir runs");
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr_text(&resumed));
    let mut all = ids(&first);
    all.extend(ids(&entries(&resumed.stdout)));
    assert_eq!(all, whole_ids);
    // It read only what the checkpoint had not done.
    let checkpointed: u64 = checkpoint["parts"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["items"].as_u64().expect("items"))
        .sum();
    assert!(checkpointed > 0, "{checkpoint}");
    assert!(
        stderr_text(&resumed).contains(&format!("records: {}, ", 400 - checkpointed)),
        "{checkpointed} items were checkpointed: {}",
        stderr_text(&resumed)
    );

    // Finished: running it again publishes nothing.
    let again = weir(&moto, &args(&manifest, &state_args[..4]))
        .output()
        .expect("weir runs");
    assert_eq!(again.status.code(), Some(0), "{}", stderr_text(&again));
    assert!(again.stdout.is_empty());
    assert!(
        stderr_text(&again).contains("records: 0, entries: 0"),
        "{}",
        stderr_text(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_never_feeds_a_destination_faster_than_its_rate_limit() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    table_with_items(&config, 60, 0).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The destination's rate limit is the backfill's pace (no --rate given).
    let tenants = "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"CustomerChanged\", destination = \"crm\", fields = { Name = \"/name\" } }\n\
        [destinations.crm]\nendpoint = \"https://crm.example.com/items\"\nmethod = \"POST\"\n\
        detail_types = [\"CustomerChanged\"]\nrate_limit_per_second = 20\n\
        auth = { type = \"api_key\", header = \"X-Api-Key\", value = { secret = \"crm\", key = \"api_key\" } }\n";
    let manifest = write_manifest(dir.path(), "unused-bus", None, &["mapping"], tenants);
    let started = Instant::now();
    let out = weir(&moto, &args(&manifest, &[]))
        .output()
        .expect("weir runs");
    let took = started.elapsed();
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("at most 20 entries/s"), "{err}");
    let n = entries(&out.stdout).len();
    assert_eq!(n, 60);
    // The first second's worth may go at once; every later one waits its turn.
    let rate = (n - 20) as f64 / took.as_secs_f64();
    assert!(rate <= 20.0, "{n} entries in {took:?}: {rate:.1}/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_backfill_reads_every_data_file_with_exact_counts() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let url = export_in_s3(&config, 3, 100, ltv).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(dir.path(), "unused-bus", None, &["mapping"], GLOBEX);
    let state = dir.path().join("state.json");
    let export_args = [
        "--manifest",
        manifest.to_str().expect("utf-8"),
        "--export",
        &url,
        "--key",
        "tenantId",
        "--key",
        "customerId",
        "--page-size",
        "40",
        "--state",
        state.to_str().expect("utf-8"),
    ];
    let out = weir(&moto, &export_args)
        .env("AWS_S3_FORCE_PATH_STYLE", "true")
        .output()
        .expect("weir runs");
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("about 300 items, 3 data files"), "{err}");
    assert!(
        err.contains("records: 300, entries: 120, published: 120, filtered: 180, coalesced: 0, dead-lettered: 0"),
        "{err}"
    );
    let entries = entries(&out.stdout);
    assert_eq!(ids(&entries).len(), 120);
    for e in &entries {
        let m = metadata(e);
        assert_eq!(m["origin"], "backfill");
        assert_eq!(m["table"], "Customers");
        let detail: Value =
            serde_json::from_str(e["Detail"].as_str().expect("detail")).expect("JSON");
        let i: usize = detail["payload"]["Name"]
            .as_str()
            .and_then(|n| n.strip_prefix("Customer "))
            .and_then(|n| n.parse().ok())
            .expect("customer number");
        // Every digit of the 38-digit number (a string: past what EventBridge carries).
        assert_eq!(detail["payload"]["LTV"], ltv(i), "{detail}");
    }
    let checkpoint: Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("JSON");
    let parts = checkpoint["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 3);
    assert!(
        parts.iter().all(|p| p["done"] == true && p["items"] == 100),
        "{checkpoint}"
    );
}

#[test]
fn a_local_copy_of_an_export_backfills_like_the_export_in_s3() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let export = dir.path().join("01700000000000-abcd1234");
    std::fs::create_dir_all(export.join("data")).expect("dirs");
    let mut listing = String::new();
    for f in 0..2 {
        let mut lines = String::new();
        for j in 0..25 {
            let i = f * 25 + j;
            let tenant = if i % 2 == 0 { "globex" } else { "initech" };
            lines.push_str(&format!(
                "{}\n",
                json!({"Item": {"tenantId": {"S": tenant}, "customerId": {"S": format!("C-{i}")},
                    "name": {"S": format!("Customer {i}")}, "lifetimeValue": {"N": ltv(i)}}})
            ));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(lines.as_bytes()).expect("gzip");
        let name = format!("f{f}.json.gz");
        std::fs::write(export.join("data").join(&name), gz.finish().expect("gzip")).expect("write");
        // The keys as the export in S3 named them.
        listing.push_str(&format!(
            "{}\n",
            json!({"itemCount": 25, "dataFileS3Key": format!("p/AWSDynamoDB/01700000000000-abcd1234/data/{name}")})
        ));
    }
    std::fs::write(export.join("manifest-files.json"), listing).expect("write");
    std::fs::write(
        export.join("manifest-summary.json"),
        json!({"tableArn": "arn:aws:dynamodb:eu-west-1:1:table/Customers", "itemCount": 50,
            "exportFormat": "DYNAMODB_JSON",
            "manifestFilesS3Key": "p/AWSDynamoDB/01700000000000-abcd1234/manifest-files.json"})
        .to_string(),
    )
    .expect("write");
    let manifest = write_manifest(dir.path(), "unused-bus", None, &["mapping"], GLOBEX);
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["backfill", "--manifest"])
        .arg(&manifest)
        .arg("--export")
        .arg(&export)
        .args(["--key", "tenantId", "--key", "customerId"])
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs");
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "records: 50, entries: 25, published: 25, filtered: 25, coalesced: 0, dead-lettered: 0"
        ),
        "{err}"
    );
    assert_eq!(ids(&entries(&out.stdout)).len(), 25);
}

/// `--tenant` limits a run to some tenants (the others are filtered and counted), and the
/// checkpoint can live in S3: a finished run found there does nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_limited_to_one_tenant_checkpoints_in_s3() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    table_with_items(&config, 120, 80).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("weir-state")
        .send()
        .await
        .expect("bucket");
    let dir = tempfile::tempdir().expect("tempdir");
    // Three tenants have entries; the run is for globex alone.
    let tenants = format!(
        "{GLOBEX}[tenants.initech]\nplugin = \"mapping\"\nconfig = {{ detail_type = \"CustomerChanged\", fields = {{ Name = \"/name\" }} }}\n"
    );
    let manifest = write_manifest(dir.path(), "unused-bus", None, &["mapping"], &tenants);
    let state = "s3://weir-state/backfills/customers.json";
    let run_args = [
        "--tenant",
        "globex",
        "--state",
        state,
        "--run",
        "globex-only",
    ];
    let out = weir(&moto, &args(&manifest, &run_args))
        .output()
        .expect("weir runs");
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("records: 200, entries: 120, published: 120, filtered: 80, coalesced: 0, dead-lettered: 0"),
        "{err}"
    );
    let got = entries(&out.stdout);
    assert_eq!(got.len(), 120);
    assert!(got.iter().all(|e| metadata(e)["tenant"] == "globex"));
    let saved = s3
        .get_object()
        .bucket("weir-state")
        .key("backfills/customers.json")
        .send()
        .await
        .expect("the checkpoint is in S3");
    let saved: Value =
        serde_json::from_slice(&saved.body.collect().await.expect("body").into_bytes())
            .expect("JSON");
    assert_eq!(saved["run"], "globex-only");
    let parts = saved["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 4);
    assert!(parts.iter().all(|p| p["done"] == true), "{saved}");
    let items: u64 = parts.iter().map(|p| p["items"].as_u64().expect("n")).sum();
    assert_eq!(items, 200);

    let again = weir(&moto, &args(&manifest, &run_args))
        .output()
        .expect("weir runs");
    assert_eq!(again.status.code(), Some(0), "{}", stderr_text(&again));
    assert!(again.stdout.is_empty());
    assert!(stderr_text(&again).contains("records: 0, entries: 0"));

    // A tenant the manifest does not serve is refused before anything is read.
    let other = weir(&moto, &args(&manifest, &["--tenant", "hooli"]))
        .output()
        .expect("weir runs");
    assert_eq!(other.status.code(), Some(2), "{}", stderr_text(&other));
    assert!(stderr_text(&other).contains("--tenant hooli: the manifest has no entry"));
}

/// A local copy of an export (`manifest-summary.json`, `manifest-files.json`, `data/`) at
/// `export`: each of `files` is a key as `manifest-files.json` names it, and the gzipped
/// lines written to the path that key reaches below `export` (a key climbing out of
/// `data/` writes where it climbs to).
fn local_export(export: &Path, files: &[(&str, String)]) {
    use std::io::Write as _;
    std::fs::create_dir_all(export.join("data")).expect("dirs");
    let mut listing = String::new();
    for (key, lines) in files {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(lines.as_bytes()).expect("gzip");
        let relative = key
            .rsplit_once("/data/")
            .map_or(key.to_string(), |(_, f)| format!("data/{f}"));
        let path = export.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(&path, gz.finish().expect("gzip")).expect("write");
        listing.push_str(&format!("{}\n", json!({"dataFileS3Key": key})));
    }
    std::fs::write(export.join("manifest-files.json"), listing).expect("write");
    std::fs::write(
        export.join("manifest-summary.json"),
        json!({"tableArn": "arn:aws:dynamodb:eu-west-1:1:table/Customers",
            "exportFormat": "DYNAMODB_JSON"})
        .to_string(),
    )
    .expect("write");
}

/// Lines of `{"Item": ...}` for globex's customers `from..to`.
fn globex_lines(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            format!(
                "{}\n",
                json!({"Item": {"tenantId": {"S": "globex"}, "customerId": {"S": format!("C-{i}")},
                    "name": {"S": format!("Customer {i}")}, "lifetimeValue": {"N": ltv(i)}}})
            )
        })
        .collect()
}

/// `weir backfill` of the local export at `export` with the manifest at `manifest`.
fn local_backfill(manifest: &Path, export: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["backfill", "--manifest"])
        .arg(manifest)
        .arg("--export")
        .arg(export)
        .args(["--key", "tenantId", "--key", "customerId"])
        .args(extra)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs")
}

const DATA_KEY: &str = "p/AWSDynamoDB/01700000000000-abcd1234/data/f0.json.gz";

/// A state file no run wrote (a count at u64::MAX once overflowed the positions) is
/// refused, naming the file and the part; nothing is read or printed.
#[test]
fn a_state_file_counting_past_what_a_part_holds_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = dir.path().join("export");
    local_export(&export, &[(DATA_KEY, globex_lines(0, 10))]);
    let manifest = write_manifest(dir.path(), "unused-bus", None, &["mapping"], GLOBEX);
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().expect("utf-8");
    for part in [
        json!({"next": "5", "items": 18446744073709551615u64, "done": false}),
        json!({"next": "18446744073709551615", "items": 5, "done": false}),
        json!({"next": "five", "items": 5, "done": false}),
    ] {
        std::fs::write(
            &state,
            json!({"table_arn": "arn:aws:dynamodb:eu-west-1:1:table/Customers", "run": "r",
                "parts": [part]})
            .to_string(),
        )
        .expect("write");
        let out = local_backfill(&manifest, &export, &["--state", state_arg]);
        let err = stderr_text(&out);
        assert!(!err.contains("panicked"), "{part}: {err}");
        assert_eq!(out.status.code(), Some(2), "{part}: {err}");
        assert!(err.contains(&format!("{state_arg}: part 0")), "{err}");
        assert!(out.stdout.is_empty(), "{part}");
    }
}

/// A `dataFileS3Key` is a key, never a path: one that climbs out of the export's `data/`
/// is refused with the key named, and what it reaches is never read.
#[test]
fn a_data_file_key_climbing_out_of_data_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = dir.path().join("export");
    let climbing = "p/AWSDynamoDB/01700000000000-abcd1234/data/../../outside.json.gz";
    local_export(
        &export,
        &[
            (DATA_KEY, globex_lines(0, 3)),
            (climbing, globex_lines(100, 101)),
        ],
    );
    assert!(
        dir.path().join("outside.json.gz").is_file(),
        "the bait is there"
    );
    let manifest = write_manifest(dir.path(), "unused-bus", None, &["mapping"], GLOBEX);
    let out = local_backfill(&manifest, &export, &[]);
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("dataFileS3Key {climbing:?}")),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing was read");
}

/// A line longer than any item's typed JSON is refused with the file and the line, before
/// it is held whole; the lines before it are done.
#[test]
fn a_data_file_line_longer_than_an_item_is_refused_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = dir.path().join("export");
    let mut lines = globex_lines(0, 2);
    lines.push_str(&format!(
        "{}\n",
        json!({"Item": {"tenantId": {"S": "globex"}, "customerId": {"S": "C-huge"},
            "name": {"S": "x".repeat(5 << 20)}}})
    ));
    local_export(&export, &[(DATA_KEY, lines)]);
    let manifest = write_manifest(dir.path(), "unused-bus", None, &["mapping"], GLOBEX);
    let out = local_backfill(&manifest, &export, &["--page-size", "1"]);
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{DATA_KEY:?} line 3: longer than")),
        "{err}"
    );
    assert_eq!(entries(&out.stdout).len(), 2, "the two lines before it");
}

/// A local export read under a pace too slow for any clock once panicked after its first
/// chunk; such a rate is refused before anything is read.
#[test]
fn a_rate_no_clock_can_wait_for_is_refused_before_a_local_export_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = dir.path().join("export");
    local_export(&export, &[(DATA_KEY, globex_lines(0, 3))]);
    let manifest = write_manifest(dir.path(), "unused-bus", None, &["mapping"], GLOBEX);
    let out = local_backfill(&manifest, &export, &["--rate", "1e-300"]);
    let err = stderr_text(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--rate"), "{err}");
    assert!(out.stdout.is_empty());
}

/// `weir backfill | head -1`: a closed stdout stops the run before the page it could not
/// print is checkpointed (exit 3, one line), so a resume prints it.
#[test]
fn a_backfill_whose_stdout_closes_stops_and_leaves_the_page_for_the_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = dir.path().join("export");
    local_export(&export, &[(DATA_KEY, globex_lines(0, 30))]);
    let manifest = write_manifest(dir.path(), "unused-bus", None, &["mapping"], GLOBEX);
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().expect("utf-8");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["backfill", "--manifest"])
        .arg(&manifest)
        .arg("--export")
        .arg(&export)
        .args([
            "--key",
            "tenantId",
            "--key",
            "customerId",
            "--page-size",
            "10",
        ])
        .args(["--state", state_arg, "--run", "r"])
        .current_dir(root())
        .env_remove("RUST_LOG")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("weir runs");
    let err = stderr_text(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("stdout closed: stopped; part 0 resumes"),
        "{err}"
    );
    // Nothing was checkpointed: the resume prints all 30.
    let again = local_backfill(&manifest, &export, &["--state", state_arg, "--run", "r"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr_text(&again));
    assert_eq!(entries(&again.stdout).len(), 30);
}

/// The function over `config`'s moto (bus, queues and the export's S3), with the manifest
/// at `manifest` and weir's dead-letter queue `dlq`, for running backfill tasks.
async fn task_function(
    config: &aws_config::SdkConfig,
    manifest: &Path,
    dlq: String,
) -> weir::lambda::Function {
    let loader = weir_runtime::loader::Loader::load(
        weir_aws::store::ObjectStore::default(),
        std::sync::Arc::new(
            weir_runtime::plugin::PluginEngine::with_cache_dir(None).expect("engine"),
        ),
        weir_core::location::Location::File(manifest.to_path_buf()),
        Duration::from_secs(3600),
    )
    .await
    .expect("loads");
    weir::lambda::Function {
        loader: tokio::sync::Mutex::new(loader),
        publisher: weir_aws::publish::Publisher::new(
            weir_aws::client::eventbridge(config),
            weir_aws::publish::PublishConfig::default(),
        ),
        dead_letters: weir_aws::dead_letter::DeadLetterQueue::new(
            aws_sdk_sqs::Client::new(config),
            dlq,
            weir_aws::dead_letter::QueueConfig::default(),
        ),
        function_name: "weir-test".into(),
        tenant_metrics: false,
        exports: weir_aws::export::Exports::new(config),
    }
}

/// Invokes `function` with the backfill task `task` (the `weirBackfill` object), 30 s
/// before its deadline.
async fn run_task(
    function: &weir::lambda::Function,
    task: Value,
) -> Result<Value, lambda_runtime::Error> {
    let payload: weir::lambda::Invocation =
        serde_json::from_value(json!({ "weirBackfill": task })).expect("a task");
    let mut context = lambda_runtime::Context::default();
    context.deadline = (std::time::SystemTime::now() + Duration::from_secs(30))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as u64;
    weir::lambda::handle_invocation(function, lambda_runtime::LambdaEvent::new(payload, context))
        .await
}

/// A backfill task (the function's `{"weirBackfill": ...}` event) whose `ratePerSecond` no
/// clock can wait for fails with the reason named, before reading anything; it once
/// panicked after publishing its first chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_task_with_a_rate_no_clock_can_wait_for_fails_naming_it() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let (_, _, dlq) =
        bus_queues_and_dead_letters(&config, "task-rate", &[("CustomerChanged", "globex")]).await;
    let export = export_in_s3(&config, 1, 10, ltv).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(dir.path(), "task-rate", Some(&dlq), &["mapping"], GLOBEX);
    let function = task_function(&config, &manifest, dlq).await;
    for rate in [json!(1e-300), json!(0.0), json!(-3.0), json!(1e300)] {
        let task = json!({
            "export": export,
            "dataFileS3Key": "nightly/AWSDynamoDB/01700000000000-abcd1234/data/file-0.json.gz",
            "run": "r",
            "keys": ["tenantId", "customerId"],
            "ratePerSecond": rate,
        });
        let err = run_task(&function, task).await.expect_err("the task fails");
        assert!(
            err.to_string().contains("weirBackfill.ratePerSecond"),
            "{rate}: {err}"
        );
    }
}

/// A task's `dataFileS3Key` names a data file of its export, nothing else in the bucket:
/// another object (here one holding an item a rule would deliver) is refused with the key
/// named, and never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_task_reads_only_its_exports_data_files() {
    use std::io::Write as _;
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let (_, _, dlq) =
        bus_queues_and_dead_letters(&config, "task-key", &[("CustomerChanged", "globex")]).await;
    let export = export_in_s3(&config, 1, 10, ltv).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(globex_lines(0, 1).as_bytes()).expect("gzip");
    s3.put_object()
        .bucket("exports")
        .key("private/other.json.gz")
        .body(gz.finish().expect("gzip").into())
        .send()
        .await
        .expect("put");
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(dir.path(), "task-key", Some(&dlq), &["mapping"], GLOBEX);
    let function = task_function(&config, &manifest, dlq).await;
    for key in [
        "private/other.json.gz",
        "nightly/AWSDynamoDB/01700000000000-abcd1234/data/../../../../private/other.json.gz",
    ] {
        let task = json!({
            "export": export,
            "dataFileS3Key": key,
            "run": "r",
            "keys": ["tenantId", "customerId"],
        });
        let err = run_task(&function, task).await.expect_err("refused");
        assert!(
            err.to_string().contains(&format!("dataFileS3Key {key:?}")),
            "{key}: {err}"
        );
    }
}

/// A page whose chunk cannot be published in time (EventBridge, stood in for by a local
/// endpoint, throttles every call until `--timeout-secs` passes) stops the run at that
/// chunk: exit 3, its records counted as retried, its checkpoint not moved, and the page's
/// later chunks never sent (they, like it, are done on the resume, with the same ids).
#[test]
fn a_chunk_not_published_in_time_stops_the_backfill_at_that_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = dir.path().join("export");
    local_export(&export, &[(DATA_KEY, globex_lines(0, 10))]);
    let manifest = write_manifest(dir.path(), "fake", None, &["mapping"], GLOBEX);
    let state = dir.path().join("state.json");
    let fake = FakeEventBridge::start(|_, _| Reply::Throttle);
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["backfill", "--manifest"])
        .arg(&manifest)
        .arg("--export")
        .arg(&export)
        .args(["--key", "tenantId", "--key", "customerId", "--publish"])
        // Chunks of 5 (a second's worth at 5/s) in a page of 10.
        .args(["--page-size", "10", "--rate", "5", "--timeout-secs", "1"])
        .args(["--run", "r", "--state"])
        .arg(&state)
        .arg("--dead-letter-dir")
        .arg(dir.path().join("letters"))
        .current_dir(root())
        .env("AWS_ENDPOINT_URL", fake.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs");
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("not published in time: part 0 resumes at its last checkpoint"),
        "{err}"
    );
    assert!(
        err.contains("records: 5, entries: 5, published: 0") && err.contains("retried: 5"),
        "{err}"
    );
    let sent: BTreeSet<String> = fake
        .calls()
        .iter()
        .flatten()
        .map(|e| e["Detail"].as_str().expect("a detail").to_owned())
        .collect();
    assert_eq!(
        sent.len(),
        5,
        "only the first chunk's entries were sent: {sent:?}"
    );
    assert!(
        !state.exists() || {
            let s: Value =
                serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("JSON");
            s["parts"][0]["items"] == 0
        }
    );
}
