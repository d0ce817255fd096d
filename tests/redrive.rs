//! Redrive against a real moto server (SQS, EventBridge): weir's dead letters run again
//! through the current manifest, and an API destination's dead letters put back on the bus.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use support::*;
use weir::batch;
use weir::dead_letter::DeadLetterSink;
use weir::dead_letter::{DeadLetterQueue, QueueConfig};
use weir::plugin::PluginEngine;
use weir::publish::{PublishConfig, Publisher};
use weir::reload::Loader;
use weir::store::{Location, Store};

fn raw(records: &[Value]) -> Vec<Box<RawValue>> {
    records
        .iter()
        .map(|r| RawValue::from_string(r.to_string()).expect("raw"))
        .collect()
}

fn engine() -> Arc<PluginEngine> {
    Arc::new(PluginEngine::with_cache_dir(None).expect("engine"))
}

async fn bus_to_queue(events: &aws_sdk_eventbridge::Client, bus: &str, queue_arn: &str) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_after_a_fix_publishes_and_empties_weirs_dead_letter_queue() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let sqs = aws_sdk_sqs::Client::new(&config);
    let events = aws_sdk_eventbridge::Client::new(&config);
    let (dlq, _) = create_queue(&sqs, "redrive-dlq", None).await;
    let (out, out_arn) = create_queue(&sqs, "redrive-out", None).await;
    bus_to_queue(&events, "redrive-bus", &out_arn).await;
    let publisher = Publisher::new(weir::aws::eventbridge(&config), PublishConfig::default());
    let dead_letters = DeadLetterQueue::new(sqs.clone(), &dlq, QueueConfig::default());
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
        Store::default(),
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
        Store::default(),
        engine(),
        Location::File(fixed),
        Duration::from_secs(3600),
    )
    .await
    .expect("loads");
    let mut progress = Vec::new();
    let dry = weir::redrive::dead_letters(&sqs, &dlq, loader.pipeline(), None, |d, t| {
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

    let done =
        weir::redrive::dead_letters(&sqs, &dlq, loader.pipeline(), Some(&publisher), |d, t| {
            progress.push((d, t))
        })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_of_a_delivery_queue_puts_the_events_back_on_the_bus() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint());
    let sqs = aws_sdk_sqs::Client::new(&config);
    let events = aws_sdk_eventbridge::Client::new(&config);
    let (delivery_dlq, _) = create_queue(&sqs, "api-destination-dlq", None).await;
    let (out, out_arn) = create_queue(&sqs, "delivered", None).await;
    bus_to_queue(&events, "delivery-bus", &out_arn).await;
    // What an API destination's dead-letter queue holds: the EventBridge event itself.
    for i in 0..3 {
        let event = json!({
            "version": "0", "id": format!("ev-{i}"), "detail-type": "CustomerChanged",
            "source": "weir.customers", "account": "123456789012", "time": "2026-11-30T00:00:00Z",
            "region": "us-east-1", "resources": [],
            "detail": {"metadata": {"id": format!("m-{i}")}, "payload": {"tiny": 0.000000000000000000000000000000000001}}
        });
        sqs.send_message()
            .queue_url(&delivery_dlq)
            .message_body(event.to_string())
            .message_attributes(
                "ERROR_CODE",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("SDK_CLIENT_ERROR")
                    .build()
                    .expect("attr"),
            )
            .send()
            .await
            .expect("send");
    }
    let publisher = Publisher::new(weir::aws::eventbridge(&config), PublishConfig::default());
    let report = weir::redrive::deliveries(
        &sqs,
        &delivery_dlq,
        "delivery-bus",
        Some(&publisher),
        |_, _| {},
    )
    .await
    .expect("redrive");
    assert_eq!((report.received, report.done, report.left), (3, 3, 0));
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
    assert_eq!(ids, ["m-0", "m-1", "m-2"]);
    assert!(
        drain_queue(&sqs, &delivery_dlq, 0, Duration::from_secs(2))
            .await
            .is_empty(),
        "the delivery queue is empty"
    );
}
