//! Shared test fixtures: paths, a moto server per test, AWS clients pointed at it, a
//! stand-in PutEvents endpoint for faults moto cannot produce, and record builders.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

pub fn plugin(name: &str) -> PathBuf {
    let p = root().join("target/plugins").join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: build the plugins with ./dev plugins (./dev test does it)",
        p.display()
    );
    p
}

/// A tool installed in the project's venv by `./dev test`.
pub fn venv_tool(name: &str) -> PathBuf {
    let p = root().join(".venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: ./dev test installs it (python venv in .venv)",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts connections on the port, or panics after `limit`.
pub fn wait_for_port(port: u16, limit: Duration, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < limit,
            "{what} did not listen on {port} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A moto server of its own for one test, stopped when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(venv_tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto { child, port };
        wait_for_port(port, Duration::from_secs(30), "moto_server");
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// AWS SDK configuration for the moto server: fixed region and dummy credentials.
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    weir_aws::client::local_sdk_config(endpoint, "us-east-1")
}

pub const TABLE_ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/Customers/stream/2026-11-30T00:00:00.000";

/// Runs the `weir` binary in the repository root, with weir's default logging.
pub fn weir_output(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs")
}

/// A finished command's stderr, as text.
pub fn stderr_text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A finished command's stdout, one JSON value a line.
pub fn stdout_json(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// A moto bus whose rules send `detail-type`/tenant pairs to queues (see `bus_with_rules`),
/// and weir's dead-letter queue `<bus>-dlq`: the queues' URLs and the dead-letter queue's.
pub async fn bus_queues_and_dead_letters(
    config: &aws_config::SdkConfig,
    bus: &str,
    rules: &[(&str, &str)],
) -> (aws_sdk_sqs::Client, Vec<String>, String) {
    let events = aws_sdk_eventbridge::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let urls = bus_with_rules(&events, &sqs, bus, rules).await;
    let (dlq, _) = create_queue(&sqs, &format!("{bus}-dlq"), None).await;
    (sqs, urls, dlq)
}

/// A stream record as Lambda delivers it, for the Customers table.
pub fn stream_record(seq: u64, event_id: &str, tenant: &str, extra: Value) -> Value {
    let mut image = json!({
        "tenantId": {"S": tenant},
        "customerId": {"S": format!("C-{seq}")},
        "name": {"S": format!("Customer {seq}")},
    });
    if let (Some(img), Some(extra)) = (image.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            img.insert(k.clone(), v.clone());
        }
    }
    json!({
        "eventID": event_id,
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": TABLE_ARN,
        "dynamodb": {
            "ApproximateCreationDateTime": 1764460800,
            "Keys": {"tenantId": {"S": tenant}, "customerId": {"S": format!("C-{seq}")}},
            "NewImage": image,
            "SequenceNumber": format!("{seq:021}"),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

/// A change of item `customer` of `tenant` in the Customers table, as Lambda delivers it:
/// `event_name` INSERT, MODIFY or REMOVE, the item's `name` after the change (before it,
/// for a REMOVE), and `extra` attributes in the image.
pub fn item_change(
    seq: u64,
    event_name: &str,
    tenant: &str,
    customer: &str,
    name: &str,
    extra: Value,
) -> Value {
    let keys = json!({"tenantId": {"S": tenant}, "customerId": {"S": customer}});
    let mut image =
        json!({"tenantId": {"S": tenant}, "customerId": {"S": customer}, "name": {"S": name}});
    if let (Some(img), Some(extra)) = (image.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            img.insert(k.clone(), v.clone());
        }
    }
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": 1764460800,
        "Keys": keys,
        "SequenceNumber": format!("{seq:021}"),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    });
    let image_field = if event_name == "REMOVE" {
        "OldImage"
    } else {
        "NewImage"
    };
    dynamodb[image_field] = image;
    json!({
        "eventID": format!("{tenant}-{customer}-{seq}"),
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": TABLE_ARN,
        "dynamodb": dynamodb
    })
}

/// Writes a manifest routing the Customers table by tenantId.
pub fn write_manifest(
    dir: &Path,
    bus: &str,
    dead_letter_queue: Option<&str>,
    plugins: &[&str],
    tenants: &str,
) -> PathBuf {
    let mut text = format!("event_bus = {bus:?}\n");
    if let Some(q) = dead_letter_queue {
        text.push_str(&format!("dead_letter_queue = {q:?}\n"));
    }
    for name in plugins {
        text.push_str(&format!(
            "[plugins.{name}]\npath = {:?}\n",
            plugin(name).display().to_string()
        ));
    }
    text.push_str("[[routes]]\ntable = \"Customers\"\nsource = \"weir.customers\"\ntenant = { attribute = \"tenantId\" }\n");
    text.push_str(tenants);
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// How the stand-in PutEvents endpoint answers one call.
pub enum Reply {
    /// HTTP 200 with one result per entry: `None` accepted, `Some(code)` failed.
    Results(Vec<Option<String>>),
    /// HTTP 400 ThrottlingException for the whole call.
    Throttle,
    /// Wait, then answer.
    After(Duration, Box<Reply>),
}

type Script = dyn Fn(usize, &[Value]) -> Reply + Send + Sync;

/// Stands in for EventBridge where moto cannot: it speaks PutEvents (JSON 1.1,
/// `AWSEvents.PutEvents`) and answers each call as the test scripts it, to produce
/// throttling, per-entry failures and delays. It records every call's entries.
pub struct FakeEventBridge {
    pub port: u16,
    calls: Arc<Mutex<Vec<Vec<Value>>>>,
}

impl FakeEventBridge {
    pub fn start(script: impl Fn(usize, &[Value]) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let calls: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let shared = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (calls, script) = (shared.clone(), script.clone());
                std::thread::spawn(move || serve(stream, &calls, &*script));
            }
        });
        FakeEventBridge { port, calls }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every PutEvents call so far, each as its list of entries.
    pub fn calls(&self) -> Vec<Vec<Value>> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

fn serve(stream: TcpStream, calls: &Mutex<Vec<Vec<Value>>>, script: &Script) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut target = String::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "x-amz-target" => target = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, reply) = if target == "AWSEvents.PutEvents" {
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let entries = request["Entries"].as_array().cloned().unwrap_or_default();
            let n = {
                let mut c = calls.lock().expect("lock");
                c.push(entries.clone());
                c.len() - 1
            };
            render(script(n, &entries))
        } else if target == "AWSEvents.DescribeEventBus" {
            (200, json!({"Name": "fake", "Arn": "arn:aws:events:us-east-1:123456789012:event-bus/fake"}).to_string())
        } else {
            (
                400,
                json!({"__type": "UnknownOperationException", "message": target}).to_string(),
            )
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn render(reply: Reply) -> (u16, String) {
    match reply {
        Reply::Throttle => (
            400,
            json!({"__type": "ThrottlingException", "message": "Rate exceeded"}).to_string(),
        ),
        Reply::After(wait, then) => {
            std::thread::sleep(wait);
            render(*then)
        }
        Reply::Results(results) => {
            let failed = results.iter().filter(|r| r.is_some()).count();
            let entries: Vec<Value> = results
                .iter()
                .enumerate()
                .map(|(i, r)| match r {
                    None => json!({"EventId": format!("fake-{i}-{}", fastrand::u64(..))}),
                    Some(code) => {
                        json!({"ErrorCode": code, "ErrorMessage": format!("fake {code}")})
                    }
                })
                .collect();
            (
                200,
                json!({"FailedEntryCount": failed, "Entries": entries}).to_string(),
            )
        }
    }
}

/// The `metadata` of an entry's Detail.
pub fn metadata(entry: &Value) -> Value {
    let detail: Value = serde_json::from_str(entry["Detail"].as_str().expect("Detail string"))
        .expect("Detail JSON");
    detail["metadata"].clone()
}

/// Drains an SQS queue: receives until `expected` messages arrived (or `limit` passed),
/// then once more to prove nothing else is there. Deletes what it reads.
pub async fn drain_queue(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    expected: usize,
    limit: Duration,
) -> Vec<aws_sdk_sqs::types::Message> {
    let start = Instant::now();
    let mut got = Vec::new();
    loop {
        let enough = got.len() >= expected;
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(if enough { 0 } else { 1 })
            .send()
            .await
            .expect("receive");
        let batch = out.messages().to_vec();
        let empty = batch.is_empty();
        for m in &batch {
            if let Some(h) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(h)
                    .send()
                    .await
                    .expect("delete");
            }
        }
        got.extend(batch);
        if (enough && empty) || start.elapsed() > limit {
            return got;
        }
    }
}

/// Makes an SQS queue (optionally with a lower MaximumMessageSize); returns URL and ARN.
pub async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    max_message_size: Option<usize>,
) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let mut create = sqs.create_queue().queue_name(name);
    if let Some(size) = max_message_size {
        create = create.attributes(QueueAttributeName::MaximumMessageSize, size.to_string());
    }
    let url = create
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("arn");
    (url, arn)
}

