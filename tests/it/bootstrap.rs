//! The real `bootstrap` binary, served by cargo-lambda's Lambda Runtime API emulator
//! (`cargo lambda watch --only-lambda-apis`) and invoked with `cargo lambda invoke`,
//! publishing to a real moto server.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The dead-letter key's secret and the dead-letter bucket in moto, as the template makes
/// them: the function refuses to start without them.
async fn dead_letter_key_and_bucket(config: &aws_config::SdkConfig) -> (String, String) {
    // CreateSecret as the SDK sends it (moto does not check signatures; the tests link
    // no Secrets Manager client of their own).
    let endpoint = config
        .endpoint_url()
        .expect("moto endpoint")
        .trim_start_matches("http://")
        .to_owned();
    let body = serde_json::json!({
        "Name": "weir-dead-letter-key",
        "SecretString": "weir-test-dead-letter-key-0123456789abcdef",
    })
    .to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {endpoint}\r\nX-Amz-Target: secretsmanager.CreateSecret\r\nContent-Type: application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=local/20261130/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(&endpoint).expect("moto");
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply");
    let json = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let secret = serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|v| v["ARN"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("CreateSecret: {reply}"));
    weir_aws::client::s3(config)
        .create_bucket()
        .bucket("weir-dead-letters")
        .send()
        .await
        .expect("bucket");
    (secret, "weir-dead-letters".to_owned())
}

/// Serves the real bootstrap binary through cargo-lambda's Runtime API emulator, invokes it
/// once per event file in turn, and returns each response with the function's stdout. A
/// failed invocation's response is `{"invokeError": <what cargo lambda printed>}`.
fn invoke_bootstrap(
    manifest: &std::path::Path,
    moto_endpoint: &str,
    env: &[(&str, &str)],
    events: &[std::path::PathBuf],
) -> (Vec<Value>, String) {
    let port = free_port();
    let cargo_lambda = venv_tool("cargo-lambda");
    let _emulator = Killed(
        Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo lambda watch starts"),
    );
    wait_for_port(port, Duration::from_secs(60), "cargo lambda watch");

    let mut command = Command::new(env!("CARGO_BIN_EXE_bootstrap"));
    command
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("WEIR_MANIFEST", manifest)
        .env("AWS_ENDPOINT_URL", moto_endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut function = Killed(command.spawn().expect("bootstrap starts"));

    let mut responses = Vec::new();
    for event in events {
        let invoke = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "invoke",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
                "--data-file",
            ])
            .arg(event)
            .arg("_")
            .current_dir(root())
            .output()
            .expect("cargo lambda invoke runs");
        let stdout = String::from_utf8_lossy(&invoke.stdout).into_owned();
        if !invoke.status.success() {
            responses.push(serde_json::json!({
                "invokeError": format!("{stdout} {}", String::from_utf8_lossy(&invoke.stderr))
            }));
            continue;
        }
        responses
            .push(serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}")));
    }
    let _ = function.0.kill();
    let mut logs = String::new();
    if let Some(mut out) = function.0.stdout.take() {
        let _ = out.read_to_string(&mut logs);
    }
    (responses, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_binary_answers_batch_item_failures_through_the_runtime_api() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let events = aws_sdk_eventbridge::Client::new(&config);
    events
        .create_event_bus()
        .name("weir-boot")
        .send()
        .await
        .expect("bus");
    // A dead-letter queue that does not exist: the bad record's dead letter cannot be
    // kept, so the function must hand that record back to Lambda.
    let missing_dlq = format!("{}/123456789012/missing-dlq", moto.endpoint());
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(
        dir.path(),
        "weir-boot",
        Some(&missing_dlq),
        &["mapping"],
        "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"CustomerChanged\", fields = { Name = \"/name\", LTV = \"/lifetimeValue\" } }\n",
    );

    let (secret, bucket) = dead_letter_key_and_bucket(&config).await;
    let (responses, logs) = invoke_bootstrap(
        &manifest,
        &moto.endpoint(),
        &[
            ("WEIR_DEAD_LETTER_KEY", &secret),
            ("WEIR_DEAD_LETTER_BUCKET", &bucket),
        ],
        &[root().join("tests/events/one-bad-record.json")],
    );
    assert_eq!(
        responses[0],
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": "200000000000000000002"}]}),
        "function output: {logs}"
    );

    // Its stdout is CloudWatch's: JSON log lines and one EMF document per invocation.
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        lines.len(),
        logs.lines().count(),
        "every line is JSON: {logs}"
    );
    let emf: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("_aws").is_some() && l.get("Tenant").is_none())
        .collect();
    assert_eq!(emf.len(), 1, "{logs}");
    assert_eq!(
        (
            emf[0]["Records"].as_u64(),
            emf[0]["Published"].as_u64(),
            emf[0]["Retried"].as_u64(),
            emf[0]["EntriesPublished"].as_u64()
        ),
        (Some(3), Some(2), Some(1), Some(2))
    );
    // At start it said how many instances it keeps warm, sized from the memory Lambda
    // gives it (AWS_LAMBDA_FUNCTION_MEMORY_SIZE: 1024 above).
    let sized = lines
        .iter()
        .find(|l| l["message"] == "plugin instances sized from the function's memory")
        .unwrap_or_else(|| panic!("no line saying how the instances were sized: {logs}"));
    assert_eq!(
        sized["warm"],
        weir_core::pipeline::WarmBudget::for_memory_mb(1024).to_string(),
        "{sized}"
    );
    let done = lines
        .iter()
        .find(|l| l["message"] == "batch done")
        .expect("a summary log line");
    assert_eq!(done["level"], "INFO");
    assert!(
        done["span"]["requestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{done}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "ERROR" && l["kind"] == "decode"),
        "the unkept dead letter is logged: {logs}"
    );
}

