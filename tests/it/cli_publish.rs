//! `weir run --publish` against a real moto server: EventBridge and SQS through the
//! standard AWS SDK configuration (AWS_ENDPOINT_URL).

use std::process::{Command, Output};

use crate::support::*;

fn weir_publish(moto: &Moto, manifest: &std::path::Path, event: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--publish", "--timeout-secs", "5", "--manifest"])
        .arg(manifest)
        .arg("--event")
        .arg(root().join(event))
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs")
}

const GLOBEX: &str = "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"CustomerChanged\", fields = { Name = \"/name\", LTV = \"/lifetimeValue\" } }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_exit_statuses_say_what_happened() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    events
        .create_event_bus()
        .name("cli-bus")
        .send()
        .await
        .expect("bus");
    let dlq = sqs
        .create_queue()
        .queue_name("cli-dlq")
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");

    // A bad record with a working dead-letter queue: dead-lettered, exit 1.
    let manifest = write_manifest(dir.path(), "cli-bus", Some(&dlq), &["mapping"], GLOBEX);
    let out = weir_publish(&moto, &manifest, "tests/events/one-bad-record.json");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "records: 3, entries: 2, published: 2, filtered: 0, coalesced: 0, dead-lettered: 1, retried: 0"
        ),
        "{err}"
    );
    let letters = drain_queue(&sqs, &dlq, 1, std::time::Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1);

    // The dead-letter queue does not exist: the record cannot be kept, exit 3 naming it.
    let missing = format!("{}/123456789012/nope", moto.endpoint());
    let manifest = write_manifest(dir.path(), "cli-bus", Some(&missing), &["mapping"], GLOBEX);
    let out = weir_publish(&moto, &manifest, "tests/events/one-bad-record.json");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("not published in time: 200000000000000000002"),
        "{err}"
    );

    // A mistyped bus fails loudly before anything is sent.
    let manifest = write_manifest(dir.path(), "cli-buss", Some(&dlq), &["mapping"], GLOBEX);
    let out = weir_publish(&moto, &manifest, "examples/events/customers.json");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("event bus \"cli-buss\" cannot be described"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