/// An export to S3 as DynamoDB writes one: the summary, the list of data files, and the
/// gzipped `{"Item": ...}` lines, in moto's S3 bucket `exports`. Item `i` is globex's when
/// `i % 5 < 2`, else initech's; its lifetimeValue is `ltv(i)`.
pub async fn export_in_s3(
    config: &aws_config::SdkConfig,
    files: usize,
    per_file: usize,
    ltv: impl Fn(usize) -> String,
) -> String {
    use std::io::Write as _;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("exports")
        .send()
        .await
        .expect("bucket");
    let folder = "nightly/AWSDynamoDB/01700000000000-abcd1234";
    let put = |key: String, body: Vec<u8>| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket("exports")
                .key(key)
                .body(body.into())
                .send()
                .await
                .expect("put");
        }
    };
    let mut listing = String::new();
    for f in 0..files {
        let mut lines = String::new();
        for j in 0..per_file {
            let i = f * per_file + j;
            let tenant = if i % 5 < 2 { "globex" } else { "initech" };
            let item = json!({"Item": {
                "tenantId": {"S": tenant},
                "customerId": {"S": format!("C-{i:05}")},
                "name": {"S": format!("Customer {i}")},
                "lifetimeValue": {"N": ltv(i)},
            }});
            lines.push_str(&format!("{item}\n"));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(lines.as_bytes()).expect("gzip");
        let key = format!("{folder}/data/file-{f}.json.gz");
        put(key.clone(), gz.finish().expect("gzip")).await;
        listing.push_str(&format!(
            "{}\n",
            json!({"itemCount": per_file, "md5Checksum": "x", "etag": "y", "dataFileS3Key": key})
        ));
    }
    put(
        format!("{folder}/manifest-files.json"),
        listing.into_bytes(),
    )
    .await;
    let summary = json!({
        "version": "2020-06-30",
        "exportArn": "arn:aws:dynamodb:us-east-1:123456789012:table/Customers/export/01700000000000-abcd1234",
        "tableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/Customers",
        "s3Bucket": "exports",
        "s3Prefix": "nightly",
        "manifestFilesS3Key": format!("{folder}/manifest-files.json"),
        "itemCount": files * per_file,
        "outputFormat": "DYNAMODB_JSON",
        "exportFormat": "DYNAMODB_JSON",
    });
    put(
        format!("{folder}/manifest-summary.json"),
        summary.to_string().into_bytes(),
    )
    .await;
    format!("s3://exports/{folder}")
}