/// Coalescing in the function: each invocation's EMF document counts its coalesced records
/// (per tenant too), and nothing coalesces across invocations: the same item changed in
/// two batches is published once from each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_counts_coalesced_records_in_emf_per_batch() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let (sqs, urls, dlq) =
        bus_queues_and_dead_letters(&config, "weir-coalesce", &[("CustomerChanged", "acme")]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(
        dir.path(),
        "weir-coalesce",
        Some(&dlq),
        &["mapping"],
        "[tenants.acme]\nplugin = \"mapping\"\ncoalesce = [\"crm\"]\nconfig = { detail_type = \"CustomerChanged\", destination = \"crm\", fields = { Name = \"/name\" } }\n",
    );
    let change = |seq, kind, name| item_change(seq, kind, "acme", "A", name, serde_json::json!({}));
    // First batch: A inserted and modified twice (two of its changes coalesced), B inserted.
    let first = serde_json::json!({"Records": [
        change(1, "INSERT", "A v1"), change(2, "MODIFY", "A v2"),
        item_change(3, "INSERT", "acme", "B", "B v1", serde_json::json!({})),
        change(4, "MODIFY", "A v3"),
    ]});
    // Second batch: A modified once more.
    let second = serde_json::json!({"Records": [change(5, "MODIFY", "A v4")]});
    let files: Vec<std::path::PathBuf> = [("first.json", first), ("second.json", second)]
        .into_iter()
        .map(|(name, event)| {
            let path = dir.path().join(name);
            std::fs::write(&path, event.to_string()).expect("write");
            path
        })
        .collect();
    let (secret, bucket) = dead_letter_key_and_bucket(&config).await;
    let (responses, logs) = invoke_bootstrap(
        &manifest,
        &moto.endpoint(),
        &[
            ("WEIR_TENANT_METRICS", "1"),
            ("WEIR_DEAD_LETTER_KEY", &secret),
            ("WEIR_DEAD_LETTER_BUCKET", &bucket),
        ],
        &files,
    );
    for r in &responses {
        assert_eq!(r["batchItemFailures"], serde_json::json!([]), "{logs}");
    }
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let emf = |tenant: bool| -> Vec<(u64, u64, u64)> {
        lines
            .iter()
            .filter(|l| l.get("_aws").is_some() && l.get("Tenant").is_some() == tenant)
            .map(|l| {
                let declared = l["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                    .as_array()
                    .expect("metrics")
                    .iter()
                    .any(|m| m["Name"] == "Coalesced");
                assert!(declared, "Coalesced is declared: {l}");
                (
                    l["Records"].as_u64().expect("Records"),
                    l["Published"].as_u64().expect("Published"),
                    l["Coalesced"].as_u64().expect("Coalesced"),
                )
            })
            .collect()
    };
    assert_eq!(emf(false), [(4, 2, 2), (1, 1, 0)], "{logs}");
    assert_eq!(emf(true), [(4, 2, 2), (1, 1, 0)], "{logs}");
    let done: Vec<u64> = lines
        .iter()
        .filter(|l| l["message"] == "batch done")
        .map(|l| l["coalesced"].as_u64().expect("coalesced in the log line"))
        .collect();
    assert_eq!(done, [2, 0]);
    // On the bus: B, A's third version (first batch), A's fourth (second batch).
    let messages = drain_queue(&sqs, &urls[0], 3, Duration::from_secs(30)).await;
    let mut names: Vec<String> = messages
        .iter()
        .map(|m| {
            let e: Value = serde_json::from_str(m.body().expect("body")).expect("JSON");
            e["detail"]["payload"]["Name"]
                .as_str()
                .expect("Name")
                .to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["A v3", "A v4", "B v1"]);
}

/// Issue 23, through the real binary: `{}` and a scheduled event are errors (they were
/// answered with success and zero records), and a record whose 1.1 MB dead letter SQS
/// cannot take is kept in S3 with a signed pointer in the queue instead of being handed
/// back to Lambda on every invocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_binary_refuses_unknown_events_and_keeps_huge_dead_letters_in_s3() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let (sqs, _urls, dlq) = bus_queues_and_dead_letters(&config, "weir-huge", &[]).await;
    let (secret, bucket) = dead_letter_key_and_bucket(&config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(
        dir.path(),
        "weir-huge",
        Some(&dlq),
        &["mapping"],
        "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"CustomerChanged\", fields = { Name = \"/name\", LTV = \"/lifetimeValue\" } }\n",
    );
    let mut huge = stream_record(
        7,
        "huge",
        "globex",
        serde_json::json!({"lifetimeValue": {"N": "12abc"}}),
    );
    huge["dynamodb"]["OldImage"] = serde_json::json!({"blob": {"S": "x".repeat(1_100_000)}});
    let events = [
        ("empty.json", serde_json::json!({})),
        (
            "scheduled.json",
            serde_json::json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}),
        ),
        ("huge.json", serde_json::json!({"Records": [huge]})),
    ];
    let files: Vec<std::path::PathBuf> = events
        .iter()
        .map(|(name, event)| {
            let path = dir.path().join(name);
            std::fs::write(&path, event.to_string()).expect("write");
            path
        })
        .collect();
    let (responses, logs) = invoke_bootstrap(
        &manifest,
        &moto.endpoint(),
        &[
            ("WEIR_DEAD_LETTER_KEY", &secret),
            ("WEIR_DEAD_LETTER_BUCKET", &bucket),
        ],
        &files,
    );
    for (r, says) in responses.iter().zip(["it has no keys", r#""detail-type""#]) {
        let error = r["invokeError"]
            .as_str()
            .unwrap_or_else(|| panic!("an error: {r} {logs}"));
        // cargo lambda wraps the message in a box: read it as one line.
        let error = error
            .replace('│', " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            error.contains("the event is not one weir handles"),
            "{error}"
        );
        assert!(error.contains(says), "{says}: {error}");
    }
    assert_eq!(
        responses[2],
        serde_json::json!({"batchItemFailures": []}),
        "{logs}"
    );
    let letters = drain_queue(&sqs, &dlq, 1, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1, "{logs}");
    let pointer: Value = serde_json::from_str(letters[0].body().expect("body")).expect("JSON");
    assert_eq!(pointer["reason"]["kind"], "decode");
    assert!(
        pointer["letterObject"]["bytes"]
            .as_u64()
            .is_some_and(|b| b > 1_100_000),
        "{pointer}"
    );
    assert!(
        letters[0]
            .message_attributes()
            .is_some_and(|a| a.contains_key(weir_aws::dead_letter::MAC_ATTRIBUTE)),
        "signed"
    );
}
