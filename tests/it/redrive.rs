//! Redrive against a real moto server (SQS, EventBridge): weir's dead letters run again
//! through the current manifest, and an API destination's dead letters put back on the bus.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use weir_aws::dead_letter::DeadLetterSink;
use weir_aws::dead_letter::{DeadLetterQueue, LetterKey, MAC_ATTRIBUTE, Overflow, QueueConfig};
use weir_aws::publish::{PublishConfig, Publisher};
use weir_aws::redrive::{DeliveryCheck, RedriveOptions};
use weir_aws::store::ObjectStore;
use weir_core::batch;
use weir_core::location::Location;
use weir_runtime::loader::Loader;
use weir_runtime::plugin::PluginEngine;

fn raw(records: &[Value]) -> Vec<Box<RawValue>> {
    records
        .iter()
        .map(|r| RawValue::from_string(r.to_string()).expect("raw"))
        .collect()
}

/// The dead-letter key of these tests (in production, a Secrets Manager secret).
fn key() -> LetterKey {
    LetterKey::new(b"weir-test-dead-letter-key-0123456789abcdef", "test").expect("key")
}

/// Redrive options that check letters with the test key.
fn signed() -> RedriveOptions {
    RedriveOptions {
        key: Some(key()),
        ..RedriveOptions::default()
    }
}

