//! `batch::run`'s accounting, with in-memory sinks, no emulator and no plugin runtime (this
//! crate links neither wasmtime nor an AWS SDK): every record ends as exactly one of
//! published, filtered, coalesced, dead-lettered or retried, whatever EventBridge and the dead-letter
//! queue do. The event sink is a scripted in-memory PutEvents driven by weir's own retry
//! driver (`retry::drive`), so throttling, partial failures and the deadline go through the
//! same code as in the function; the dead-letter sink can refuse letters. The plugin is a
//! transformer written in Rust behind the core's traits (the runtime's tests cover real
//! components): it maps a customer's `name` to `{"Name": ...}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::time::Instant;
use weir_core::batch::{self, Verdict};
use weir_core::location::Location;
use weir_core::manifest::{Limits, Manifest};
use weir_core::model::{DeadLetter, DeadLetterKind, Entry, PluginRef};
use weir_core::pipeline::Pipeline;
use weir_core::record::LazyRecord;
use weir_core::retry::{self, BatchCall, CallOutcome, ItemOutcome, RetryPolicy};
use weir_core::sink::{DeadLetterStore, EntryResult, EventSink, PublishReport};
use weir_core::transform::{
    CallCost, CallError, CallReport, Instance, Loaded, Plugin, PluginEvent,
};

/// The mapping: `{"Name": name}` for the customer's new image, to the `crm` destination.
struct NameMapping(Arc<PluginRef>);

struct NameInstance;

impl Plugin for NameMapping {
    type Instance = NameInstance;

    fn reference(&self) -> &Arc<PluginRef> {
        &self.0
    }

    fn instantiate(&self, _tenant: &str, _limits: Limits) -> Result<NameInstance, CallError> {
        Ok(NameInstance)
    }
}

impl Instance for NameInstance {
    fn transform(&mut self, record: &LazyRecord<'_>, _config_json: &str) -> CallReport {
        let Ok(record) = record.decoded() else {
            panic!("the test's records decode");
        };
        let image: Value = record
            .new_image
            .as_deref()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        let result = match image["name"].as_str() {
            Some(name) => Ok(vec![PluginEvent {
                destination: "crm".to_owned(),
                detail_type: "CustomerChanged".to_owned(),
                detail: json!({ "Name": name }).to_string(),
                resources: vec![],
            }]),
            None => Err(CallError::Rejected("no name".to_owned())),
        };
        CallReport {
            result,
            cost: CallCost {
                elapsed: Duration::ZERO,
                fuel: None,
                memory_bytes: 0,
                limits: Limits::default(),
            },
        }
    }
}

/// What the in-memory PutEvents does with an entry, chosen by the record's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Accepted at once.
    Accept,
    /// `ThrottlingException` for the first `n` attempts, then accepted.
    ThrottleThenAccept(u32),
    /// `ThrottlingException` on every attempt: still failing when time runs out.
    ThrottleForever,
    /// `InvalidArgument`: refused for good, so its record is dead-lettered.
    Reject,
}

/// An in-memory PutEvents: each entry's fate comes from the name in its detail.
struct ScriptedEventBridge {
    fates: BTreeMap<String, Fate>,
    attempts: Mutex<BTreeMap<String, u32>>,
    /// Entries the fake saw accepted, by name.
    accepted: Mutex<Vec<String>>,
    policy: RetryPolicy,
}

impl ScriptedEventBridge {
    fn new(fates: BTreeMap<String, Fate>) -> Self {
        ScriptedEventBridge {
            fates,
            attempts: Mutex::default(),
            accepted: Mutex::default(),
            policy: RetryPolicy {
                max_concurrency: 2,
                safety_margin: Duration::from_millis(20),
                base_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(5),
            },
        }
    }
}

