//! The Lambda handler, called directly with built events, against a real moto server
//! (EventBridge, SQS, DynamoDB Streams) and, for faults moto cannot produce, a stand-in
//! PutEvents endpoint (see `crate::support::FakeEventBridge`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::*;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use weir::lambda::{Function, Invocation, handle, handle_invocation};
use weir_aws::dead_letter::{DeadLetterQueue, LetterKey, Overflow, QueueConfig};
use weir_aws::publish::{PublishConfig, Publisher};
use weir_aws::store::ObjectStore;
use weir_core::location::Location;
use weir_core::record::StreamBatch;
use weir_runtime::loader::Loader;
use weir_runtime::plugin::PluginEngine;

const GLOBEX: &str = "[tenants.globex]\nplugin = \"mapping\"\nconfig = { detail_type = \"CustomerChanged\", destination = \"crm\", fields = { Name = \"/name\", Email = \"/email\", LTV = \"/lifetimeValue\" } }\n";
const ACME: &str = "[tenants.acme]\nplugin = \"salesforce-account\"\nconfig = { external_id_field = \"Ext__c\", external_id = \"/customerId\" }\n";

async fn function(
    manifest: &std::path::Path,
    eventbridge: &str,
    sqs: &str,
    queue_url: &str,
    publish: PublishConfig,
) -> Function {
    let engine = Arc::new(PluginEngine::with_cache_dir(None).expect("engine"));
    let loader = Loader::load(
        ObjectStore::default(),
        engine,
        Location::File(manifest.to_path_buf()),
        Duration::from_secs(3600),
    )
    .await
    .expect("manifest and plugins load");
    let bucket = dead_letter_bucket(&sdk_config(sqs)).await;
    Function {
        loader: tokio::sync::Mutex::new(loader),
        publisher: Publisher::new(
            weir_aws::client::eventbridge(&sdk_config(eventbridge)),
            publish,
        ),
        dead_letters: DeadLetterQueue::new(
            aws_sdk_sqs::Client::new(&sdk_config(sqs)),
            queue_url,
            QueueConfig {
                safety_margin: Duration::from_millis(200),
                ..QueueConfig::default()
            },
        )
        .with_key(letter_key())
        .with_overflow(Overflow::new(
            weir_aws::client::s3(&sdk_config(sqs)),
            bucket,
        )),
        function_name: "weir-test".into(),
        tenant_metrics: true,
        exports: weir_aws::export::Exports::new(&sdk_config(sqs)),
    }
}

/// The dead-letter key of these tests (in production, a Secrets Manager secret).
fn letter_key() -> LetterKey {
    LetterKey::new(b"weir-test-dead-letter-key-0123456789abcdef", "test").expect("key")
}

/// The bucket where letters too large for the queue go, made in moto if it is not there.
async fn dead_letter_bucket(config: &aws_config::SdkConfig) -> String {
    let name = "weir-dead-letters";
    let _ = weir_aws::client::s3(config)
        .create_bucket()
        .bucket(name)
        .send()
        .await;
    name.to_owned()
}

fn fast_publish() -> PublishConfig {
    PublishConfig {
        safety_margin: Duration::from_millis(300),
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..PublishConfig::default()
    }
}

fn event(records: Vec<Value>, within: Duration) -> LambdaEvent<StreamBatch> {
    let payload: StreamBatch =
        serde_json::from_value(json!({ "Records": records })).expect("stream batch");
    let mut context = Context::default();
    context.request_id = "test-request".into();
    context.deadline = (SystemTime::now() + within)
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_millis() as u64;
    LambdaEvent::new(payload, context)
}

fn failures(r: &aws_lambda_events::streams::DynamoDbEventResponse) -> Vec<String> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

fn body(m: &aws_sdk_sqs::types::Message) -> Value {
    serde_json::from_str(m.body().expect("body")).expect("JSON body")
}

/// Builds a Lambda DynamoDB Streams record from a GetRecords record, adding the
/// eventSourceARN that GetRecords leaves out.
fn lambda_record(r: &aws_sdk_dynamodbstreams::types::Record, stream_arn: &str) -> Value {
    let sr = r.dynamodb().expect("stream record");
    let image = |m: Option<
        &std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
    >| {
        m.map(|m| Value::Object(m.iter().map(|(k, v)| (k.clone(), attr(v))).collect()))
    };
    let mut ddb = json!({
        "ApproximateCreationDateTime": sr.approximate_creation_date_time().map(|t| t.secs()),
        "Keys": image(sr.keys()),
        "SequenceNumber": sr.sequence_number(),
        "SizeBytes": sr.size_bytes(),
        "StreamViewType": sr.stream_view_type().map(|v| v.as_str()),
    });
    if let Some(new) = image(sr.new_image()) {
        ddb["NewImage"] = new;
    }
    if let Some(old) = image(sr.old_image()) {
        ddb["OldImage"] = old;
    }
    json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|n| n.as_str()),
        "eventVersion": r.event_version(),
        "eventSource": r.event_source(),
        "awsRegion": r.aws_region(),
        "eventSourceARN": stream_arn,
        "dynamodb": ddb,
    })
}