/// A bus with a rule per (detail-type, tenant) sending matches to its own queue.
pub async fn bus_with_rules(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &str,
    rules: &[(&str, &str)],
) -> Vec<String> {
    events
        .create_event_bus()
        .name(bus)
        .send()
        .await
        .expect("bus");
    let mut urls = Vec::new();
    for (detail_type, tenant) in rules {
        let name = format!("{bus}-{tenant}");
        let (url, arn) = create_queue(sqs, &name, None).await;
        let pattern = json!({
            "source": ["weir.customers"],
            "detail-type": [detail_type],
            "detail": {"metadata": {"tenant": [tenant]}}
        });
        events
            .put_rule()
            .name(&name)
            .event_bus_name(bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .expect("rule");
        events
            .put_targets()
            .rule(&name)
            .event_bus_name(bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("targets");
        urls.push(url);
    }
    urls
}

/// A bus whose one rule takes every `weir.customers` event into the queue `queue_arn`.
pub async fn bus_to_queue(events: &aws_sdk_eventbridge::Client, bus: &str, queue_arn: &str) {
    events
        .create_event_bus()
        .name(bus)
        .send()
        .await
        .expect("bus");
    events
        .put_rule()
        .name("all")
        .event_bus_name(bus)
        .event_pattern(json!({"source": ["weir.customers"]}).to_string())
        .send()
        .await
        .expect("rule");
    events
        .put_targets()
        .rule("all")
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("target");
}