fn name_of(entry: &Entry) -> String {
    let detail: Value = serde_json::from_str(&entry.detail).expect("detail JSON");
    detail["payload"]["Name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// One publish: the scripted API behind weir's retry driver.
struct Calls<'a> {
    api: &'a ScriptedEventBridge,
    entries: &'a [Entry],
}

impl BatchCall for Calls<'_> {
    type Result = EntryResult;
    const NAME: &'static str = "PutEvents (in memory)";

    fn pack(&self, pending: &[usize]) -> Vec<Vec<usize>> {
        retry::pack(pending, |i| self.entries[i].size(), 10, 1 << 20)
    }

    fn size(&self, item: usize) -> usize {
        self.entries[item].size()
    }

    async fn call(&self, items: &[usize], _remaining: Duration) -> CallOutcome<EntryResult> {
        let mut attempts = self.api.attempts.lock().expect("attempts");
        let outcomes = items
            .iter()
            .map(|&i| {
                let name = name_of(&self.entries[i]);
                let attempt = attempts.entry(name.clone()).or_default();
                *attempt += 1;
                let throttled = ItemOutcome::Retry("ThrottlingException: slow down".to_owned());
                match self.api.fates.get(&name).copied().unwrap_or(Fate::Accept) {
                    Fate::ThrottleThenAccept(n) if *attempt <= n => throttled,
                    Fate::ThrottleForever => throttled,
                    Fate::Reject => ItemOutcome::Done(EntryResult::Rejected {
                        code: "InvalidArgument".to_owned(),
                        message: "no".to_owned(),
                    }),
                    Fate::Accept | Fate::ThrottleThenAccept(_) => {
                        self.api.accepted.lock().expect("accepted").push(name);
                        ItemOutcome::Done(EntryResult::Accepted)
                    }
                }
            })
            .collect();
        CallOutcome::Items(outcomes)
    }

    fn unsent(&self, reason: String) -> EntryResult {
        EntryResult::Unpublished { reason }
    }
}

impl EventSink for &ScriptedEventBridge {
    async fn send(&self, entries: &[Entry], deadline: Instant) -> PublishReport {
        let calls = Calls { api: self, entries };
        retry::drive(&calls, vec![None; entries.len()], self.policy, deadline)
            .await
            .into()
    }
}

/// A dead-letter queue in memory that refuses the letters of the records named in `refuse`.
#[derive(Default)]
struct MemoryQueue {
    refuse: Vec<String>,
    kept: Vec<DeadLetter>,
}

