//! The real `bootstrap` binary, served by cargo-lambda's Lambda Runtime API emulator
//! (`cargo lambda watch --only-lambda-apis`) and invoked with `cargo lambda invoke`,
//! publishing to a real moto server.

mod support;

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

    let mut function = Killed(
        Command::new(env!("CARGO_BIN_EXE_bootstrap"))
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("WEIR_MANIFEST", &manifest)
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bootstrap starts"),
    );

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
        .arg(root().join("tests/events/one-bad-record.json"))
        .arg("_")
        .current_dir(root())
        .output()
        .expect("cargo lambda invoke runs");
    let _ = function.0.kill();
    let mut logs = String::new();
    if let Some(mut out) = function.0.stdout.take() {
        let _ = out.read_to_string(&mut logs);
    }
    let stdout = String::from_utf8_lossy(&invoke.stdout);
    assert!(
        invoke.status.success(),
        "invoke failed: {stdout} {} / function: {logs}",
        String::from_utf8_lossy(&invoke.stderr)
    );
    let response: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        response,
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