fn engine() -> Arc<PluginEngine> {
    Arc::new(PluginEngine::with_cache_dir(None).expect("engine"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_after_a_fix_publishes_and_empties_weirs_dead_letter_queue() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let sqs = aws_sdk_sqs::Client::new(&config);
    let events = aws_sdk_eventbridge::Client::new(&config);
    let (dlq, _) = create_queue(&sqs, "redrive-dlq", None).await;
    let (out, out_arn) = create_queue(&sqs, "redrive-out", None).await;
    bus_to_queue(&events, "redrive-bus", &out_arn).await;
    let publisher = Publisher::new(
        weir_aws::client::eventbridge(&config),
        PublishConfig::default(),
    );
    let dead_letters =
        DeadLetterQueue::new(sqs.clone(), &dlq, QueueConfig::default()).with_key(key());
    let dir = tempfile::tempdir().expect("tempdir");

    // A broken config: the salesforce plugin rejects every record.
    let broken = write_manifest(
        dir.path(),
        "redrive-bus",
        Some(&dlq),
        &["salesforce-account"],
        "[tenants.acme]\nplugin = \"salesforce-account\"\n",
    );
    let mut loader = Loader::load(
        ObjectStore::default(),
        engine(),
        Location::File(broken),
        Duration::from_secs(3600),
    )
    .await
    .expect("loads");
    let mut records: Vec<Value> = (1..=12)
        .map(|i| stream_record(i, &format!("r{i}"), "acme", json!({})))
        .collect();
    // One record the fix will not cure: it has no name.
    records[4]["dynamodb"]["NewImage"]
        .as_object_mut()
        .map(|m| m.remove("name"));
    let report = batch::run(
        loader.current().await,
        raw(&records),
        Some(&publisher),
        DeadLetterSink::Queue(&dead_letters),
        tokio::time::Instant::now() + Duration::from_secs(30),
    )
    .await
    .expect("batch");
    assert_eq!(report.counts().dead_lettered, 12);

    // The fix: the config the plugin needs.
    let fixed = write_manifest(
        dir.path(),
        "redrive-bus",
        Some(&dlq),
        &["salesforce-account"],
        "[tenants.acme]\nplugin = \"salesforce-account\"\nconfig = { external_id_field = \"Ext__c\" }\n",
    );
    let loader = Loader::load(
        ObjectStore::default(),
        engine(),
        Location::File(fixed),
        Duration::from_secs(3600),
    )
    .await
    .expect("loads");
    let mut progress = Vec::new();
    let dry =
        weir_aws::redrive::dead_letters(&sqs, &dlq, loader.pipeline(), None, &signed(), |d, t| {
            progress.push((d, t))
        })
        .await
        .expect("dry run");
    assert_eq!((dry.received, dry.done, dry.left), (12, 11, 1));
    assert!(
        drain_queue(&sqs, &out, 0, Duration::from_secs(2))
            .await
            .is_empty(),
        "a dry run publishes nothing"
    );

    let done = weir_aws::redrive::dead_letters(
        &sqs,
        &dlq,
        loader.pipeline(),
        Some(&publisher),
        &signed(),
        |d, t| progress.push((d, t)),
    )
    .await
    .expect("redrive");
    assert_eq!((done.received, done.done, done.left), (12, 11, 1));
    assert_eq!(progress.last(), Some(&(12, 12)));
    let arrived = drain_queue(&sqs, &out, 11, Duration::from_secs(20)).await;
    assert_eq!(arrived.len(), 11);
    // The record that fails again is still there, received once more each time.
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("attrs");
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        1
    );
    let dry_line = dry
        .lines
        .iter()
        .filter(|l| l.contains("fails again (plugin-error)"))
        .count();
    assert_eq!(dry_line, 1, "{:?}", dry.lines);
}

/// An event as an API destination's dead-letter queue holds it, with the attributes
/// EventBridge adds; `rule` is the RULE_ARN attribute (`None`: no attributes at all).
async fn put_delivery_event(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    event: &Value,
    rule: Option<&str>,
) {
    let attr = |v: &str| {
        aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .expect("attr")
    };
    let mut send = sqs
        .send_message()
        .queue_url(queue)
        .message_body(event.to_string());
    if let Some(rule) = rule {
        send = send
            .message_attributes("RULE_ARN", attr(rule))
            .message_attributes(
                "TARGET_ARN",
                attr("arn:aws:events:us-east-1:123456789012:api-destination/crm/abc"),
            )
            .message_attributes("ERROR_CODE", attr("SDK_CLIENT_ERROR"))
            .message_attributes(
                "ERROR_MESSAGE",
                attr("Unable to invoke ApiDestination endpoint"),
            );
    }
    send.send().await.expect("send");
}

/// An API destination's dead-letter queue: the events a rule of this bus put there go back
/// on the bus; issue 23: forged ones (any source, any tenant, no EventBridge attributes, a
/// rule of another bus) were put back too. Now they stay, counted as not weir's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_of_a_delivery_queue_puts_back_only_this_buses_events() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let sqs = aws_sdk_sqs::Client::new(&config);
    let events = aws_sdk_eventbridge::Client::new(&config);
    let (delivery_dlq, _) = create_queue(&sqs, "api-destination-dlq", None).await;
    let (out, out_arn) = create_queue(&sqs, "delivered", None).await;
    bus_to_queue(&events, "delivery-bus", &out_arn).await;
    let rule = "arn:aws:events:us-east-1:123456789012:rule/delivery-bus/crm";
    let event = |i: usize, source: &str, tenant: &str| {
        json!({
            "version": "0", "id": format!("ev-{i}"), "detail-type": "CustomerChanged",
            "source": source, "account": "123456789012", "time": "2026-11-30T00:00:00Z",
            "region": "us-east-1", "resources": [],
            "detail": {"metadata": {"id": format!("m-{i}"), "tenant": tenant}, "payload": {"tiny": 0.000000000000000000000000000000000001}}
        })
    };
    for i in 0..3 {
        put_delivery_event(
            &sqs,
            &delivery_dlq,
            &event(i, "weir.customers", "acme"),
            Some(rule),
        )
        .await;
    }
    // Forged: no EventBridge attributes; a source no route publishes; a tenant the
    // manifest does not serve; a rule of another bus.
    put_delivery_event(
        &sqs,
        &delivery_dlq,
        &event(10, "weir.customers", "acme"),
        None,
    )
    .await;
    put_delivery_event(
        &sqs,
        &delivery_dlq,
        &event(11, "evil.source", "acme"),
        Some(rule),
    )
    .await;
    put_delivery_event(
        &sqs,
        &delivery_dlq,
        &event(12, "weir.customers", "mallory"),
        Some(rule),
    )
    .await;
    put_delivery_event(
        &sqs,
        &delivery_dlq,
        &event(13, "weir.customers", "acme"),
        Some("arn:aws:events:us-east-1:999999999999:rule/delivery-bus/crm"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest_path = write_manifest(
        dir.path(),
        "delivery-bus",
        None,
        &["mapping"],
        "[tenants.acme]\nplugin = \"mapping\"\n",
    );
    let manifest = weir_core::manifest::Manifest::parse(
        &std::fs::read_to_string(&manifest_path).expect("read"),
        weir_core::location::Location::File(manifest_path.clone()),
    )
    .expect("manifest");
    let publisher = Publisher::new(
        weir_aws::client::eventbridge(&config),
        PublishConfig::default(),
    );
    let bus_arn = publisher.check_bus("delivery-bus").await.expect("bus");
    let check = DeliveryCheck::new(&manifest, &bus_arn);
    let report = weir_aws::redrive::deliveries(
        &sqs,
        &delivery_dlq,
        "delivery-bus",
        &check,
        Some(&publisher),
        |_, _| {},
    )
    .await
    .expect("redrive");
    assert_eq!(
        (report.received, report.done, report.left, report.not_weirs),
        (7, 3, 4, 4),
        "{:?}",
        report.lines
    );
    for why in [
        "no RULE_ARN attribute",
        "source \"evil.source\" is not one the manifest's routes publish",
        "tenant \"mallory\" is not one the manifest serves",
        "is not a rule of this bus",
    ] {
        assert!(
            report
                .lines
                .iter()
                .any(|l| l.contains("not weir's") && l.contains(why)),
            "{why}: {:?}",
            report.lines
        );
    }
    let arrived = drain_queue(&sqs, &out, 3, Duration::from_secs(20)).await;
    let mut ids: Vec<String> = arrived
        .iter()
        .map(|m| {
            // (moto re-serialises what it delivers, so digit-exactness is shown in
            // redrive's own unit test, not here.)
            let body = m.body().unwrap_or_default();
            let e: Value = serde_json::from_str(body).expect("JSON");
            e["detail"]["metadata"]["id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["m-0", "m-1", "m-2"],
        "only this bus's events went back"
    );
    assert_eq!(
        drain_queue(&sqs, &delivery_dlq, 4, Duration::from_secs(5))
            .await
            .len(),
        4,
        "the forged events are still in the delivery queue"
    );
}

const BROKEN: &str = "[tenants.acme]\nplugin = \"salesforce-account\"\n";
const FIXED: &str = "[tenants.acme]\nplugin = \"salesforce-account\"\nconfig = { external_id_field = \"Ext__c\" }\n";

/// moto with a bus whose rule copies weir.customers events to a queue, weir's dead-letter
/// queue (`limit`: its MaximumMessageSize) and the dead-letter bucket.
struct Setup {
    _moto: Moto,
    dir: tempfile::TempDir,
    config: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    dlq: String,
    out: String,
    publisher: Publisher,
}

async fn setup(name: &str, limit: Option<usize>) -> Setup {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let sqs = aws_sdk_sqs::Client::new(&config);
    let (dlq, _) = create_queue(&sqs, &format!("{name}-dlq"), limit).await;
    let (out, out_arn) = create_queue(&sqs, &format!("{name}-out"), None).await;
    bus_to_queue(&aws_sdk_eventbridge::Client::new(&config), name, &out_arn).await;
    weir_aws::client::s3(&config)
        .create_bucket()
        .bucket("weir-dead-letters")
        .send()
        .await
        .expect("bucket");
    Setup {
        publisher: Publisher::new(
            weir_aws::client::eventbridge(&config),
            PublishConfig::default(),
        ),
        _moto: moto,
        dir: tempfile::tempdir().expect("tempdir"),
        config,
        sqs,
        dlq,
        out,
    }
}

impl Setup {
    async fn loader(&self, bus: &str, tenants: &str) -> Loader {
        let manifest = write_manifest(
            self.dir.path(),
            bus,
            Some(&self.dlq),
            &["salesforce-account"],
            tenants,
        );
        Loader::load(
            ObjectStore::default(),
            engine(),
            Location::File(manifest),
            Duration::from_secs(3600),
        )
        .await
        .expect("loads")
    }

    /// Runs `records` through a config that rejects them all, into the dead-letter queue
    /// (signed, with letters too large for it in S3).
    async fn dead_letter(&self, bus: &str, records: &[Value]) {
        let queue = DeadLetterQueue::new(self.sqs.clone(), &self.dlq, QueueConfig::default())
            .with_key(key())
            .with_overflow(Overflow::new(
                weir_aws::client::s3(&self.config),
                "weir-dead-letters",
            ));
        let report = batch::run(
            self.loader(bus, BROKEN).await.current().await,
            raw(records),
            Some(&self.publisher),
            DeadLetterSink::Queue(&queue),
            tokio::time::Instant::now() + Duration::from_secs(30),
        )
        .await
        .expect("batch");
        assert_eq!(report.counts().dead_lettered, records.len());
    }

    async fn redrive(
        &self,
        loader: &Loader,
        options: &RedriveOptions,
    ) -> weir_aws::redrive::RedriveReport {
        weir_aws::redrive::dead_letters(
            &self.sqs,
            &self.dlq,
            loader.pipeline(),
            Some(&self.publisher),
            options,
            |_, _| {},
        )
        .await
        .expect("redrive")
    }

    /// The eventIDs that arrived on the bus's queue.
    async fn published(&self, expected: usize) -> Vec<String> {
        let mut ids: Vec<String> =
            drain_queue(&self.sqs, &self.out, expected, Duration::from_secs(20))
                .await
                .iter()
                .map(|m| {
                    let e: Value =
                        serde_json::from_str(m.body().unwrap_or_default()).expect("JSON");
                    e["detail"]["metadata"]["eventID"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
        ids.sort();
        ids
    }

    async fn send(&self, body: &str, mac: Option<&str>) {
        let mut send = self
            .sqs
            .send_message()
            .queue_url(&self.dlq)
            .message_body(body);
        if let Some(mac) = mac {
            send = send.message_attributes(
                MAC_ATTRIBUTE,
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(mac)
                    .build()
                    .expect("attr"),
            );
        }
        send.send().await.expect("send");
    }
}

/// Issue 23: a message someone else sent to the dead-letter queue (`{"record": ...}` with
/// an eventID and sequence number of their choosing) was published as a genuine event.
/// Now only letters with weir's MAC are taken; an unsigned one (as letters written before
/// this change are) only with `accept_unsigned`, and one with a wrong MAC never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_publishes_only_letters_weir_signed() {
    let s = setup("signed-bus", None).await;
    s.dead_letter(
        "signed-bus",
        &[stream_record(1, "genuine", "acme", json!({}))],
    )
    .await;
    let mut forged_record = stream_record(2, "forged", "acme", json!({}));
    forged_record["dynamodb"]["SequenceNumber"] = json!("9".repeat(40));
    let forged = json!({"record": forged_record}).to_string();
    s.send(&forged, None).await;
    let mut other_key = stream_record(3, "other-key", "acme", json!({}));
    other_key["dynamodb"]["SequenceNumber"] = json!("8".repeat(40));
    let other = json!({"weirVersion": "0.1.0", "reason": {"kind": "decode", "message": "x", "blame": "record"}, "tenant": "acme", "plugin": null, "record": other_key}).to_string();
    let wrong = LetterKey::new(&[7u8; 32], "attacker's").expect("key");
    s.send(&other, Some(&wrong.sign(&other))).await;

    let fixed = s.loader("signed-bus", FIXED).await;
    let report = s.redrive(&fixed, &signed()).await;
    assert_eq!(
        (report.received, report.done, report.left, report.not_weirs),
        (3, 1, 2, 2),
        "{:?}",
        report.lines
    );
    assert_eq!(
        report
            .lines
            .iter()
            .filter(|l| l.contains("not weir's"))
            .count(),
        2,
        "{:?}",
        report.lines
    );
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("MAC does not match"))
    );
    assert_eq!(s.published(1).await, ["genuine"]);

    // After review, the unsigned letter may go; the one with a wrong MAC never does.
    let report = s
        .redrive(
            &fixed,
            &RedriveOptions {
                accept_unsigned: true,
                ..signed()
            },
        )
        .await;
    assert_eq!(
        (report.received, report.done, report.left, report.not_weirs),
        (2, 1, 1, 1),
        "{:?}",
        report.lines
    );
    assert_eq!(s.published(1).await, ["forged"]);
}

/// Issue 23: a letter whose tenant the current manifest no longer has was counted as
/// filtered and deleted: the record was gone. It stays, counted as kept for want of a
/// route, unless the operator says to delete such letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_keeps_a_letter_the_manifest_has_no_tenant_for() {
    let s = setup("kept-bus", None).await;
    s.dead_letter("kept-bus", &[stream_record(1, "a-1", "acme", json!({}))])
        .await;
    let without_acme = s
        .loader(
            "kept-bus",
            "[tenants.globex]\nplugin = \"salesforce-account\"\nconfig = { external_id_field = \"Ext__c\" }\n",
        )
        .await;
    let report = s.redrive(&without_acme, &signed()).await;
    assert_eq!(
        (report.received, report.done, report.left, report.unroutable),
        (1, 0, 1, 1),
        "{:?}",
        report.lines
    );
    assert!(
        report.lines[0].contains("kept: no route (no tenant entry for its tenant"),
        "{:?}",
        report.lines
    );
    // Still there: the operator can add the tenant back, or delete it on purpose.
    let report = s
        .redrive(
            &without_acme,
            &RedriveOptions {
                delete_unroutable: true,
                ..signed()
            },
        )
        .await;
    assert_eq!(
        (report.received, report.done, report.left),
        (1, 1, 0),
        "{:?}",
        report.lines
    );
    assert!(
        drain_queue(&s.sqs, &s.dlq, 0, Duration::from_secs(2))
            .await
            .is_empty()
    );
}

/// A letter too large for its queue (300 KB on a 256 KiB queue) is kept in S3 with a signed
/// pointer; redrive reads it back, refuses it while the object does not match the
/// pointer's sha256, publishes it once it does, and deletes the object after the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_kept_in_s3_is_checked_redriven_and_its_object_deleted() {
    let s = setup("s3-bus", Some(262_144)).await;
    let big = stream_record(
        1,
        "big",
        "acme",
        json!({"blob": {"S": "x".repeat(300_000)}}),
    );
    s.dead_letter("s3-bus", std::slice::from_ref(&big)).await;
    let s3 = weir_aws::client::s3(&s.config);
    let listed = s3
        .list_objects_v2()
        .bucket("weir-dead-letters")
        .send()
        .await
        .expect("list");
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let original = s3
        .get_object()
        .bucket("weir-dead-letters")
        .key(&keys[0])
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("read")
        .into_bytes();
    let put = |bytes: Vec<u8>| {
        s3.put_object()
            .bucket("weir-dead-letters")
            .key(&keys[0])
            .body(bytes.into())
            .send()
    };
    // Someone rewrites the object: its record is not what weir kept.
    let tampered = String::from_utf8(original.to_vec())
        .expect("UTF-8")
        .replace("\"big\"", "\"bad\"");
    put(tampered.into_bytes()).await.expect("put");
    let fixed = s.loader("s3-bus", FIXED).await;
    let options = RedriveOptions {
        s3: Some(s3.clone()),
        ..signed()
    };
    let report = s.redrive(&fixed, &options).await;
    assert_eq!((report.done, report.left), (0, 1), "{:?}", report.lines);
    assert!(
        report.lines[0].contains("are not the letter's"),
        "{:?}",
        report.lines
    );
    put(original.to_vec()).await.expect("put");
    let report = s.redrive(&fixed, &options).await;
    assert_eq!((report.done, report.left), (1, 0), "{:?}", report.lines);
    assert_eq!(s.published(1).await, ["big"]);
    let left = s3
        .list_objects_v2()
        .bucket("weir-dead-letters")
        .send()
        .await
        .expect("list");
    assert!(left.contents().is_empty(), "the object is deleted");
}