impl DeadLetterStore for &mut MemoryQueue {
    async fn keep(
        &mut self,
        letters: &[DeadLetter],
        _deadline: Instant,
    ) -> Vec<Result<(), weir_core::sink::KeepError>> {
        letters
            .iter()
            .map(|l| {
                let record: Value = serde_json::from_str(l.record.get()).expect("record");
                let name = record["dynamodb"]["NewImage"]["name"]["S"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if self.refuse.contains(&name) {
                    Err(weir_core::sink::KeepError::Refused(
                        "the queue refused it".to_owned(),
                    ))
                } else {
                    self.kept.push(l.clone());
                    Ok(())
                }
            })
            .collect()
    }
}

fn pipeline() -> Arc<Pipeline<Loaded<NameMapping>>> {
    let text = "event_bus = \"accounting\"\n[plugins.mapping]\npath = \"mapping.wasm\"\n\
         [[routes]]\ntable = \"Customers\"\nsource = \"weir.customers\"\ntenant = { attribute = \"tenantId\" }\n\
         [tenants.globex]\nplugin = \"mapping\"\n";
    let manifest =
        Manifest::parse(text, Location::File("/weir/weir.toml".into())).expect("manifest");
    let mapping = NameMapping(Arc::new(PluginRef {
        name: "mapping".to_owned(),
        sha256: "0".repeat(64),
    }));
    let slots = [("mapping".to_owned(), Arc::new(Loaded(Arc::new(mapping))))].into();
    Arc::new(Pipeline::new(manifest, slots))
}

/// A DynamoDB Streams INSERT into Customers for `tenant`, with `extra` attributes.
fn stream_record(seq: u64, event_id: &str, tenant: &str, extra: Value) -> Value {
    let mut image = json!({
        "tenantId": {"S": tenant},
        "customerId": {"S": format!("C-{seq}")},
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
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/Customers/stream/2026-01-01T00:00:00.000",
        "dynamodb": {
            "Keys": {"tenantId": {"S": tenant}, "customerId": {"S": format!("C-{seq}")}},
            "NewImage": image,
            "SequenceNumber": format!("{seq:021}"),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

/// A record for globex named `name`, or for a tenant with no entry (filtered), or broken
/// (dead-lettered as `decode`).
fn record(seq: u64, kind: &str, name: &str) -> Box<RawValue> {
    let value = match kind {
        "filtered" => stream_record(seq, &format!("ev-{seq}"), "nobody", json!({})),
        "broken" => json!({"eventID": format!("ev-{seq}"), "eventName": "INSERT"}),
        _ => stream_record(
            seq,
            &format!("ev-{seq}"),
            "globex",
            json!({"name": {"S": name}}),
        ),
    };
    RawValue::from_string(value.to_string()).expect("raw")
}

struct Case {
    fates: Vec<(&'static str, Fate)>,
    refuse: Vec<&'static str>,
    filtered: usize,
    broken: usize,
    deadline: Duration,
}

/// Runs a case; returns the verdicts by record name (`filtered-N`, `broken-N` for the others).
async fn run(case: Case) -> BTreeMap<String, Verdict> {
    let pipeline = pipeline();
    let mut records = Vec::new();
    let mut names = Vec::new();
    let mut seq = 0;
    for (name, _) in &case.fates {
        seq += 1;
        records.push(record(seq, "globex", name));
        names.push(name.to_string());
    }
    for i in 0..case.filtered {
        seq += 1;
        records.push(record(seq, "filtered", ""));
        names.push(format!("filtered-{i}"));
    }
    for i in 0..case.broken {
        seq += 1;
        records.push(record(seq, "broken", ""));
        names.push(format!("broken-{i}"));
    }
    let api = ScriptedEventBridge::new(
        case.fates
            .iter()
            .map(|(n, f)| (n.to_string(), *f))
            .collect(),
    );
    let mut queue = MemoryQueue {
        refuse: case.refuse.iter().map(|s| s.to_string()).collect(),
        kept: Vec::new(),
    };
    let count = records.len();
    let report = batch::run(
        pipeline,
        records,
        &api,
        &mut queue,
        Instant::now() + case.deadline,
    )
    .await
    .expect("batch");

    // The invariant: every record has exactly one verdict, and they add up.
    let c = report.counts();
    assert_eq!(report.verdicts.len(), count);
    assert_eq!(
        c.published + c.filtered + c.coalesced + c.dead_lettered + c.retried,
        count,
        "{c:?}"
    );
    // What the sinks hold agrees with the verdicts.
    assert_eq!(queue.kept.len(), c.dead_lettered);
    let accepted = api.accepted.lock().expect("accepted").len();
    assert_eq!(accepted, c.published, "one entry per published record");
    names.into_iter().zip(report.verdicts).collect()
}

fn retried(v: &Verdict) -> bool {
    matches!(v, Verdict::Retry { .. })
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_that_passes_publishes_everything() {
    let v = run(Case {
        fates: vec![
            ("a", Fate::ThrottleThenAccept(1)),
            ("b", Fate::ThrottleThenAccept(3)),
            ("c", Fate::Accept),
        ],
        refuse: vec![],
        filtered: 2,
        broken: 0,
        deadline: Duration::from_secs(30),
    })
    .await;
    for name in ["a", "b", "c"] {
        assert_eq!(v[name], Verdict::Published, "{name}");
    }
    assert_eq!(v["filtered-0"], Verdict::Filtered);
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_failures_split_into_published_dead_lettered_and_filtered() {
    let v = run(Case {
        fates: vec![
            ("ok", Fate::Accept),
            ("bad", Fate::Reject),
            ("slow", Fate::ThrottleThenAccept(2)),
        ],
        refuse: vec![],
        filtered: 1,
        broken: 1,
        deadline: Duration::from_secs(30),
    })
    .await;
    assert_eq!(v["ok"], Verdict::Published);
    assert_eq!(v["slow"], Verdict::Published);
    assert_eq!(
        v["bad"],
        Verdict::DeadLettered {
            kind: DeadLetterKind::PutEvents
        }
    );
    assert_eq!(
        v["broken-0"],
        Verdict::DeadLettered {
            kind: DeadLetterKind::Decode
        }
    );
    assert_eq!(v["filtered-0"], Verdict::Filtered);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_dead_letter_makes_its_record_a_retry_never_a_loss() {
    let v = run(Case {
        fates: vec![
            ("bad", Fate::Reject),
            ("bad-too", Fate::Reject),
            ("ok", Fate::Accept),
        ],
        refuse: vec!["bad-too"],
        filtered: 0,
        broken: 0,
        deadline: Duration::from_secs(30),
    })
    .await;
    assert_eq!(
        v["bad"],
        Verdict::DeadLettered {
            kind: DeadLetterKind::PutEvents
        }
    );
    assert!(retried(&v["bad-too"]), "{:?}", v["bad-too"]);
    assert_eq!(v["ok"], Verdict::Published);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_deadline_leaves_what_is_still_throttled_for_retry() {
    let v = run(Case {
        fates: vec![
            ("stuck", Fate::ThrottleForever),
            ("ok", Fate::Accept),
            ("bad", Fate::Reject),
        ],
        refuse: vec![],
        filtered: 1,
        broken: 0,
        deadline: Duration::from_secs(2),
    })
    .await;
    assert!(retried(&v["stuck"]), "{:?}", v["stuck"]);
    assert_eq!(v["ok"], Verdict::Published);
    assert_eq!(
        v["bad"],
        Verdict::DeadLettered {
            kind: DeadLetterKind::PutEvents
        }
    );
    assert_eq!(v["filtered-0"], Verdict::Filtered);
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_batches_always_add_up() {
    // Deterministic mixes of every fate and refusal; `run` asserts the invariant each time.
    let fates = [
        Fate::Accept,
        Fate::ThrottleThenAccept(1),
        Fate::ThrottleThenAccept(4),
        Fate::ThrottleForever,
        Fate::Reject,
    ];
    const NAMES: [&str; 12] = [
        "n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11",
    ];
    let mut rng = fastrand::Rng::with_seed(12);
    for _ in 0..6 {
        let fates: Vec<(&'static str, Fate)> = NAMES
            .iter()
            .map(|&n| (n, fates[rng.usize(..fates.len())]))
            .collect();
        let refuse: Vec<&'static str> = NAMES.iter().copied().filter(|_| rng.bool()).collect();
        let v = run(Case {
            fates: fates.clone(),
            refuse: refuse.clone(),
            filtered: rng.usize(0..3),
            broken: rng.usize(0..3),
            deadline: Duration::from_secs(1),
        })
        .await;
        for (name, fate) in &fates {
            let verdict = &v[*name];
            let expected_retry =
                *fate == Fate::ThrottleForever || (*fate == Fate::Reject && refuse.contains(name));
            assert_eq!(
                retried(verdict),
                expected_retry,
                "{name} {fate:?} {verdict:?}"
            );
        }
    }
}

/// A host whose instance pool is full: every instantiation finds no room.
struct FullHost(Arc<PluginRef>);

impl Plugin for FullHost {
    type Instance = NameInstance;

    fn reference(&self) -> &Arc<PluginRef> {
        &self.0
    }

    fn instantiate(&self, _tenant: &str, _limits: Limits) -> Result<NameInstance, CallError> {
        Err(CallError::NoRoom)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_finds_no_room_for_an_instance_is_retried_not_dead_lettered() {
    let manifest = Manifest::parse(
        "event_bus = \"b\"\n[plugins.mapping]\npath = \"mapping.wasm\"\n\
         [[routes]]\ntable = \"Customers\"\nsource = \"s\"\ntenant = { attribute = \"tenantId\" }\n\
         [tenants.globex]\nplugin = \"mapping\"\n",
        Location::File("/weir/weir.toml".into()),
    )
    .expect("manifest");
    let host = FullHost(Arc::new(PluginRef {
        name: "mapping".to_owned(),
        sha256: "0".repeat(64),
    }));
    let slots = [("mapping".to_owned(), Arc::new(Loaded(Arc::new(host))))].into();
    let pipeline = Arc::new(Pipeline::new(manifest, slots));
    let mut queue = MemoryQueue::default();
    let report = batch::run(
        pipeline,
        vec![record(1, "globex", "a"), record(2, "filtered", "")],
        weir_core::sink::DryRun,
        &mut queue,
        Instant::now() + Duration::from_secs(30),
    )
    .await
    .expect("batch");
    assert!(
        matches!(&report.verdicts[0], Verdict::Retry { reason } if reason.contains("no room")),
        "{:?}",
        report.verdicts[0]
    );
    assert_eq!(report.verdicts[1], Verdict::Filtered);
    assert!(queue.kept.is_empty(), "nothing dead-lettered");
}

/// An item a backfill read takes the stream's path and says so: its entry's metadata has
/// `"origin": "backfill"` and an INSERT; a stream record's has no origin.
#[test]
fn a_backfilled_item_is_published_like_an_insert_and_marked_as_a_backfill() {
    use weir_core::backfill::BackfillRun;
    use weir_core::pipeline::Outcome;
    let run = BackfillRun::new(
        "arn:aws:dynamodb:us-east-1:123456789012:table/Customers",
        "run-1",
        vec!["tenantId".into(), "customerId".into()],
    )
    .expect("run");
    let item = r#"{"tenantId":{"S":"globex"},"customerId":{"S":"C-9"},"name":{"S":"Ada"}}"#;
    let backfilled = RawValue::from_string(run.record(item, 0).expect("record")).expect("JSON");
    let streamed = record(1, "ok", "Ada");
    let pipeline = pipeline();
    let mut batch = pipeline.batch();
    let metadata =
        |raw: &RawValue, batch: &mut weir_core::pipeline::Batch<'_, _>| match batch.process(raw) {
            Outcome::Publish { entries, .. } => {
                let detail: Value = serde_json::from_str(&entries[0].detail).expect("detail");
                assert_eq!(detail["payload"]["Name"], "Ada");
                detail["metadata"].clone()
            }
            _ => panic!("not published"),
        };
    let b = metadata(&backfilled, &mut batch);
    assert_eq!(b["origin"], "backfill");
    assert_eq!(b["eventName"], "INSERT");
    assert!(
        b["eventID"]
            .as_str()
            .is_some_and(|id| id.starts_with("backfill-")),
        "{b}"
    );
    let s = metadata(&streamed, &mut batch);
    assert_eq!(s.get("origin"), None, "{s}");
}

/// A change of customer `item` of globex named `name`, at stream position `seq`.
fn change(seq: u64, item: &str, name: &str) -> Box<RawValue> {
    let mut v = stream_record(
        seq,
        &format!("ev-{seq}"),
        "globex",
        json!({"name": {"S": name}}),
    );
    v["dynamodb"]["Keys"]["customerId"] = json!({"S": item});
    v["dynamodb"]["NewImage"]["customerId"] = json!({"S": item});
    v["eventName"] = json!(if seq == 1 { "INSERT" } else { "MODIFY" });
    RawValue::from_string(v.to_string()).expect("raw")
}

/// Coalescing keeps each item's change with the greatest sequence number, whatever order
/// the batch holds them in (a redrive reads its queue in any order), and every record is
/// still counted once: the superseded ones as coalesced. When the latest change's entry is
/// refused by EventBridge, it is dead-lettered and the earlier ones stay coalesced: the
/// dead letter holds the newest state, for a redrive.
#[tokio::test(flavor = "multi_thread")]
async fn coalescing_keeps_each_items_latest_change_by_sequence_number() {
    let text = "event_bus = \"b\"\n[plugins.mapping]\npath = \"mapping.wasm\"\n\
         [[routes]]\ntable = \"Customers\"\nsource = \"s\"\ntenant = { attribute = \"tenantId\" }\n\
         [tenants.globex]\nplugin = \"mapping\"\ncoalesce = [\"crm\"]\n";
    let manifest = Manifest::parse(text, Location::File("/w/weir.toml".into())).expect("manifest");
    let mapping = NameMapping(Arc::new(PluginRef {
        name: "mapping".to_owned(),
        sha256: "0".repeat(64),
    }));
    let slots = [("mapping".to_owned(), Arc::new(Loaded(Arc::new(mapping))))].into();
    let pipeline = Arc::new(Pipeline::new(manifest, slots));
    for refuse_latest in [false, true] {
        // X's changes out of order (5, 3, 9, 1), Y's in order (2, 7).
        let order = [(5, "X"), (2, "Y"), (3, "X"), (9, "X"), (7, "Y"), (1, "X")];
        let records: Vec<Box<RawValue>> = order
            .iter()
            .map(|&(seq, item)| change(seq, item, &format!("{item}{seq}")))
            .collect();
        let mut fates: BTreeMap<String, Fate> = order
            .iter()
            .map(|&(seq, item)| (format!("{item}{seq}"), Fate::Accept))
            .collect();
        if refuse_latest {
            fates.insert("X9".to_owned(), Fate::Reject);
        }
        let api = ScriptedEventBridge::new(fates);
        let mut queue = MemoryQueue {
            refuse: vec![],
            kept: Vec::new(),
        };
        let report = batch::run(
            pipeline.clone(),
            records,
            &api,
            &mut queue,
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .expect("batch");
        let verdicts: Vec<(u64, &Verdict)> = order
            .iter()
            .map(|(seq, _)| *seq)
            .zip(&report.verdicts)
            .collect();
        let x9 = if refuse_latest {
            Verdict::DeadLettered {
                kind: DeadLetterKind::PutEvents,
            }
        } else {
            Verdict::Published
        };
        assert_eq!(
            verdicts,
            [
                (5, &Verdict::Coalesced),
                (2, &Verdict::Coalesced),
                (3, &Verdict::Coalesced),
                (9, &x9),
                (7, &Verdict::Published),
                (1, &Verdict::Coalesced),
            ]
        );
        let c = report.counts();
        assert_eq!(c.coalesced, 4);
        assert_eq!(
            c.published + c.filtered + c.coalesced + c.dead_lettered + c.retried,
            order.len()
        );
        let mut sent: Vec<String> = report.entries.iter().map(name_of).collect();
        sent.sort();
        assert_eq!(sent, ["X9", "Y7"], "only the latest changes are sent");
        assert_eq!(queue.kept.len(), usize::from(refuse_latest));
    }
}

/// The function stays strict: a record without a sequence number (here in the shape
/// DynamoDB gives Kinesis Data Streams) cannot be retried in order, so it is dead-lettered
/// whole with that reason, and the batch's other records publish.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_without_a_sequence_number_is_dead_lettered_with_the_reason() {
    let kinesis = json!({
        "eventID": "k-1", "eventName": "INSERT", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1", "tableName": "Customers", "recordFormat": "application/json",
        "dynamodb": {
            "ApproximateCreationDateTime": 1764460800000u64,
            "Keys": {"tenantId": {"S": "globex"}, "customerId": {"S": "C-9"}},
            "NewImage": {"tenantId": {"S": "globex"}, "customerId": {"S": "C-9"}, "name": {"S": "K"}},
            "SizeBytes": 50
        }
    });
    let records = vec![
        record(1, "globex", "ok"),
        RawValue::from_string(kinesis.to_string()).expect("raw"),
    ];
    let api = ScriptedEventBridge::new([("ok".to_owned(), Fate::Accept)].into());
    let mut queue = MemoryQueue {
        refuse: vec![],
        kept: Vec::new(),
    };
    let report = batch::run(
        pipeline(),
        records,
        &api,
        &mut queue,
        Instant::now() + Duration::from_secs(5),
    )
    .await
    .expect("batch");
    assert_eq!(
        report.verdicts,
        [
            Verdict::Published,
            Verdict::DeadLettered {
                kind: DeadLetterKind::Decode
            }
        ]
    );
    let reason = &queue.kept[0].reason.message;
    assert!(
        reason.contains("dynamodb.SequenceNumber")
            && reason.contains("Kinesis Data Streams")
            && reason.contains("cannot be retried"),
        "{reason}"
    );
    assert_eq!(queue.kept[0].record.get(), kinesis.to_string());
}