fn attr(v: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as A;
    use base64::Engine as _;
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    match v {
        A::S(s) => json!({"S": s}),
        A::N(n) => json!({"N": n}),
        A::B(b) => json!({"B": b64(b)}),
        A::Bool(b) => json!({"BOOL": b}),
        A::Null(_) => json!({"NULL": true}),
        A::Ss(v) => json!({"SS": v}),
        A::Ns(v) => json!({"NS": v}),
        A::Bs(v) => json!({"BS": v.iter().map(b64).collect::<Vec<_>>()}),
        A::M(m) => {
            json!({"M": m.iter().map(|(k, v)| (k.clone(), attr(v))).collect::<serde_json::Map<_, _>>()})
        }
        A::L(l) => json!({"L": l.iter().map(attr).collect::<Vec<_>>()}),
        _ => json!({"UNKNOWN": true}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_to_queue_end_to_end() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue as D, KeySchemaElement, KeyType, ScalarAttributeType,
        StreamSpecification, StreamViewType,
    };
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let streams = aws_sdk_dynamodbstreams::Client::new(&config);
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);

    let table = ddb
        .create_table()
        .table_name("Customers")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("tenantId")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("def"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("customerId")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("def"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("tenantId")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("customerId")
                .key_type(KeyType::Range)
                .build()
                .expect("key"),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("stream"),
        )
        .send()
        .await
        .expect("table");
    let stream_arn = table
        .table_description()
        .and_then(|t| t.latest_stream_arn())
        .expect("stream arn")
        .to_owned();

    let item = |tenant: &str, id: &str, name: Option<&str>, ltv: &str| {
        let mut m = std::collections::HashMap::from([
            ("tenantId".to_owned(), D::S(tenant.into())),
            ("customerId".to_owned(), D::S(id.into())),
            ("lifetimeValue".to_owned(), D::N(ltv.into())),
            ("email".to_owned(), D::S(format!("{id}@example.com"))),
        ]);
        if let Some(n) = name {
            m.insert("name".into(), D::S(n.into()));
        }
        m
    };
    let big = "12345678901234567890123456789012345678";
    for (tenant, id, name) in [
        ("globex", "G-1", Some("Hank")),
        ("globex", "G-2", Some("Mindy")),
        ("acme", "A-1", Some("Wile")),
        ("acme", "A-2", None),
        ("initech", "I-1", Some("Bill")),
    ] {
        ddb.put_item()
            .table_name("Customers")
            .set_item(Some(item(tenant, id, name, big)))
            .send()
            .await
            .expect("put");
    }
    ddb.update_item()
        .table_name("Customers")
        .key("tenantId", D::S("globex".into()))
        .key("customerId", D::S("G-1".into()))
        .update_expression("SET email = :e")
        .expression_attribute_values(":e", D::S("hank@globex.example".into()))
        .send()
        .await
        .expect("update");
    ddb.delete_item()
        .table_name("Customers")
        .key("tenantId", D::S("globex".into()))
        .key("customerId", D::S("G-2".into()))
        .send()
        .await
        .expect("delete");

    let shard = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .expect("describe stream")
        .stream_description()
        .and_then(|d| d.shards().first().cloned())
        .expect("a shard");
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(&stream_arn)
        .shard_id(shard.shard_id().expect("shard id"))
        .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("iterator")
        .shard_iterator()
        .expect("iterator")
        .to_owned();
    let got = streams
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("records");
    let records: Vec<Value> = got
        .records()
        .iter()
        .map(|r| lambda_record(r, &stream_arn))
        .collect();
    assert_eq!(records.len(), 7, "5 puts, 1 update, 1 delete");

    let queues = bus_with_rules(
        &events,
        &sqs,
        "weir-test",
        &[
            ("CustomerChanged", "globex"),
            ("SalesforceAccountUpsert", "acme"),
        ],
    )
    .await;
    let (dlq, _) = create_queue(&sqs, "weir-dlq", None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(
        dir.path(),
        "weir-test",
        Some(&dlq),
        &["mapping", "salesforce-account"],
        &format!("{GLOBEX}{ACME}"),
    );
    let f = function(
        &manifest,
        &moto.endpoint(),
        &moto.endpoint(),
        &dlq,
        fast_publish(),
    )
    .await;

    let response = handle(&f, event(records.clone(), Duration::from_secs(30)))
        .await
        .expect("handler");
    assert!(failures(&response).is_empty(), "{:?}", failures(&response));

    // globex: insert G-1, insert G-2, modify G-1, remove G-2 — exactly these, in any order.
    let globex = drain_queue(&sqs, &queues[0], 4, Duration::from_secs(20)).await;
    let mut seen: Vec<(String, String, String)> = globex
        .iter()
        .map(|m| {
            let e = body(m);
            assert_eq!(e["source"], "weir.customers");
            assert_eq!(e["detail-type"], "CustomerChanged");
            let p = &e["detail"]["payload"];
            assert_eq!(p["LTV"], big, "every digit, as a string");
            (
                e["detail"]["metadata"]["eventName"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                p["Name"].as_str().unwrap_or("").to_owned(),
                p["Email"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("INSERT".into(), "Hank".into(), "G-1@example.com".into()),
            ("INSERT".into(), "Mindy".into(), "G-2@example.com".into()),
            ("MODIFY".into(), "Hank".into(), "hank@globex.example".into()),
            ("REMOVE".into(), "Mindy".into(), "G-2@example.com".into()),
        ]
    );
    // acme: only A-1 upserts; A-2 has no name, which the plugin rejects.
    let acme = drain_queue(&sqs, &queues[1], 1, Duration::from_secs(20)).await;
    assert_eq!(acme.len(), 1);
    let upsert = body(&acme[0]);
    assert_eq!(upsert["detail"]["payload"]["externalId"], "A-1");
    assert_eq!(upsert["detail"]["payload"]["body"]["Name"], "Wile");

    let dead = drain_queue(&sqs, &dlq, 1, Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 1);
    let letter = body(&dead[0]);
    assert_eq!(letter["reason"]["kind"], "plugin-error");
    assert!(
        letter["reason"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no name"),
        "{letter}"
    );
    let a2 = records
        .iter()
        .find(|r| r["dynamodb"]["Keys"]["customerId"]["S"] == "A-2")
        .expect("A-2");
    assert_eq!(&letter["record"], a2, "the whole original record");
    let attrs = dead[0].message_attributes().expect("attributes");
    assert_eq!(
        attrs.get("kind").and_then(|a| a.string_value()),
        Some("plugin-error")
    );
    assert_eq!(
        attrs.get("tenant").and_then(|a| a.string_value()),
        Some("acme")
    );
}

fn globex_records(n: u64, marker: impl Fn(u64) -> Option<&'static str>) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            let extra = match marker(i) {
                Some(m) => json!({"email": {"S": m}}),
                None => json!({"email": {"S": format!("c{i}@globex.example")}}),
            };
            stream_record(i, &format!("ev-{i}"), "globex", extra)
        })
        .collect()
}

/// With moto for SQS (the dead-letter queue) and the stand-in for EventBridge.
async fn with_fake(
    fake: &FakeEventBridge,
    moto: &Moto,
    dlq_name: Option<&str>,
) -> (Function, aws_sdk_sqs::Client, String, tempfile::TempDir) {
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&moto.endpoint()));
    let dlq = match dlq_name {
        Some(name) => create_queue(&sqs, name, None).await.0,
        None => format!("{}/123456789012/no-such-queue", moto.endpoint()),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(dir.path(), "fake", Some(&dlq), &["mapping"], GLOBEX);
    let f = function(
        &manifest,
        &fake.endpoint(),
        &moto.endpoint(),
        &dlq,
        fast_publish(),
    )
    .await;
    (f, sqs, dlq, dir)
}

fn accept_all(entries: &[Value]) -> Reply {
    Reply::Results(vec![None; entries.len()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_calls_are_retried_until_accepted() {
    // The first two calls are throttled as a whole; everything after is accepted.
    let fake = FakeEventBridge::start(|n, entries| {
        if n < 2 {
            Reply::Throttle
        } else {
            accept_all(entries)
        }
    });
    let moto = Moto::start();
    let (f, sqs, dlq, _dir) = with_fake(&fake, &moto, Some("dlq")).await;
    let response = handle(
        &f,
        event(globex_records(30, |_| None), Duration::from_secs(20)),
    )
    .await
    .expect("handler");
    assert!(failures(&response).is_empty());
    let calls = fake.calls();
    // 30 entries: 3 calls of 10, of which 2 were throttled and re-sent as 2 calls of 10.
    assert_eq!(
        calls.iter().map(Vec::len).collect::<Vec<_>>().len(),
        5,
        "{:?}",
        calls.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(calls.iter().all(|c| c.len() == 10));
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for e in calls.iter().skip(2).flatten() {
        *ids.entry(metadata(e)["eventID"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    assert_eq!(ids.len(), 30, "every record's entry was accepted once");
    assert!(
        drain_queue(&sqs, &dlq, 0, Duration::from_secs(5))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_entries_that_failed_are_sent_again() {
    // Entries marked flaky fail with InternalFailure or ThrottlingException the first time.
    let seen: Arc<std::sync::Mutex<BTreeMap<String, usize>>> = Arc::default();
    let log = seen.clone();
    let fake = FakeEventBridge::start(move |_, entries| {
        let mut seen = log.lock().expect("lock");
        Reply::Results(
            entries
                .iter()
                .map(|e| {
                    let id = metadata(e)["eventID"].as_str().unwrap_or("").to_owned();
                    let detail = e["Detail"].as_str().unwrap_or("");
                    let times = seen.entry(id).or_default();
                    *times += 1;
                    match (
                        detail.contains("flaky-internal"),
                        detail.contains("flaky-throttle"),
                        *times,
                    ) {
                        (true, _, 1) => Some("InternalFailure".to_owned()),
                        (_, true, 1) => Some("ThrottlingException".to_owned()),
                        _ => None,
                    }
                })
                .collect(),
        )
    });
    let moto = Moto::start();
    let (f, _sqs, _dlq, _dir) = with_fake(&fake, &moto, Some("dlq")).await;
    let records = globex_records(25, |i| match i % 5 {
        0 => Some("flaky-internal@x"),
        3 => Some("flaky-throttle@x"),
        _ => None,
    });
    let response = handle(&f, event(records, Duration::from_secs(20)))
        .await
        .expect("handler");
    assert!(failures(&response).is_empty());
    let seen = seen.lock().expect("lock").clone();
    let flaky: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n == 2)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(seen.len(), 25);
    assert_eq!(
        flaky.len(),
        10,
        "exactly the 10 flaky entries were sent twice: {seen:?}"
    );
    assert!(seen.values().all(|&n| n <= 2));
    // 25 entries → 3 calls; then the 10 failures → 1 call.
    assert_eq!(fake.calls().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_entry_dead_letters_its_record_and_the_rest_publish() {
    let fake = FakeEventBridge::start(|_, entries| {
        Reply::Results(
            entries
                .iter()
                .map(|e| {
                    e["Detail"]
                        .as_str()
                        .unwrap_or("")
                        .contains("refuse-me")
                        .then(|| "InvalidArgument".to_owned())
                })
                .collect(),
        )
    });
    let moto = Moto::start();
    let (f, sqs, dlq, _dir) = with_fake(&fake, &moto, Some("dlq")).await;
    let records = globex_records(12, |i| (i == 7).then_some("refuse-me@x"));
    let response = handle(&f, event(records.clone(), Duration::from_secs(20)))
        .await
        .expect("handler");
    assert!(failures(&response).is_empty());
    assert_eq!(fake.calls().len(), 2, "no re-send for a permanent error");
    let dead = drain_queue(&sqs, &dlq, 1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1);
    let letter = body(&dead[0]);
    assert_eq!(letter["reason"]["kind"], "put-events");
    assert!(
        letter["reason"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("InvalidArgument")
    );
    assert_eq!(letter["record"], records[6]);
    assert_eq!(letter["plugin"]["name"], "mapping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_slower_than_the_time_left_hands_records_back_to_lambda() {
    // Each call answers after 30 s; the invocation has 3 s.
    let fake = FakeEventBridge::start(|_, entries| {
        Reply::After(Duration::from_secs(30), Box::new(accept_all(entries)))
    });
    let moto = Moto::start();
    let (f, sqs, dlq, _dir) = with_fake(&fake, &moto, Some("dlq")).await;
    // Sequence numbers out of order, and of different lengths: the lowest must come first.
    let mut records = globex_records(3, |_| None);
    records[0]["dynamodb"]["SequenceNumber"] = json!("9000000000000000000000000000000000000001");
    records[1]["dynamodb"]["SequenceNumber"] = json!("800000000000000000000");
    records[2]["dynamodb"]["SequenceNumber"] = json!("999999999999999999999");
    let started = std::time::Instant::now();
    let response = handle(&f, event(records, Duration::from_secs(3)))
        .await
        .expect("handler");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        failures(&response),
        [
            "800000000000000000000",
            "999999999999999999999",
            "9000000000000000000000000000000000000001"
        ]
    );
    assert!(
        drain_queue(&sqs, &dlq, 0, Duration::from_secs(5))
            .await
            .is_empty(),
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_queue_that_refuses_makes_its_records_retries() {
    let fake = FakeEventBridge::start(|_, entries| accept_all(entries));
    let moto = Moto::start();
    let (f, _sqs, _dlq, _dir) = with_fake(&fake, &moto, None).await;
    let mut records = globex_records(4, |_| None);
    records[1]["dynamodb"]["NewImage"]["lifetimeValue"] = json!({"N": "12abc"});
    records[3]["dynamodb"]["NewImage"]["lifetimeValue"] = json!({"N": "not a number"});
    let response = handle(&f, event(records, Duration::from_secs(10)))
        .await
        .expect("handler");
    assert_eq!(
        failures(&response),
        ["000000000000000000002", "000000000000000000004"]
    );
    let published: usize = fake.calls().iter().map(Vec::len).sum();
    assert_eq!(published, 2, "the two good records were published");
}

/// 1,000 records with every outcome. Published, dead-lettered, filtered and retried add
/// up to the records, and the queues hold exactly what the verdicts say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_accounted_for() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = bus_with_rules(
        &events,
        &sqs,
        "weir-count",
        &[
            ("CustomerChanged", "globex"),
            ("SalesforceAccountUpsert", "acme"),
        ],
    )
    .await;
    // A queue that keeps messages up to 256 KiB (the default for queues made before
    // August 2025): a bigger dead letter is refused, so it is kept whole in S3 with a
    // pointer in the queue (issue 23: it was a retry, forever), and the letters batched
    // with it are still kept.
    let (dlq, _) = create_queue(&sqs, "weir-count-dlq", Some(256 * 1024)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(
        dir.path(),
        "weir-count",
        Some(&dlq),
        &["mapping", "salesforce-account"],
        &format!("{GLOBEX}{ACME}"),
    );
    let f = function(
        &manifest,
        &moto.endpoint(),
        &moto.endpoint(),
        &dlq,
        fast_publish(),
    )
    .await;

    let huge = "x".repeat(300 * 1024);
    let mut expected = [0usize; 4]; // published, filtered, dead-lettered, retried
    let mut expect_acme = 0;
    let records: Vec<Value> = (1..=1000u64)
        .map(|i| {
            let id = format!("acct-{i}");
            match i % 10 {
                0 => {
                    expected[1] += 1;
                    stream_record(i, &id, "initech", json!({}))
                }
                1 => {
                    expected[2] += 1;
                    stream_record(i, &id, "globex", json!({"lifetimeValue": {"N": "1.2.3"}}))
                }
                2 => {
                    expected[2] += 1;
                    let mut r = stream_record(i, &id, "acme", json!({}));
                    r["dynamodb"]["NewImage"]
                        .as_object_mut()
                        .map(|m| m.remove("name"));
                    r
                }
                3 if i % 100 == 3 => {
                    expected[2] += 1;
                    stream_record(
                        i,
                        &id,
                        "globex",
                        json!({"lifetimeValue": {"N": "x"}, "blob": {"S": huge.clone()}}),
                    )
                }
                4 | 5 => {
                    expected[0] += 1;
                    expect_acme += 1;
                    stream_record(i, &id, "acme", json!({}))
                }
                _ => {
                    expected[0] += 1;
                    stream_record(
                        i,
                        &id,
                        "globex",
                        json!({"lifetimeValue": {"N": "99999999999999999999999999999999999999"}}),
                    )
                }
            }
        })
        .collect();
    let expect_globex = expected[0] - expect_acme;
    let ids: Vec<String> = records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap_or("").to_owned())
        .collect();
    let raw: Vec<Box<serde_json::value::RawValue>> = records
        .iter()
        .map(|r| serde_json::value::RawValue::from_string(r.to_string()).expect("raw"))
        .collect();
    let report = weir_core::batch::run(
        f.loader.lock().await.pipeline(),
        raw,
        Some(&f.publisher),
        weir_aws::dead_letter::DeadLetterSink::Queue(&f.dead_letters),
        tokio::time::Instant::now() + Duration::from_secs(120),
    )
    .await
    .expect("batch");
    let c = report.counts();
    assert_eq!(
        [c.published, c.filtered, c.dead_lettered, c.retried],
        expected
    );
    assert_eq!(c.published + c.filtered + c.dead_lettered + c.retried, 1000);

    // What arrived matches the verdicts record for record.
    let with = |want: fn(&weir_core::batch::Verdict) -> bool| -> Vec<String> {
        let mut v: Vec<String> = report
            .verdicts
            .iter()
            .zip(&ids)
            .filter(|(v, _)| want(v))
            .map(|(_, id)| id.clone())
            .collect();
        v.sort();
        v
    };
    let globex = drain_queue(&sqs, &queues[0], expect_globex, Duration::from_secs(60)).await;
    let acme = drain_queue(&sqs, &queues[1], expect_acme, Duration::from_secs(60)).await;
    let dead = drain_queue(&sqs, &dlq, expected[2], Duration::from_secs(60)).await;
    let mut delivered: Vec<String> = globex
        .iter()
        .chain(&acme)
        .map(|m| {
            body(m)["detail"]["metadata"]["eventID"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        with(|v| matches!(v, weir_core::batch::Verdict::Published)),
        "one event per published record, no duplicates"
    );
    // Each letter, read back from S3 where the queue holds a pointer to it.
    let mut letters = Vec::new();
    for m in &dead {
        letters.push(whole_letter(&config, &body(m)).await);
    }
    let pointers = dead
        .iter()
        .filter(|m| body(m).get("letterObject").is_some())
        .count();
    assert_eq!(pointers, 10, "the 300 KiB letters are in S3");
    let mut dead_ids: Vec<String> = letters
        .iter()
        .map(|l| l["record"]["eventID"].as_str().unwrap_or("").to_owned())
        .collect();
    dead_ids.sort();
    assert_eq!(
        dead_ids,
        with(|v| matches!(v, weir_core::batch::Verdict::DeadLettered { .. }))
    );
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for l in &letters {
        *kinds
            .entry(l["reason"]["kind"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        kinds,
        BTreeMap::from([("decode".to_owned(), 110), ("plugin-error".to_owned(), 100)])
    );
    assert!(
        report.retry_sequence_numbers().is_empty(),
        "nothing retried"
    );
}

/// A dead letter as the queue holds it, or, for a pointer, the whole letter from S3.
async fn whole_letter(config: &aws_config::SdkConfig, message: &Value) -> Value {
    let Some(object) = message.get("letterObject") else {
        return message.clone();
    };
    let out = weir_aws::client::s3(config)
        .get_object()
        .bucket(object["bucket"].as_str().expect("bucket"))
        .key(object["key"].as_str().expect("key"))
        .send()
        .await
        .expect("the letter is in S3");
    serde_json::from_slice(&out.body.collect().await.expect("read").into_bytes()).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_handler_picks_up_a_plugin_replaced_in_s3() {
    let fake = FakeEventBridge::start(|_, entries| accept_all(entries));
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("warm")
        .send()
        .await
        .expect("bucket");
    let put = |key: &'static str, bytes: Vec<u8>| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket("warm")
                .key(key)
                .body(bytes.into())
                .send()
                .await
                .expect("put");
        }
    };
    put(
        "plugins/p.wasm",
        std::fs::read(plugin("mapping")).expect("read"),
    )
    .await;
    let manifest = format!(
        "event_bus = \"fake\"\ndead_letter_queue = \"{}/123456789012/unused\"\n[plugins.mapping]\npath = \"plugins/p.wasm\"\n[[routes]]\ntable = \"Customers\"\nsource = \"weir.customers\"\ntenant = {{ attribute = \"tenantId\" }}\n{GLOBEX}",
        moto.endpoint()
    );
    put("weir.toml", manifest.into_bytes()).await;
    // Interval zero: every invocation checks (conditional GETs) for a new version.
    let loader = Loader::load(
        ObjectStore::with_s3(s3.clone()),
        Arc::new(PluginEngine::with_cache_dir(None).expect("engine")),
        Location::parse("s3://warm/weir.toml").expect("url"),
        Duration::ZERO,
    )
    .await
    .expect("loads from S3");
    let f = Function {
        loader: tokio::sync::Mutex::new(loader),
        publisher: Publisher::new(
            weir_aws::client::eventbridge(&sdk_config(&fake.endpoint())),
            fast_publish(),
        ),
        dead_letters: DeadLetterQueue::new(
            aws_sdk_sqs::Client::new(&config),
            format!("{}/123456789012/unused", moto.endpoint()),
            QueueConfig::default(),
        ),
        function_name: "warm".into(),
        tenant_metrics: false,
        exports: weir_aws::export::Exports::new(&config),
    };
    let types = |calls: &[Vec<Value>]| -> Vec<String> {
        calls
            .iter()
            .flatten()
            .map(|e| e["DetailType"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    handle(
        &f,
        event(globex_records(1, |_| None), Duration::from_secs(10)),
    )
    .await
    .expect("first");
    assert_eq!(types(&fake.calls()), ["CustomerChanged"]);
    put(
        "plugins/p.wasm",
        std::fs::read(plugin("echo-state")).expect("read"),
    )
    .await;
    handle(
        &f,
        event(globex_records(1, |_| None), Duration::from_secs(10)),
    )
    .await
    .expect("second");
    assert_eq!(
        types(&fake.calls()),
        ["CustomerChanged", "EchoState"],
        "the same warm function now runs the new plugin"
    );
}

/// What a backfill task test needs: moto with a bus whose rule sends globex's
/// CustomerChanged events to a queue, an export of two data files of 50 items in its S3,
/// and the function over them. The export's URL and the rule's queue come back with it.
struct TaskSetup {
    _moto: Moto,
    _dir: tempfile::TempDir,
    f: Function,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    export: String,
}

async fn task_setup(bus: &str) -> TaskSetup {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let (sqs, urls, dlq) =
        bus_queues_and_dead_letters(&config, bus, &[("CustomerChanged", "globex")]).await;
    let export = export_in_s3(&config, 2, 50, |i| format!("{:038}", 3 + i)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(dir.path(), bus, Some(&dlq), &["mapping"], GLOBEX);
    let f = function(
        &manifest,
        &moto.endpoint(),
        &moto.endpoint(),
        &dlq,
        fast_publish(),
    )
    .await;
    TaskSetup {
        queue: urls[0].clone(),
        _moto: moto,
        _dir: dir,
        f,
        sqs,
        export,
    }
}

/// A backfill task as Step Functions' Distributed Map sends it (one data file of an export
/// to S3): its items go through the pipeline to the bus and the rule's queue, and the
/// handler answers with the counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_task_publishes_one_data_file_and_returns_its_counts() {
    let TaskSetup {
        _moto,
        _dir,
        f,
        sqs,
        queue,
        export,
    } = task_setup("weir-task").await;
    let task = json!({"weirBackfill": {
        "export": export,
        "dataFileS3Key": "nightly/AWSDynamoDB/01700000000000-abcd1234/data/file-1.json.gz",
        "run": "nightly-1",
        "keys": ["tenantId", "customerId"],
    }});
    let payload: Invocation = serde_json::from_value(task).expect("a backfill task");
    let mut context = Context::default();
    context.deadline = (SystemTime::now() + Duration::from_secs(30))
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_millis() as u64;
    let counts = handle_invocation(&f, LambdaEvent::new(payload, context))
        .await
        .expect("the task runs");
    // File 1 holds items 50..100; globex's are those with i % 5 < 2: 20 of them.
    assert_eq!(counts["records"], 50, "{counts}");
    assert_eq!(counts["published"], 20, "{counts}");
    assert_eq!(counts["filtered"], 30, "{counts}");
    assert_eq!(counts["deadLettered"], 0, "{counts}");
    assert_eq!(counts["items"], 50, "{counts}");
    assert_eq!(counts["done"], true, "{counts}");
    assert!(counts.get("next").is_none(), "{counts}");
    let messages = drain_queue(&sqs, &queue, 20, Duration::from_secs(30)).await;
    assert_eq!(messages.len(), 20);
    for m in &messages {
        let body: Value = serde_json::from_str(m.body().expect("body")).expect("JSON");
        assert_eq!(body["detail"]["metadata"]["origin"], "backfill");
    }
}

/// A paced task whose file does not fit one invocation answers with `done: false` and the
/// task that continues it; invoking `next` until done, as the template's state machine
/// does, publishes every item once, with the counts summed over the invocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_backfill_task_continues_across_invocations_until_done() {
    let TaskSetup {
        _moto,
        _dir,
        f,
        sqs,
        queue,
        export,
    } = task_setup("weir-paced").await;
    // 20 entries at 10/s take 2 s; each invocation has 1 s before its reserve.
    let mut payload = json!({"weirBackfill": {
        "export": export,
        "dataFileS3Key": "nightly/AWSDynamoDB/01700000000000-abcd1234/data/file-1.json.gz",
        "run": "nightly-2",
        "keys": ["tenantId", "customerId"],
        "ratePerSecond": 10.0,
    }});
    let mut invocations = 0;
    let report = loop {
        invocations += 1;
        assert!(invocations < 20, "the task does not finish: {payload}");
        let mut context = Context::default();
        context.deadline =
            (SystemTime::now() + weir::lambda::backfill_reserve() + Duration::from_secs(1))
                .duration_since(UNIX_EPOCH)
                .expect("time")
                .as_millis() as u64;
        let task: Invocation = serde_json::from_value(payload.clone()).expect("a task");
        let report = handle_invocation(&f, LambdaEvent::new(task, context))
            .await
            .expect("the task runs");
        if report["done"] == true {
            break report;
        }
        assert!(
            report["records"].as_u64().expect("records") < 50,
            "{report}"
        );
        payload = report["next"].clone();
        assert_eq!(
            payload["weirBackfill"]["from"], report["records"],
            "{report}"
        );
        // The continuation carries the counts under the names Step Functions passes back:
        // every record count, `entries` once any is published, never a retry count.
        let carried = &payload["weirBackfill"]["counts"];
        let names: Vec<&str> = carried
            .as_object()
            .expect("counts")
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "records",
            "published",
            "filtered",
            "coalesced",
            "deadLettered",
        ];
        if report["entries"].as_u64().is_some_and(|n| n > 0) {
            expected.push("entries");
        }
        expected.sort_unstable();
        let mut names = names;
        names.sort_unstable();
        assert_eq!(names, expected, "{report}");
        for name in &expected {
            assert_eq!(carried[*name], report[*name], "{name}: {report}");
        }
    };
    assert!(invocations >= 2, "one invocation did it all: {report}");
    assert_eq!(report["records"], 50, "{report}");
    assert_eq!(report["published"], 20, "{report}");
    assert_eq!(report["filtered"], 30, "{report}");
    assert_eq!(report["entries"], 20, "{report}");
    let messages = drain_queue(&sqs, &queue, 20, Duration::from_secs(30)).await;
    let ids: std::collections::BTreeSet<String> = messages
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m.body().expect("body")).expect("JSON");
            body["detail"]["metadata"]["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 20, "each item once");
}

/// Issue 23: `{}` and a scheduled event were answered with success and zero records, and
/// an event with both `Records` and `weirBackfill` ran only the backfill. Each is now an
/// error naming what the event was (so Lambda does not count it as handled), read as the
/// runtime reads it, from the event's bytes; a stream batch still reads as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_is_neither_a_stream_batch_nor_a_task_is_an_error() {
    let read = |event: Value| serde_json::from_slice::<Invocation>(event.to_string().as_bytes());
    let scheduled = json!({
        "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-30T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/every-5-min"], "detail": {}
    });
    let both = json!({
        "Records": [stream_record(1, "a", "globex", json!({}))],
        "weirBackfill": {"export": "s3://b/p", "dataFileS3Key": "k", "run": "r", "keys": ["pk"]}
    });
    for (event, says) in [
        (json!({}), "it has no keys"),
        (scheduled, "\"detail-type\""),
        (both, "both Records (a stream batch) and weirBackfill"),
        (json!({"Records": 3}), "invalid type"),
        (json!("Records"), "a DynamoDB Streams batch"),
    ] {
        let err = read(event.clone()).expect_err(&format!("{event} is refused"));
        assert!(err.to_string().contains(says), "{event}: {err}");
    }
    // A hostile key is quoted, shortened, and the count of the rest given.
    let mut hostile = serde_json::Map::new();
    hostile.insert(format!("\n{}", "x".repeat(500)), json!(1));
    for i in 0..10 {
        hostile.insert(format!("k{i}"), json!(i));
    }
    let err = read(Value::Object(hostile))
        .expect_err("refused")
        .to_string();
    assert!(
        !err.contains('\n') && err.len() < 600 && err.contains("and 3 more"),
        "{err}"
    );

    // A stream batch, even an empty one, is still one.
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let (_sqs, _urls, dlq) = bus_queues_and_dead_letters(&config, "weir-shape", &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(dir.path(), "weir-shape", Some(&dlq), &["mapping"], GLOBEX);
    let f = function(
        &manifest,
        &moto.endpoint(),
        &moto.endpoint(),
        &dlq,
        fast_publish(),
    )
    .await;
    let empty = read(json!({"Records": []})).expect("an empty stream batch");
    assert!(matches!(&empty, Invocation::Stream(b) if b.records.is_empty()));
    let mut context = Context::default();
    context.deadline = (SystemTime::now() + Duration::from_secs(10))
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_millis() as u64;
    let answer = handle_invocation(&f, LambdaEvent::new(empty, context))
        .await
        .expect("handled");
    assert_eq!(answer, json!({"batchItemFailures": []}));
}

/// Issue 23: a record whose dead letter SQS cannot take (1.1 MB: NEW_AND_OLD_IMAGES of a
/// 400 KB item; or 300 KB on a queue limited to 256 KB) was retried on every invocation,
/// blocking its shard. Now the letter is kept whole in S3 and the queue gets a signed
/// pointer with the object's sha256: the handler hands nothing back to Lambda.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_the_queue_goes_to_s3_with_a_signed_pointer() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let sqs = aws_sdk_sqs::Client::new(&config);
    bus_with_rules(
        &aws_sdk_eventbridge::Client::new(&config),
        &sqs,
        "weir-big",
        &[],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (queue_limit, padding) in [(None, 1_100_000), (Some(262_144), 300_000)] {
        let (dlq, _) = create_queue(
            &sqs,
            &format!("big-dlq-{}", queue_limit.unwrap_or(0)),
            queue_limit,
        )
        .await;
        let manifest = write_manifest(dir.path(), "weir-big", Some(&dlq), &["mapping"], GLOBEX);
        let f = function(
            &manifest,
            &moto.endpoint(),
            &moto.endpoint(),
            &dlq,
            fast_publish(),
        )
        .await;
        // A record that fails decoding (an N that is not a number), made large by its image.
        let mut records = globex_records(3, |_| None);
        records[1]["dynamodb"]["NewImage"]["lifetimeValue"] = json!({"N": "12abc"});
        records[1]["dynamodb"]["OldImage"] = json!({"blob": {"S": "x".repeat(padding)}});
        let sent_record = records[1].to_string();
        let response = handle(&f, event(records, Duration::from_secs(20)))
            .await
            .expect("handler");
        assert_eq!(
            failures(&response),
            Vec::<String>::new(),
            "nothing is retried (queue limit {queue_limit:?})"
        );
        let letters = drain_queue(&sqs, &dlq, 1, Duration::from_secs(10)).await;
        assert_eq!(letters.len(), 1);
        let pointer = letters[0].body().expect("body");
        let mac = letters[0]
            .message_attributes()
            .and_then(|a| a.get(weir_aws::dead_letter::MAC_ATTRIBUTE))
            .and_then(|v| v.string_value())
            .expect("the pointer is signed");
        assert!(letter_key().verify(pointer, mac));
        let p: Value = serde_json::from_str(pointer).expect("JSON");
        assert_eq!(p["reason"]["kind"], "decode", "{p}");
        assert_eq!(p["letterObject"]["bucket"], "weir-dead-letters");
        let object = weir_aws::client::s3(&config)
            .get_object()
            .bucket("weir-dead-letters")
            .key(p["letterObject"]["key"].as_str().expect("key"))
            .send()
            .await
            .expect("the whole letter is in S3");
        let bytes = object.body.collect().await.expect("read").into_bytes();
        use sha2::Digest as _;
        assert_eq!(
            p["letterObject"]["sha256"],
            hex::encode(sha2::Sha256::digest(&bytes))
        );
        assert_eq!(p["letterObject"]["bytes"], bytes.len());
        let letter: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            letter["record"].to_string(),
            sent_record,
            "the record, whole"
        );
        assert_eq!(letter["reason"]["kind"], "decode");
    }
}
