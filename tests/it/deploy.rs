//! Deployment: `examples/deploy/template.yaml` and `weir infra`'s output lint clean with
//! cfn-lint and `sam validate --lint` (both from `.venv`, installed by `./dev test`, both
//! offline), the template embeds exactly what `weir infra` prints for `examples/weir.toml`,
//! and `[destinations]` is enforced: `weir check` reports allow-lists naming undefined
//! destinations, and the pipeline dead-letters events for them.
//!
//! After changing the example manifest's destinations, rewrite the template's generated
//! block with `WEIR_UPDATE_GOLDEN=1 cargo test -p weir --test it deploy::` and review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{plugin, root, venv_tool, weir_output};
use serde_json::Value;

const BEGIN: &str = weir::infra::BEGIN_MARKER;
const END: &str = weir::infra::END_MARKER;

fn template_path() -> PathBuf {
    root().join("examples/deploy/template.yaml")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `weir infra --manifest examples/weir.toml`, which must succeed.
fn example_infra() -> String {
    let out = weir_output(&["infra", "--manifest", "examples/weir.toml"]);
    assert!(
        out.status.success(),
        "weir infra failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The lines from the BEGIN marker to the END marker, both included, and where they sit.
fn generated_block(yaml: &str) -> (usize, usize) {
    let start = yaml
        .find(&format!("{BEGIN}\n"))
        .unwrap_or_else(|| panic!("no line {BEGIN:?}"));
    let end_line = format!("{END}\n");
    let end = yaml[start..]
        .find(&end_line)
        .map(|i| start + i + end_line.len())
        .unwrap_or_else(|| panic!("no line {END:?} after the BEGIN marker"));
    assert_eq!(
        yaml.matches(BEGIN).count(),
        1,
        "exactly one generated block expected"
    );
    (start, end)
}

fn write_temp(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

/// Runs a venv tool with a clean, offline-friendly environment.
fn run_tool(tool: &str, args: &[&str], home: &Path) -> Output {
    Command::new(venv_tool(tool))
        .args(args)
        .current_dir(root())
        .env("HOME", home)
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .env("AWS_REGION", "eu-west-1")
        .env("SAM_CLI_TELEMETRY", "0")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs: {e}"))
}

fn report(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// The template as JSON, its short-form tags (`!Sub`, `!If`) read by cfn-lint's own
/// decoder as their long forms (`Fn::Sub`, `Fn::If`).
fn template_json() -> Value {
    let out = Command::new(venv_tool("python"))
        .args([
            "-c",
            "import json, sys\nfrom cfnlint.decode import decode\nt, m = decode(sys.argv[1])\nassert not m, m\nprint(json.dumps(t))",
        ])
        .arg(template_path())
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", report(&out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Resolves the two path forms the backfill map's ItemSelector uses: `$.x` (the
/// execution's input) and `$$.Map.Item.Value.x` (one line of `manifest-files.json`).
fn select(selector: &Value, input: &Value, item: &Value) -> Value {
    match selector {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| match k.strip_suffix(".$") {
                    Some(name) => {
                        let path = v.as_str().expect("a path");
                        let value = if let Some(f) = path.strip_prefix("$$.Map.Item.Value.") {
                            item[f].clone()
                        } else if let Some(f) = path.strip_prefix("$.") {
                            input[f].clone()
                        } else {
                            panic!("unexpected path {path}")
                        };
                        assert!(!value.is_null(), "{path} selects nothing");
                        (name.to_owned(), value)
                    }
                    None => (k.clone(), select(v, input, item)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The template's backfill state machine sends the function the task it takes, loops on
/// the task's own `next` until `done`, runs no faster than the slowest destination, and
/// exists (with the function's read access to exports) only when an export bucket is named.
#[test]
fn the_backfill_state_machine_invokes_the_task_the_function_takes() {
    let t = template_json();
    assert_eq!(
        t["Conditions"]["HasBackfill"],
        serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "BackfillExportBucket"}, ""]}]})
    );
    let machine = &t["Resources"]["WeirBackfill"];
    assert_eq!(machine["Type"], "AWS::StepFunctions::StateMachine");
    assert_eq!(machine["Condition"], "HasBackfill");
    assert_eq!(
        t["Resources"]["WeirBackfillRole"]["Condition"],
        "HasBackfill"
    );
    let definition = &machine["Properties"]["Definition"];
    let map = &definition["States"][definition["StartAt"].as_str().expect("start")];
    assert_eq!(map["Type"], "Map");
    assert_eq!(
        map["ItemProcessor"]["ProcessorConfig"]["Mode"],
        "DISTRIBUTED"
    );
    assert_eq!(map["ItemReader"]["ReaderConfig"]["InputType"], "JSONL");

    // One line of an export's manifest-files.json, as AWS documents it, and an execution's
    // input as docs/DEPLOY.md gives it.
    let line = serde_json::json!({
        "itemCount": 1000, "md5Checksum": "b3ObyP6Gfk5V1Aw7Sqf1wg==", "etag": "0f0e3e8b1f4a",
        "dataFileS3Key": "exports/AWSDynamoDB/01700000000000-abcd1234/data/x.json.gz"
    });
    let input = serde_json::json!({
        "bucket": "exports",
        "manifestFilesKey": "exports/AWSDynamoDB/01700000000000-abcd1234/manifest-files.json",
        "export": "s3://exports/exports/AWSDynamoDB/01700000000000-abcd1234",
        "run": "onboarding", "keys": ["tenantId", "customerId"]
    });
    let mut state = select(&map["ItemSelector"], &input, &line);
    let processor = &map["ItemProcessor"];
    let invoke = &processor["States"][processor["StartAt"].as_str().expect("start")];
    assert_eq!(invoke["Resource"], "arn:aws:states:::lambda:invoke");
    let payload_path = invoke["Parameters"]["Payload.$"].as_str().expect("payload");
    assert_eq!(payload_path, "$.next");
    assert_eq!(invoke["OutputPath"], "$.Payload");
    let payload = state["next"].clone();
    let task = match serde_json::from_value(payload.clone()).expect("the function takes it") {
        weir::lambda::Invocation::Backfill { task } => task,
        weir::lambda::Invocation::Stream(_) => panic!("read as a stream batch: {payload}"),
    };
    assert_eq!(task.data_file_s3_key, line["dataFileS3Key"]);
    assert_eq!(task.from, 0);

    // The loop: the choice goes back to the invocation while the answer says not done,
    // and the answer's `next` is again a task the function takes.
    let more = &processor["States"][invoke["Next"].as_str().expect("next")];
    assert_eq!(more["Type"], "Choice");
    let again = &more["Choices"][0];
    assert_eq!(
        (&again["Variable"], &again["BooleanEquals"]),
        (&Value::from("$.done"), &Value::from(false))
    );
    assert_eq!(again["Next"], processor["StartAt"]);
    assert_eq!(state["done"], false);
    let counts = weir_core::batch::Counts {
        records: 400,
        published: 100,
        filtered: 300,
        ..Default::default()
    };
    let answer = serde_json::to_value(weir::lambda::TaskReport {
        data_file_s3_key: task.data_file_s3_key.clone(),
        items: 1000,
        counts,
        done: false,
        next: Some(weir::lambda::Continuation {
            task: weir::lambda::BackfillTask {
                from: 400,
                counts,
                ..task.clone()
            },
        }),
    })
    .expect("JSON");
    state = answer;
    match serde_json::from_value(state["next"].clone()).expect("the function takes it") {
        weir::lambda::Invocation::Backfill { task } => {
            assert_eq!((task.from, task.counts.records), (400, 400));
        }
        weir::lambda::Invocation::Stream(_) => panic!("read as a stream batch"),
    }

    // The pace: tasks at once times each task's rate is at most the slowest destination's.
    let manifest = std::fs::read_to_string(root().join("examples/weir.toml")).expect("manifest");
    let slowest = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("rate_limit_per_second = "))
        .map(|n| n.trim().parse::<f64>().expect("a number"))
        .fold(f64::INFINITY, f64::min);
    let concurrency = map["MaxConcurrency"].as_f64().expect("MaxConcurrency");
    let rate = task
        .rate_per_second
        .expect("paced: the example's destinations have limits");
    assert!(
        concurrency * rate <= slowest,
        "{concurrency} x {rate}/s > {slowest}/s"
    );

    // The function may read exports only from the named bucket, and only then.
    let statements = t["Resources"]["FunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"]
        .as_array()
        .expect("statements");
    let read = statements
        .iter()
        .find_map(|s| s.get("Fn::If").filter(|i| i[0] == "HasBackfill"))
        .expect("a statement under HasBackfill");
    assert_eq!(read[1]["Action"], "s3:GetObject");
    assert_eq!(read[2], serde_json::json!({"Ref": "AWS::NoValue"}));
}

#[test]
fn the_template_embeds_exactly_what_weir_infra_prints() {
    let generated = example_infra();
    let (g_start, g_end) = generated_block(&generated);
    let block = &generated[g_start..g_end];
    let template = std::fs::read_to_string(template_path()).expect("read template");
    let (t_start, t_end) = generated_block(&template);
    if std::env::var_os("WEIR_UPDATE_GOLDEN").is_some() {
        let updated = format!("{}{block}{}", &template[..t_start], &template[t_end..]);
        std::fs::write(template_path(), updated).expect("rewrite template");
        return;
    }
    assert!(
        template[t_start..t_end] == *block,
        "examples/deploy/template.yaml's generated block differs from `weir infra --manifest examples/weir.toml`: \
         regenerate it with WEIR_UPDATE_GOLDEN=1 cargo test -p weir --test it deploy::\n--- template\n{}\n--- weir infra\n{block}",
        &template[t_start..t_end]
    );
    // Every destination of the example is in the block, with its rule and dead-letter queue.
    for id in ["Salesforce", "Slack", "CrmWebhook"] {
        for suffix in [
            "Connection",
            "ApiDestination",
            "Rule",
            "DeadLetterQueue",
            "DeadLetterQueuePolicy",
            "DeadLetterAlarm",
        ] {
            assert!(
                block.contains(&format!("\n  {id}{suffix}:\n")),
                "no {id}{suffix} in\n{block}"
            );
        }
    }
}

#[test]
fn cfn_lint_passes_on_the_template_and_on_weir_infra_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = write_temp(dir.path(), "infra.yaml", &example_infra());
    let template = template_path();
    for file in [&template, &generated] {
        let out = run_tool(
            "cfn-lint",
            &["--format", "parseable", "--", &file.display().to_string()],
            dir.path(),
        );
        assert!(
            out.status.success(),
            "cfn-lint found problems in {}:\n{}",
            file.display(),
            report(&out)
        );
    }
    // The same lint does fail on a broken copy, so a pass above means something.
    let broken = write_temp(
        dir.path(),
        "broken.yaml",
        &std::fs::read_to_string(&generated)
            .expect("read")
            .replacen("HttpMethod: PATCH", "HttpMethod: FETCH", 1)
            .replacen("MaximumRetryAttempts: 185", "MaximumRetryAttempts: 186", 1),
    );
    let out = run_tool(
        "cfn-lint",
        &["--format", "parseable", "--", &broken.display().to_string()],
        dir.path(),
    );
    let found = text(&out.stdout);
    assert!(
        !out.status.success(),
        "cfn-lint passed a broken template:\n{}",
        report(&out)
    );
    assert!(found.contains("FETCH"), "{}", report(&out));
    assert!(found.contains("186"), "{}", report(&out));
}

#[test]
fn sam_validate_lint_passes_on_the_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_tool(
        "sam",
        &[
            "validate",
            "--lint",
            "--template-file",
            &template_path().display().to_string(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "sam validate --lint failed:\n{}",
        report(&out)
    );
    assert!(
        text(&out.stdout).contains("is a valid SAM Template"),
        "{}",
        report(&out)
    );
}

/// The example manifest, with `edit` applied, in a temp dir with absolute plugin paths.
fn edited_example(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(root().join("examples/weir.toml")).expect("read");
    let text = text.replace(
        "\"../target/plugins/",
        &format!("\"{}/", root().join("target/plugins").display()),
    );
    write_temp(dir, "weir.toml", &edit(text))
}

/// Drops one `[destinations.<name>]` section (up to the next section or the end).
fn without_destination(text: String, name: &str) -> String {
    let header = format!("[destinations.{name}]\n");
    let start = text.find(&header).unwrap_or_else(|| panic!("no {header}"));
    let rest = &text[start + header.len()..];
    let end = rest
        .find("\n[")
        .map_or(text.len(), |i| start + header.len() + i + 1);
    format!("{}{}", &text[..start], &text[end..])
}

#[test]
fn weir_check_reports_allow_lists_naming_undefined_destinations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = edited_example(dir.path(), |t| {
        t.replace(
            "[tenants.umbrella]\n",
            "[tenants.umbrella]\ndestinations = [\"slack\", \"teams\", \"salesforce\"]\n",
        )
    });
    let out = weir_output(&["check", "--manifest", &manifest.display().to_string()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", report(&out));
    assert!(
        stdout.contains(
            "tenants.umbrella.destinations: names \"teams\", which is not in [destinations]"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "tenants.umbrella.destinations: names \"salesforce\", which is for tenant \"acme\" only"
        ),
        "{stdout}"
    );
    // weir infra refuses the same manifest, naming the problem.
    let out = weir_output(&["infra", "--manifest", &manifest.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", report(&out));
    assert!(text(&out.stderr).contains("\"teams\""), "{}", report(&out));
    assert!(out.stdout.is_empty(), "{}", report(&out));
}

#[test]
fn weir_infra_needs_destinations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = edited_example(dir.path(), |t| {
        let t = without_destination(t, "salesforce");
        let t = without_destination(t, "slack");
        without_destination(t, "crm-webhook")
    });
    let out = weir_output(&["infra", "--manifest", &manifest.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", report(&out));
    assert!(
        text(&out.stderr).contains("no [destinations.<name>] sections"),
        "{}",
        report(&out)
    );
}

#[test]
fn events_for_an_undefined_destination_are_dead_lettered() {
    plugin("mapping");
    let dir = tempfile::tempdir().expect("tempdir");
    // Without [destinations.crm-webhook], globex's mapping events have nowhere to go.
    let manifest = edited_example(dir.path(), |t| without_destination(t, "crm-webhook"));
    let letters = dir.path().join("dead-letters");
    let out = weir_output(&[
        "run",
        "--manifest",
        &manifest.display().to_string(),
        "--event",
        "examples/events/customers.json",
        "--dead-letter-dir",
        &letters.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", report(&out));
    let entries: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("entry is JSON"))
        .collect();
    assert!(!entries.is_empty(), "acme's events still publish");
    for entry in &entries {
        let detail: Value =
            serde_json::from_str(entry["Detail"].as_str().expect("Detail")).expect("detail");
        assert_eq!(detail["metadata"]["tenant"], "acme", "{entry}");
    }
    let mut reasons = Vec::new();
    for file in std::fs::read_dir(&letters).expect("dead letters written") {
        let letter: Value = serde_json::from_str(
            &std::fs::read_to_string(file.expect("entry").path()).expect("read"),
        )
        .expect("dead letter is JSON");
        assert_eq!(letter["tenant"], "globex", "{letter}");
        assert_eq!(letter["reason"]["kind"], "invalid-output", "{letter}");
        reasons.push(
            letter["reason"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(reasons.len(), 3, "globex's three records: {reasons:?}");
    for r in &reasons {
        assert!(
            r.contains("\"crm-webhook\"") && r.contains("allowed: slack"),
            "{r}"
        );
    }
}

// ---- optional: the destination part, delivered by LocalStack ------------------------------

/// Deploys `weir infra`'s output to LocalStack (CloudFormation, EventBridge, Secrets
/// Manager), publishes the example event with `weir run --publish`, and checks what a local
/// token endpoint and webhook receive: the OAuth client-credentials exchange with the
/// secret, `Authorization: Bearer <token>`, the API key from its secret, and bodies that are
/// exactly the plugins' payloads (`InputPath`). Skips, saying why, where LocalStack cannot
/// start (it needs Python 3.13 and the packages in tests/requirements-localstack.txt).
#[test]
fn localstack_delivers_plugin_payloads_with_the_connections_auth() {
    plugin("salesforce-account");
    plugin("mapping");
    let python = match localstack_python() {
        Ok(p) => p,
        Err(why) => {
            println!(
                "SKIPPED localstack_delivers_plugin_payloads_with_the_connections_auth: {why}"
            );
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let localstack = match LocalStack::start(&python, dir.path()) {
        Ok(l) => l,
        Err(why) => {
            println!(
                "SKIPPED localstack_delivers_plugin_payloads_with_the_connections_auth: {why}"
            );
            return;
        }
    };
    let hooks = Webhook::start();
    let local = format!("http://127.0.0.1:{}", hooks.port);

    // The generated template, pointed at the local endpoints. LocalStack's CloudFormation
    // needs the Name that AWS's makes up, so each Connection and ApiDestination gets one.
    let manifest = edited_example(dir.path(), |t| t);
    let out = weir_output(&["infra", "--manifest", &manifest.display().to_string()]);
    assert!(out.status.success(), "{}", report(&out));
    let template = text(&out.stdout)
        .replace("https://example.my.salesforce.com", &local)
        .replace("https://crm.example.com", &local);
    let template = name_resources_for_localstack(&template);
    let template_file = write_temp(dir.path(), "destinations.yaml", &template);
    let deploy = write_temp(dir.path(), "deploy.py", DEPLOY_PY);
    let out = Command::new(&python)
        .arg(&deploy)
        .arg(&localstack.endpoint)
        .arg(&template_file)
        .arg(format!("{local}/slack"))
        .output()
        .expect("deploy script runs");
    assert!(
        out.status.success(),
        "deploying to LocalStack failed:\n{}",
        report(&out)
    );

    // The real pipeline publishes the example event to LocalStack's bus.
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--manifest", &manifest.display().to_string()])
        .args(["--event", "examples/events/customers.json", "--publish"])
        .arg("--dead-letter-dir")
        .arg(dir.path().join("dead-letters"))
        .current_dir(root())
        .env("AWS_ENDPOINT_URL", &localstack.endpoint)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs");
    assert!(out.status.success(), "weir run --publish: {}", report(&out));
    let published: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("entry is JSON"))
        .collect();
    let payloads = |detail_type: &str| -> Vec<Value> {
        published
            .iter()
            .filter(|e| e["DetailType"] == detail_type)
            .map(|e| {
                let d: Value =
                    serde_json::from_str(e["Detail"].as_str().expect("Detail")).expect("detail");
                d["payload"].clone()
            })
            .collect()
    };
    let upserts = payloads("SalesforceAccountUpsert");
    let customers = payloads("CustomerChanged");
    assert_eq!((upserts.len(), customers.len()), (2, 3), "{published:?}");

    // 2 Salesforce upserts, 3 CRM webhook calls, and at least one token request.
    let mut salesforce = Vec::new();
    let mut crm = Vec::new();
    let mut tokens = Vec::new();
    while salesforce.len() < 2 || crm.len() < 3 {
        let request = hooks
            .next(std::time::Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "LocalStack delivered {} upserts and {} CRM calls within 60 s; log:\n{}",
                    salesforce.len(),
                    crm.len(),
                    localstack.log_tail()
                )
            });
        if request.path.ends_with("/oauth2/token") {
            tokens.push(request);
        } else if request.path.starts_with("/services/data/") {
            salesforce.push(request);
        } else if request.path.starts_with("/hooks/customers") {
            crm.push(request);
        } else {
            panic!("unexpected request {} {}", request.method, request.path);
        }
    }
    assert!(!tokens.is_empty(), "no OAuth token request");
    for t in &tokens {
        let form = &t.body;
        assert!(
            form.contains("client_credentials")
                && form.contains("weir-connected-app")
                && form.contains("secret-from-secrets-manager"),
            "token request lacks the client credentials: {form}"
        );
    }
    let mut bodies = Vec::new();
    for r in &salesforce {
        assert_eq!(r.method, "PATCH", "{r:?}");
        assert!(
            r.path
                .starts_with("/services/data/v61.0/sobjects/Account/Weir_Customer_Id__c/"),
            "{r:?}"
        );
        assert_eq!(
            r.header("authorization"),
            Some("Bearer local-token-1"),
            "{r:?}"
        );
        bodies.push(serde_json::from_str::<Value>(&r.body).expect("JSON body"));
        println!(
            "LocalStack sent Idempotency-Key: {:?} (EventBridge documents target JSON paths as evaluated at delivery; LocalStack 2026.3 sends them as written)",
            r.header("idempotency-key")
        );
    }
    let expected: Vec<Value> = upserts.iter().map(|p| p["body"].clone()).collect();
    assert_same_set(
        bodies,
        expected,
        "Salesforce bodies are the plugin's payload.body",
    );
    let mut bodies = Vec::new();
    for r in &crm {
        assert_eq!(r.method, "POST", "{r:?}");
        assert_eq!(
            r.header("x-api-key"),
            Some("crm-key-from-secrets-manager"),
            "{r:?}"
        );
        bodies.push(serde_json::from_str::<Value>(&r.body).expect("JSON body"));
    }
    assert_same_set(bodies, customers, "CRM bodies are the plugin's payload");
}

fn assert_same_set(got: Vec<Value>, want: Vec<Value>, what: &str) {
    // The webhook's body was re-serialised by LocalStack (Python writes 100000.00 as
    // 100000.0), so numbers compare by value, not by text.
    let mut got: Vec<Value> = got.iter().map(numbers_by_value).collect();
    let mut want: Vec<Value> = want.iter().map(numbers_by_value).collect();
    got.sort_by_key(Value::to_string);
    want.sort_by_key(Value::to_string);
    assert_eq!(got, want, "{what}");
}

/// `v` with every number as the f64 it denotes.
fn numbers_by_value(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.iter().map(numbers_by_value).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), numbers_by_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Gives each Connection and ApiDestination a `Name` (LocalStack's CloudFormation requires
/// one; AWS's generates it).
fn name_resources_for_localstack(template: &str) -> String {
    let mut out = String::new();
    let mut pending: Option<String> = None;
    for line in template.lines() {
        out.push_str(line);
        out.push('\n');
        if let Some(id) = line
            .strip_prefix("  ")
            .and_then(|l| l.strip_suffix(':'))
            .filter(|l| {
                !l.starts_with(' ') && (l.ends_with("Connection") || l.ends_with("ApiDestination"))
            })
        {
            pending = Some(id.to_owned());
        } else if line == "    Properties:"
            && let Some(id) = pending.take()
        {
            out.push_str(&format!("      Name: weir-test-{id}\n"));
        }
    }
    out
}

/// Creates the secrets and the bus, deploys the template and waits for the stack.
const DEPLOY_PY: &str = r#"
import json, sys, time
import boto3
endpoint, template, slack = sys.argv[1], sys.argv[2], sys.argv[3]
kw = dict(endpoint_url=endpoint, region_name="eu-west-1",
          aws_access_key_id="test", aws_secret_access_key="test")
sm = boto3.client("secretsmanager", **kw)
for name, value in [("weir/salesforce", {"client_secret": "secret-from-secrets-manager"}),
                    ("weir/slack-webhook", {"url": slack}),
                    ("weir/crm-webhook", {"api_key": "crm-key-from-secrets-manager"})]:
    sm.create_secret(Name=name, SecretString=json.dumps(value))
boto3.client("events", **kw).create_event_bus(Name="weir-demo")
cf = boto3.client("cloudformation", **kw)
cf.create_stack(StackName="weir-destinations", TemplateBody=open(template).read(),
                Parameters=[{"ParameterKey": "AlarmTopic",
                             "ParameterValue": "arn:aws:sns:eu-west-1:000000000000:alarms"}],
                Capabilities=["CAPABILITY_IAM"])
deadline = time.time() + 120
while True:
    status = cf.describe_stacks(StackName="weir-destinations")["Stacks"][0]["StackStatus"]
    if not status.endswith("_IN_PROGRESS") or time.time() > deadline:
        break
    time.sleep(0.5)
if status != "CREATE_COMPLETE":
    for e in cf.describe_stack_events(StackName="weir-destinations")["StackEvents"]:
        print(e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason"))
    sys.exit(f"stack status {status}")
"#;

/// Python 3.13 with LocalStack, in target/localstack-venv (made on first use from
/// tests/requirements-localstack.txt), or why not.
fn localstack_python() -> Result<PathBuf, String> {
    let venv = root().join("target/localstack-venv");
    let python = venv.join("bin/python");
    let requirements = root().join("tests/requirements-localstack.txt");
    let stamp = venv.join(".requirements");
    let wanted =
        std::fs::read(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    if python.exists() && std::fs::read(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    let base = python313()
        .ok_or("no Python 3.13 (python3.13 on PATH or under ~/.pyenv/versions/3.13*)")?;
    let status = Command::new(&base)
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("{}: {e}", base.display()))?;
    if !status.success() {
        return Err(format!("{} -m venv failed", base.display()));
    }
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip install -r tests/requirements-localstack.txt failed: {}",
            text(&out.stderr)
        ));
    }
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

fn python313() -> Option<PathBuf> {
    if let Ok(out) = Command::new("python3.13")
        .arg("-c")
        .arg("import sys; print(sys.executable)")
        .output()
        && out.status.success()
    {
        return Some(PathBuf::from(text(&out.stdout).trim()));
    }
    let home = std::env::var_os("HOME")?;
    let versions = Path::new(&home).join(".pyenv/versions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(versions)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("3.13"))
        })
        .map(|p| p.join("bin/python3.13"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

/// A LocalStack of its own on a free port (events, SQS, Secrets Manager, CloudFormation,
/// IAM, STS, CloudWatch), stopped when dropped.
struct LocalStack {
    child: std::process::Child,
    endpoint: String,
    log: PathBuf,
}

impl LocalStack {
    fn start(python: &Path, dir: &Path) -> Result<LocalStack, String> {
        let port = crate::support::free_port();
        let log = dir.join("localstack.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(python)
            .args(["-m", "localstack.runtime.main"])
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("DNS_ADDRESS", "0")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("DISABLE_EVENTS", "1")
            .env(
                "SERVICES",
                "events,sqs,secretsmanager,cloudformation,iam,sts,cloudwatch",
            )
            .env("LOCALSTACK_VOLUME_DIR", dir.join("volume"))
            .env("TMPDIR", dir)
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("cannot start LocalStack: {e}"))?;
        let localstack = LocalStack {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        let started = std::time::Instant::now();
        loop {
            if localstack.log_tail().contains("\nReady.") {
                return Ok(localstack);
            }
            if started.elapsed() > std::time::Duration::from_secs(90) {
                return Err(format!(
                    "LocalStack was not ready within 90 s:\n{}",
                    localstack.log_tail()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!("\n{}", lines[lines.len().saturating_sub(40)..].join("\n"))
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the local webhook received.
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A local HTTP endpoint: answers `.../oauth2/token` with a bearer token and everything
/// else with `{}`, and hands each request to the test.
struct Webhook {
    port: u16,
    requests: std::sync::mpsc::Receiver<Received>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, requests) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    if let Some(r) = serve(stream) {
                        let _ = tx.send(r);
                    }
                });
            }
        });
        Webhook { port, requests }
    }

    fn next(&self, limit: std::time::Duration) -> Option<Received> {
        self.requests.recv_timeout(limit).ok()
    }
}

fn serve(mut stream: std::net::TcpStream) -> Option<Received> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let reply = if path.ends_with("/oauth2/token") {
        r#"{"access_token":"local-token-1","token_type":"Bearer","expires_in":3600}"#
    } else {
        "{}"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    Some(Received {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Metrics AWS publishes for the resources the dashboard graphs, from AWS's metric lists:
/// - `AWS/Lambda`: "Types of metrics for Lambda functions" (Lambda Developer Guide,
///   monitoring-metrics-types.html): Errors, Throttles, Duration, IteratorAge;
/// - `AWS/Events`: "Monitoring Amazon EventBridge" (EventBridge User Guide,
///   eb-monitoring.html): Invocations, FailedInvocations, InvocationAttempts,
///   SuccessfulInvocationAttempts, RetryInvocationAttempts, InvocationsSentToDlq, with the
///   EventBusName and RuleName dimensions for a rule on a custom bus;
/// - `AWS/SQS`: "Available CloudWatch metrics for Amazon SQS" (SQS Developer Guide,
///   sqs-available-cloudwatch-metrics.html): ApproximateNumberOfMessagesVisible, by
///   QueueName.
const AWS_METRICS: &[(&str, &[&str], &[&str])] = &[
    (
        "AWS/Lambda",
        &["Errors", "Throttles", "Duration", "IteratorAge"],
        &["FunctionName"],
    ),
    (
        "AWS/Events",
        &[
            "Invocations",
            "FailedInvocations",
            "InvocationAttempts",
            "SuccessfulInvocationAttempts",
            "RetryInvocationAttempts",
            "InvocationsSentToDlq",
        ],
        &["EventBusName", "RuleName"],
    ),
    (
        "AWS/SQS",
        &["ApproximateNumberOfMessagesVisible"],
        &["QueueName"],
    ),
];

/// The dashboard names only metrics weir emits (its own EMF declaration says which) or AWS
/// publishes for that resource type, with their dimensions, and refers only to resources
/// and parameters the template has; each destination and tenant has its graphs.
#[test]
fn the_dashboard_graphs_only_real_metrics_of_resources_in_the_template() {
    let t = template_json();
    let dashboard = &t["Resources"]["WeirDashboard"];
    assert_eq!(dashboard["Type"], "AWS::CloudWatch::Dashboard");
    let sub = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_array()
        .expect("Fn::Sub [body, variables]");
    let body = sub[0].as_str().expect("the body");
    let variables = sub[1].as_object().expect("variables");

    // Every ${...}: a variable, a pseudo parameter, or a parameter or resource here.
    let resources = t["Resources"].as_object().expect("resources");
    let parameters = t["Parameters"].as_object().expect("parameters");
    let mut rest = body;
    let mut substituted = String::new();
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("closed") + start;
        let name = &rest[start + 2..end];
        let root_name = name.split('.').next().expect("a name");
        let known = variables.contains_key(name)
            || name.starts_with("AWS::")
            || (!name.contains('.') && parameters.contains_key(name))
            || resources.contains_key(root_name);
        assert!(
            known,
            "the dashboard refers to {name}, which the template lacks"
        );
        substituted.push_str(&rest[..start]);
        substituted.push_str(&format!("<{name}>"));
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    for (name, value) in variables {
        let target = value.to_string();
        let rule = name.trim_end_matches("Name");
        assert!(resources.contains_key(rule), "{name}: no resource {rule}");
        assert!(
            target.contains(&format!("\"Fn::GetAtt\":[\"{rule}\",\"Arn\"]")),
            "{name}: {target}"
        );
    }

    // weir's own metrics: what its EMF document declares.
    let emf: Value = serde_json::from_str(
        &weir::telemetry::InvocationMetrics {
            tenants: vec![("t".into(), weir_core::batch::Counts::default())],
            ..Default::default()
        }
        .emf("f", 0, true)[0],
    )
    .expect("EMF");
    let weir_metrics: Vec<String> = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .expect("declared")
        .iter()
        .map(|m| m["Name"].as_str().expect("name").to_owned())
        .collect();

    let body: Value = serde_json::from_str(&substituted).expect("the body is JSON");
    let mut graphed: Vec<(String, String, Vec<String>)> = Vec::new();
    for w in body["widgets"].as_array().expect("widgets") {
        for m in w["properties"]["metrics"].as_array().expect("metrics") {
            let parts: Vec<String> = m
                .as_array()
                .expect("a metric array")
                .iter()
                .map(|p| p.as_str().expect("text").to_owned())
                .collect();
            let (namespace, name) = (&parts[0], &parts[1]);
            let dimensions: Vec<String> = parts[2..].iter().step_by(2).cloned().collect();
            if namespace == weir::telemetry::METRICS_NAMESPACE {
                assert!(weir_metrics.contains(name), "weir emits no {name}");
                assert!(
                    dimensions == ["FunctionName"] || dimensions == ["FunctionName", "Tenant"],
                    "{name}: {dimensions:?}"
                );
            } else {
                let (_, names, dims) = AWS_METRICS
                    .iter()
                    .find(|(ns, ..)| ns == namespace)
                    .unwrap_or_else(|| panic!("a namespace nobody publishes: {namespace}"));
                assert!(names.contains(&name.as_str()), "{namespace} has no {name}");
                assert_eq!(dimensions, *dims, "{namespace} {name}");
            }
            graphed.push((namespace.clone(), name.clone(), parts[2..].to_vec()));
        }
    }
    // The function's four, weir's outcomes, each destination's rule and queue, each tenant.
    for m in ["Errors", "Throttles", "Duration", "IteratorAge"] {
        assert!(
            graphed
                .iter()
                .any(|(ns, n, _)| ns == "AWS/Lambda" && n == m),
            "{m}"
        );
    }
    for m in [
        "Records",
        "Published",
        "Filtered",
        "Coalesced",
        "DeadLettered",
        "Retried",
        "PluginTime",
    ] {
        assert!(
            graphed.iter().any(|(ns, n, _)| ns == "weir" && n == m),
            "{m}"
        );
    }
    for destination in ["CrmWebhook", "Salesforce", "Slack"] {
        assert!(
            graphed.iter().any(|(_, n, d)| n == "FailedInvocations"
                && d.contains(&format!("<{destination}RuleName>")))
        );
        assert!(
            graphed
                .iter()
                .any(|(_, n, d)| n == "ApproximateNumberOfMessagesVisible"
                    && d.contains(&format!("<{destination}DeadLetterQueue.QueueName>")))
        );
    }
    for tenant in ["acme", "globex", "umbrella"] {
        assert!(
            graphed
                .iter()
                .any(|(_, n, d)| n == "DeadLettered" && d.contains(&tenant.to_owned())),
            "{tenant}"
        );
    }
}

// ---- Manifest text in the template (issue 23, item 4) ----
//
// Every manifest string that reaches the template either is refused by `weir check` and
// `weir infra` with its key named, or reads back as exactly itself, as data, in every
// reader CloudFormation tooling uses: a YAML 1.2 reader (yaml-rust2), PyYAML's pure
// Python and libyaml loaders (YAML 1.1: U+0085, U+2028 and U+2029 are line breaks) and
// cfn-lint's own loader; and the dashboard's `Fn::Sub` body substitutes only weir's own
// references.

/// The strings of a small manifest that reach the template: its bus, its routes' sources,
/// its tenants' names (the first one owns destination `hook`), the detail types of both
/// destinations, `crm`'s OAuth scope and the path of its endpoint.
#[derive(Debug, Clone)]
struct ManifestStrings {
    bus: String,
    sources: Vec<String>,
    tenants: Vec<String>,
    detail_types: Vec<String>,
    scope: String,
    endpoint_path: String,
}

impl ManifestStrings {
    fn plain() -> Self {
        ManifestStrings {
            bus: "bus".into(),
            sources: vec!["weir.t".into()],
            tenants: vec!["acme".into()],
            detail_types: vec!["Changed".into()],
            scope: "api".into(),
            endpoint_path: "accounts".into(),
        }
    }

    fn endpoint(&self) -> String {
        format!("https://example.com/{}", self.endpoint_path)
    }

    /// The manifest, every string a TOML basic string with everything but printable ASCII
    /// escaped (TOML takes any character that way).
    fn toml(&self) -> String {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|s| toml_string(s))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut t = format!(
            "event_bus = {}\n[plugins.p]\npath = \"p.wasm\"\n",
            toml_string(&self.bus)
        );
        for (i, source) in self.sources.iter().enumerate() {
            t.push_str(&format!(
                "[[routes]]\ntable = \"T{i}\"\nsource = {}\ntenant = {{ attribute = \"tenantId\" }}\n",
                toml_string(source)
            ));
        }
        for tenant in &self.tenants {
            t.push_str(&format!(
                "[tenants.{}]\nplugin = \"p\"\n",
                toml_string(tenant)
            ));
        }
        t.push_str(&format!(
            "[destinations.crm]\nendpoint = {}\nmethod = \"POST\"\ndetail_types = [{}]\nrate_limit_per_second = 7\n\
             auth = {{ type = \"oauth_client_credentials\", token_url = \"https://example.com/token\", client_id = \"abc\", client_secret = {{ secret = \"crm\" }}, scope = {} }}\n",
            toml_string(&self.endpoint()),
            list(&self.detail_types),
            toml_string(&self.scope)
        ));
        t.push_str(&format!(
            "[destinations.hook]\nendpoint = \"https://example.com/hook\"\nmethod = \"PUT\"\ntenant = {}\ndetail_types = [{}]\nauth = {{ type = \"none\" }}\n",
            toml_string(&self.tenants[0]),
            list(&self.detail_types)
        ));
        t
    }

    /// What every reader must find in the template: the resources, by logical id and type,
    /// and each manifest string where weir puts it.
    fn expected(&self) -> Value {
        let mut resources = serde_json::Map::new();
        for id in ["Crm", "Hook"] {
            for (suffix, kind) in [
                ("Connection", "AWS::Events::Connection"),
                ("ApiDestination", "AWS::Events::ApiDestination"),
                ("InvokeRole", "AWS::IAM::Role"),
                ("Rule", "AWS::Events::Rule"),
                ("DeadLetterQueue", "AWS::SQS::Queue"),
                ("DeadLetterQueuePolicy", "AWS::SQS::QueuePolicy"),
                ("DeadLetterAlarm", "AWS::CloudWatch::Alarm"),
            ] {
                resources.insert(format!("{id}{suffix}"), Value::from(kind));
            }
        }
        resources.insert("WeirDashboard".into(), "AWS::CloudWatch::Dashboard".into());
        resources.insert("WeirBackfillRole".into(), "AWS::IAM::Role".into());
        resources.insert(
            "WeirBackfill".into(),
            "AWS::StepFunctions::StateMachine".into(),
        );
        let mut sources = self.sources.clone();
        sources.sort();
        sources.dedup();
        let mut tenants = self.tenants.clone();
        tenants.sort();
        tenants.dedup();
        tenants.retain(|t| t != "default");
        let pattern = |metadata: Value| {
            serde_json::json!({
                "source": sources,
                "detail-type": self.detail_types,
                "detail": { "metadata": metadata },
            })
        };
        serde_json::json!({
            "description": format!("weir destinations for event bus {}: crm, hook", self.bus),
            "bus": self.bus,
            "resources": resources,
            "crm_pattern": pattern(serde_json::json!({ "destination": ["crm"] })),
            "hook_pattern": pattern(serde_json::json!({
                "destination": ["hook"],
                "tenant": [self.tenants[0]],
            })),
            "crm_endpoint": self.endpoint(),
            "crm_scope": self.scope,
            "tenant_titles": tenants
                .iter()
                .map(|t| format!("tenant {t} (WEIR_TENANT_METRICS=1)"))
                .collect::<Vec<_>>(),
            "tenant_dimensions": tenants
                .iter()
                .flat_map(|t| std::iter::repeat_n(t.clone(), 5))
                .collect::<Vec<_>>(),
        })
    }
}

/// `s` as a TOML basic string, in printable ASCII.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// The same facts as [`ManifestStrings::expected`], as one reader read them from `t`.
fn probes(t: &Value) -> Value {
    let r = &t["Resources"];
    let resources: serde_json::Map<String, Value> = r
        .as_object()
        .unwrap_or_else(|| panic!("no Resources in {t}"))
        .iter()
        .map(|(id, res)| (id.clone(), res["Type"].clone()))
        .collect();
    let body = r["WeirDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no dashboard body in {t}"));
    let body: Value = serde_json::from_str(&fn_sub(body, t)).expect("the body is JSON");
    let mut tenant_titles = Vec::new();
    let mut tenant_dimensions = Vec::new();
    for w in body["widgets"].as_array().expect("widgets") {
        let title = w["properties"]["title"].as_str().expect("a title");
        if title.starts_with("tenant ") {
            tenant_titles.push(Value::from(title));
        }
        for m in w["properties"]["metrics"].as_array().expect("metrics") {
            let m = m.as_array().expect("a metric");
            for pair in m[2..].chunks(2) {
                if pair[0] == "Tenant" {
                    tenant_dimensions.push(pair[1].clone());
                }
            }
        }
    }
    serde_json::json!({
        "description": t["Description"],
        "bus": t["Parameters"]["EventBus"]["Default"],
        "resources": resources,
        "crm_pattern": r["CrmRule"]["Properties"]["EventPattern"],
        "hook_pattern": r["HookRule"]["Properties"]["EventPattern"],
        "crm_endpoint": r["CrmApiDestination"]["Properties"]["InvocationEndpoint"],
        "crm_scope": r["CrmConnection"]["Properties"]["AuthParameters"]["OAuthParameters"]
            ["OAuthHttpParameters"]["BodyParameters"][1]["Value"],
        "tenant_titles": tenant_titles,
        "tenant_dimensions": tenant_dimensions,
    })
}

/// What CloudFormation's `Fn::Sub` makes of `body` in template `t`: `${!x}` is the text
/// `${x}`; `${name}` must name a variable of the dashboard's `Fn::Sub`, a pseudo parameter,
/// a parameter or a resource (its attribute), and becomes `<name>`.
fn fn_sub(body: &str, t: &Value) -> String {
    let variables = &t["Resources"]["WeirDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][1];
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        rest = &rest[start + 2..];
        if let Some(literal) = rest.strip_prefix('!') {
            out.push_str("${");
            rest = literal;
            continue;
        }
        let end = rest.find('}').expect("a closed ${");
        let name = &rest[..end];
        let known = !variables[name].is_null()
            || name.starts_with("AWS::")
            || (!name.contains('.') && !t["Parameters"][name].is_null())
            || !t["Resources"][name.split('.').next().expect("a name")].is_null();
        assert!(
            known,
            "the dashboard body substitutes ${{{name}}}, which the template lacks"
        );
        out.push_str(&format!("<{name}>"));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A YAML 1.2 reader's view of a template: tags dropped (`!Ref X` is "X").
fn yaml_rust2_json(text: &str) -> Value {
    fn convert(y: &yaml_rust2::Yaml) -> Value {
        use yaml_rust2::Yaml;
        match y {
            Yaml::String(s) => Value::from(s.as_str()),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::Real(r) => Value::from(r.parse::<f64>().expect("a number")),
            Yaml::Boolean(b) => Value::from(*b),
            Yaml::Null => Value::Null,
            Yaml::Array(items) => Value::Array(items.iter().map(convert).collect()),
            Yaml::Hash(h) => Value::Object(
                h.iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Yaml::String(s) => s.clone(),
                            other => panic!("a non-string key {other:?}"),
                        };
                        (key, convert(v))
                    })
                    .collect(),
            ),
            other => panic!("unexpected YAML node {other:?}"),
        }
    }
    let docs = yaml_rust2::YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("yaml-rust2 cannot read the template: {e}\n{text}"));
    assert_eq!(docs.len(), 1, "one document");
    convert(&docs[0])
}

/// PyYAML (pure Python and libyaml, tags dropped) and cfn-lint's loader, each reading
/// one template per line of input, in one Python process.
struct PythonReaders {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

const PYTHON_READERS: &str = r#"
import json, sys, yaml
from cfnlint.decode import cfn_yaml

def untagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)

class PurePython(yaml.SafeLoader): pass
class LibYaml(yaml.CSafeLoader): pass
for loader in (PurePython, LibYaml):
    loader.add_multi_constructor('!', untagged)

for line in sys.stdin:
    text = json.loads(line)
    out = {}
    for name, read in (("pyyaml", lambda t: yaml.load(t, Loader=PurePython)),
                       ("libyaml", lambda t: yaml.load(t, Loader=LibYaml)),
                       ("cfn-lint", cfn_yaml.loads)):
        try:
            out[name] = read(text)
        except Exception as e:
            out[name] = {"error": repr(e)}
    print(json.dumps(out, default=str), flush=True)
"#;

impl PythonReaders {
    fn start() -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(venv_tool("python"))
            .args(["-c", PYTHON_READERS])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        let stdout = child.stdout.take().expect("stdout");
        PythonReaders {
            child,
            lines: std::io::BufReader::new(stdout).lines(),
        }
    }

    /// Each reader's view of `text`, by reader name.
    fn read(&mut self, text: &str) -> serde_json::Map<String, Value> {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{}", Value::from(text)).expect("write to python");
        let line = self.lines.next().expect("python answers").expect("a line");
        match serde_json::from_str(&line).expect("JSON") {
            Value::Object(views) => views,
            other => panic!("{other}"),
        }
    }
}

impl Drop for PythonReaders {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Reads `template` with every reader and checks each sees `strings` exactly.
fn assert_every_reader_sees(template: &str, strings: &ManifestStrings, python: &mut PythonReaders) {
    let expected = strings.expected();
    let rust = probes(&yaml_rust2_json(template));
    assert_eq!(rust, expected, "yaml-rust2 read\n{template}");
    for (reader, view) in python.read(template) {
        assert!(
            view.get("error").is_none(),
            "{reader} cannot read the template: {view}\n{template}"
        );
        assert_eq!(probes(&view), expected, "{reader} read\n{template}");
    }
}

/// `weir infra` on `strings`' manifest, which must succeed.
fn infra_of(dir: &Path, strings: &ManifestStrings) -> String {
    let manifest = write_temp(dir, "weir.toml", &strings.toml());
    let out = weir_output(&["infra", "--manifest", &manifest.display().to_string()]);
    assert!(out.status.success(), "{}", report(&out));
    text(&out.stdout)
}

/// Issue 23: a tenant name with line breaks, used by a destination, went raw into a
/// comment, and the template read back with an `AWS::IAM::User` in it.
#[test]
fn a_tenant_name_with_line_breaks_stays_one_string_in_the_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut strings = ManifestStrings::plain();
    strings.tenants = vec![
        "acme\n  Evil:\n    Type: AWS::IAM::User\n    Properties: {}\n#".into(),
        "globex\r\n  Evil2:\r\n    Type: AWS::IAM::User\r\n#".into(),
    ];
    let template = infra_of(dir.path(), &strings);
    assert_every_reader_sees(&template, &strings, &mut PythonReaders::start());
    assert!(!template.contains("AWS::IAM::User\n"), "{template}");
}

/// Issue 23: a detail type with U+2028 (and its kin U+0085, U+2029) passed the
/// control-character check; a YAML 1.1 reader takes them for line breaks, and a second
/// resource appeared.
#[test]
fn a_detail_type_with_unicode_line_breaks_stays_one_string_in_the_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut strings = ManifestStrings::plain();
    strings.detail_types = vec![
        "Changed\u{2028}  Evil:\u{2028}    Type: AWS::IAM::User\u{2028}#".into(),
        "Other\u{2029}  Evil2:\u{2029}    Type: AWS::IAM::User\u{feff}#".into(),
    ];
    // U+0085 is a C1 control, refused in a detail type; a scope may hold it.
    strings.scope = "read\u{85}  Evil3:\u{2028}    Type: AWS::IAM::User".into();
    let template = infra_of(dir.path(), &strings);
    assert_every_reader_sees(&template, &strings, &mut PythonReaders::start());
    assert!(
        template.is_ascii(),
        "the template is printable ASCII:\n{template}"
    );
}

/// Issue 23: tenant names reached the dashboard's `Fn::Sub` body unescaped, so `${...}` in
/// a name was substituted (or named something the template lacks). cfn-lint, which checks
/// every substitution, finds nothing wrong in the dashboard (it does flag `${...}` text
/// outside any `Fn::Sub`, in the tenant's rule, though CloudFormation leaves that alone).
#[test]
fn tenant_names_reach_the_dashboard_as_text_not_substitutions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut strings = ManifestStrings::plain();
    strings.tenants = vec![
        "${AWS::AccountId}".into(),
        "${CrmDeadLetterQueue.Arn}".into(),
        "${!Literal}$${Nope}\\u0024{x}".into(),
        "${".into(),
    ];
    let template = infra_of(dir.path(), &strings);
    assert_every_reader_sees(&template, &strings, &mut PythonReaders::start());
    let file = write_temp(dir.path(), "infra.yaml", &template);
    let out = run_tool(
        "cfn-lint",
        &["--format", "parseable", "--", &file.display().to_string()],
        dir.path(),
    );
    let findings = text(&out.stdout);
    assert!(
        !findings.contains("Resources/WeirDashboard"),
        "cfn-lint: {}",
        report(&out)
    );
    assert!(
        findings.contains("Resources/HookRule/Properties/EventPattern/detail/metadata/tenant"),
        "cfn-lint ran and read the tenant's rule: {}",
        report(&out)
    );
}

/// Issue 23: an `endpoint` holding `{{resolve:secretsmanager:...}}` was emitted as is, so
/// CloudFormation would have put a secret into a URL sent to an outside host. `weir check`
/// and `weir infra` refuse every manifest string holding a dynamic reference, naming its key.
#[test]
fn dynamic_references_in_manifest_strings_are_refused_with_their_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = edited_example(dir.path(), |t| {
        t.replace(
            "endpoint = \"https://crm.example.com/hooks/customers\"",
            "endpoint = \"https://crm.example.com/{{resolve:secretsmanager:prod/db:SecretString:password}}\"",
        )
        .replace(
            "detail_types = [\"SlackMessage\"]",
            "detail_types = [\"SlackMessage\", \"x{{ ReSoLvE:ssm:/a/b}}\"]",
        )
    });
    let manifest = manifest.display().to_string();
    let out = weir_output(&["check", "--manifest", &manifest]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", report(&out));
    for key in [
        "destinations.crm-webhook.endpoint: holds a CloudFormation dynamic reference",
        "destinations.slack.detail_types[1]: holds a CloudFormation dynamic reference",
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(key)), "{stdout}");
    }
    assert_eq!(
        stdout.lines().next(),
        Some(format!("{manifest}: 2 problems").as_str()),
        "{stdout}"
    );
    assert!(
        !stdout.contains("prod/db"),
        "the value is not echoed: {stdout}"
    );

    let out = weir_output(&["infra", "--manifest", &manifest]);
    assert_eq!(out.status.code(), Some(2), "{}", report(&out));
    assert!(out.stdout.is_empty(), "{}", report(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("destinations.crm-webhook.endpoint holds")
            && stderr.contains("destinations.slack.detail_types[1] holds"),
        "{stderr}"
    );

    // A tenant's name is a key too; a name that is not a bare key is quoted and escaped.
    let manifest = edited_example(dir.path(), |t| {
        t.replace(
            "[tenants.umbrella]",
            "[tenants.\"umbrella\\n{{resolve:ssm:x}}\"]",
        )
    });
    let out = weir_output(&["check", "--manifest", &manifest.display().to_string()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", report(&out));
    assert!(
        stdout.contains(
            "tenants.\"umbrella\\u000A{{resolve:ssm:x}}\": holds a CloudFormation dynamic reference"
        ),
        "{stdout}"
    );
}

/// Pieces of hostile manifest text: YAML indicators, every YAML line break, escapes,
/// substitutions and dynamic references, quotes, characters beyond the first plane.
const FRAGMENTS: &[&str] = &[
    "\n",
    "\r\n",
    "\r",
    "\u{85}",
    "\u{2028}",
    "\u{2029}",
    "\u{feff}",
    "\t",
    "\0",
    "\u{7f}",
    "\u{9f}",
    "\u{1b}[31m",
    "${",
    "}",
    "${AWS::Region}",
    "${!x}",
    "$",
    "{{resolve:ssm:x}}",
    "{{",
    "'",
    "\"",
    "\\",
    "\\n",
    "\\u2028",
    "#",
    " #",
    ": ",
    ":",
    "- ",
    "-",
    "!Ref ",
    "!",
    "&a",
    "*a",
    "|",
    ">",
    "%",
    "@",
    "`",
    "? ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "---",
    "...",
    "true",
    "no",
    "null",
    "~",
    "0x1F",
    "1e3",
    "<<",
    "=",
    " ",
    "  ",
    "\u{1F600}",
    "é",
    "\u{fffe}",
    "\u{10ffff}",
    "\u{d7ff}",
];

fn hostile_string() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        2 => any::<char>().prop_map(String::from),
        3 => proptest::sample::select(FRAGMENTS).prop_map(String::from),
        3 => proptest::collection::vec(
            proptest::sample::select(b"abcXYZ019_-./".as_slice()),
            1..5
        )
        .prop_map(|b| String::from_utf8(b).expect("ASCII")),
    ];
    proptest::collection::vec(piece, 1..5).prop_map(|p| p.concat())
}

fn hostile_manifest_strings() -> impl proptest::strategy::Strategy<Value = ManifestStrings> {
    use proptest::prelude::*;
    (
        hostile_string(),
        proptest::collection::vec(hostile_string(), 1..3),
        proptest::collection::btree_set(hostile_string(), 1..4),
        proptest::collection::vec(hostile_string(), 1..3),
        hostile_string(),
        hostile_string(),
    )
        .prop_map(
            |(bus, sources, tenants, detail_types, scope, path)| ManifestStrings {
                bus,
                sources,
                tenants: tenants.into_iter().collect(),
                detail_types,
                scope,
                // What the manifest refuses in a URL anyway, so most cases reach the template.
                endpoint_path: path
                    .chars()
                    .filter(|c| !c.is_whitespace() && !c.is_control() && *c != '*')
                    .collect(),
            },
        )
}

/// The keys [`weir::infra::template_problems`] must name for `s`: each string holding
/// `{{`, optional whitespace, then `resolve` in any case.
fn dynamic_reference_keys(s: &ManifestStrings) -> Vec<String> {
    let dynamic = |text: &str| {
        text.match_indices("{{").any(|(i, _)| {
            text[i + 2..]
                .trim_start()
                .get(..7)
                .is_some_and(|w| w.eq_ignore_ascii_case("resolve"))
        })
    };
    let segment = |name: &str| {
        if !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            name.to_owned()
        } else {
            toml_string(name)
        }
    };
    let mut strings = vec![("event_bus".to_owned(), s.bus.clone())];
    for (i, source) in s.sources.iter().enumerate() {
        strings.push((format!("routes[{i}].source"), source.clone()));
    }
    for t in &s.tenants {
        strings.push((format!("tenants.{}", segment(t)), t.clone()));
    }
    for d in ["crm", "hook"] {
        for (i, t) in s.detail_types.iter().enumerate() {
            strings.push((format!("destinations.{d}.detail_types[{i}]"), t.clone()));
        }
    }
    strings.push(("destinations.crm.endpoint".into(), s.endpoint()));
    strings.push(("destinations.crm.auth.scope".into(), s.scope.clone()));
    strings.push(("destinations.hook.tenant".into(), s.tenants[0].clone()));
    let mut keys: Vec<String> = strings
        .into_iter()
        .filter(|(_, text)| dynamic(text))
        .map(|(key, _)| key)
        .collect();
    keys.sort();
    keys
}

/// The property behind issue 23, item 4: for manifests whose every string is arbitrary
/// Unicode and hostile YAML, CloudFormation and JSON text, either the manifest is refused,
/// or `weir infra` refuses exactly the strings holding a dynamic reference (naming their
/// keys), or the template reads back in all four readers with exactly the expected
/// resources and every string exactly as written.
#[test]
fn arbitrary_manifest_strings_read_back_as_themselves_or_are_refused() {
    use proptest::test_runner::{Config, TestRunner};
    use std::cell::{Cell, RefCell};
    let python = RefCell::new(PythonReaders::start());
    let (manifest_refused, template_refused, emitted) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let cases = 128;
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&hostile_manifest_strings(), |strings| {
        let parsed = weir_core::manifest::Manifest::parse_with_destinations(
            &strings.toml(),
            weir_core::location::Location::File("m.toml".into()),
        );
        let Ok((manifest, destinations)) = parsed else {
            manifest_refused.set(manifest_refused.get() + 1);
            return Ok(());
        };
        let expected_keys = dynamic_reference_keys(&strings);
        match weir::infra::template(&manifest, &destinations) {
            Err(problems) => {
                template_refused.set(template_refused.get() + 1);
                let mut keys: Vec<String> = problems.0.iter().map(|p| p.key.clone()).collect();
                keys.sort();
                assert_eq!(keys, expected_keys, "{strings:?}");
                for p in &problems.0 {
                    let line = p.to_string();
                    assert!(
                        line.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
                        "a problem is one printable line: {line:?}"
                    );
                }
            }
            Ok(template) => {
                emitted.set(emitted.get() + 1);
                assert_eq!(expected_keys, Vec::<String>::new(), "{strings:?}");
                assert!(template.is_ascii(), "{template}");
                assert_every_reader_sees(&template, &strings, &mut python.borrow_mut());
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (m, t, e) = (
        manifest_refused.get(),
        template_refused.get(),
        emitted.get(),
    );
    eprintln!(
        "{cases} cases: {m} manifests refused, {t} templates refused, {e} emitted and read back"
    );
    assert!(
        e * 4 >= cases,
        "too few cases reach the template: {e} of {cases}"
    );
    assert!(t > 0, "no case held a dynamic reference");
}
