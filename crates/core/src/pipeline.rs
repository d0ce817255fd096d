//! Per record: route → decode → transform → validate → PutEvents entries. Every record
//! ends in exactly one [`Outcome`].

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Digest as _;

use crate::manifest::{DEFAULT_TENANT, Limits, Manifest, Route, TenantSpec};
use crate::model::Blame;
pub use crate::model::Entry;
use crate::model::{DeadLetter, DeadLetterKind, PluginRef, Reason};
use crate::record::{self, write_json_string};
use crate::transform::{
    CallCost, CallError, Instance as _, LoadProblem, LoadProblems, PluginEvent, Slot, SlotError,
    Transformer,
};
use crate::validate::{self, MAX_DETAIL_DEPTH, MAX_DETAIL_TYPE_CHARS, MAX_RESOURCE_CHARS};

/// Why a record was filtered: a normal outcome, counted, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterReason {
    /// No route names the record's table.
    NoRoute,
    /// The record has no tenant attribute.
    NoTenant,
    /// The tenant has no entry in the manifest.
    UnknownTenant,
    /// The plugin returned no events.
    NoEvents,
    /// The tenant is not one this run was limited to (`weir backfill --tenant`).
    OtherTenant,
}

/// What became of one record.
#[derive(Debug)]
pub enum Outcome {
    /// Entries to publish; the record is done when all are accepted.
    Publish {
        /// Its entries, in the plugins' order.
        entries: Vec<Entry>,
        /// Its tenant.
        tenant: String,
    },
    /// Nothing to send: counted, not an error.
    Filtered {
        /// Why.
        reason: FilterReason,
        /// Its tenant, if it had one.
        tenant: Option<String>,
    },
    /// Rejected: kept whole with the reason.
    DeadLetter(Box<DeadLetter>),
    /// It could not be taken to an outcome now (its plugin could not be read): Lambda
    /// must deliver it again.
    Retry {
        /// Why, for the log.
        reason: String,
        /// Its tenant, if it had one.
        tenant: Option<String>,
    },
}

impl Outcome {
    fn filtered(reason: FilterReason, tenant: Option<&str>) -> Self {
        Outcome::Filtered {
            reason,
            tenant: tenant.map(str::to_owned),
        }
    }

    /// The tenant the record belonged to, where it had one.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Outcome::Publish { tenant, .. } => Some(tenant),
            Outcome::Filtered { tenant, .. } => tenant.as_deref(),
            Outcome::DeadLetter(l) => l.tenant.as_deref(),
            Outcome::Retry { tenant, .. } => tenant.as_deref(),
        }
    }
}

/// The manifest with its plugins, each loaded on first use. `S` is what runs them: the
/// runtime's wasmtime slots in weir, a native mapping in the benchmark, a fake in tests.
pub struct Pipeline<S: Slot> {
    manifest: Manifest,
    plugins: HashMap<String, Arc<S>>,
    configs: HashMap<String, String>,
    /// Instances kept between batches (see [`Instances`]); a batch takes them and gives
    /// them back when it ends.
    warm: std::sync::Mutex<Instances<InstanceOf<S>>>,
    /// Whether batches are still scanned for plugins to load side by side: until a scan
    /// finds none to load, so a tenant with no traffic (whose plugin never loads) does not
    /// cost every later batch a scan.
    scanning: std::sync::atomic::AtomicBool,
    /// When set, only these tenants' records are served; others are filtered.
    only: Option<std::collections::BTreeSet<String>>,
}

impl<S: Slot> Pipeline<S> {
    /// A pipeline over a checked manifest and a slot for each plugin its tenants use.
    pub fn new(manifest: Manifest, plugins: HashMap<String, Arc<S>>) -> Self {
        let configs = manifest
            .tenants
            .iter()
            .map(|(id, t)| (id.clone(), t.config_json()))
            .collect();
        Pipeline {
            manifest,
            plugins,
            configs,
            warm: std::sync::Mutex::new(Instances::default()),
            scanning: std::sync::atomic::AtomicBool::new(true),
            only: None,
        }
    }

    /// The same pipeline serving only `tenants`' records (by tenant id); the rest are
    /// filtered as [`FilterReason::OtherTenant`]. Its plugins are the same slots, so
    /// nothing is loaded twice.
    pub fn only_tenants(&self, tenants: std::collections::BTreeSet<String>) -> Self {
        let mut p = Pipeline::new(self.manifest.clone(), self.plugins.clone());
        p.only = Some(tenants);
        p
    }

    /// The manifest it was built from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The plugins by name, loaded or not yet.
    pub fn slots(&self) -> &HashMap<String, Arc<S>> {
        &self.plugins
    }

    /// The plugins loaded so far, by name.
    pub fn loaded_plugins(&self) -> HashMap<String, Arc<S::Plugin>> {
        self.plugins
            .iter()
            .filter_map(|(n, s)| Some((n.clone(), s.loaded()?.clone())))
            .collect()
    }

    /// Loads every plugin now, all at once, listing every one that cannot be loaded.
    pub async fn load_all(&self) -> Result<(), LoadProblems> {
        let mut names: Vec<&String> = self.plugins.keys().collect();
        names.sort();
        let slots: Vec<(&String, &S)> = names
            .iter()
            .filter_map(|n| self.plugins.get(*n).map(|s| (*n, s.as_ref())))
            .collect();
        let results = futures::future::join_all(slots.iter().map(|(_, s)| s.load())).await;
        let problems: Vec<LoadProblem> = slots
            .iter()
            .zip(results)
            .filter_map(|((name, _), r)| {
                r.err().map(|error| LoadProblem::Plugin {
                    name: (*name).clone(),
                    error,
                })
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LoadProblems { problems })
        }
    }

    /// Loads, all at once, the plugins `records` need that are not loaded yet. A cold
    /// function's first batch often needs several: loading them side by side uses every
    /// core instead of one. Failures are left for the records to find (and report). Once a
    /// batch needs no unloaded plugin, later ones are not scanned: the function is warm, and
    /// a plugin first needed later loads on first use.
    pub async fn load_needed(&self, records: &[Box<RawValue>]) {
        use std::sync::atomic::Ordering;
        if !self.scanning.load(Ordering::Relaxed) {
            return;
        }
        let unloaded = self
            .plugins
            .values()
            .filter(|s| s.loaded().is_none() && !s.is_broken())
            .count();
        let mut needed: Vec<&S> = Vec::new();
        for raw in records {
            // Every plugin that could be loaded is: the rest of the batch need not be read.
            if needed.len() == unloaded {
                break;
            }
            let Ok(parsed) = record::parse(raw.get()) else {
                continue;
            };
            let Routed::Tenant { tenant, .. } = self.route(&parsed) else {
                continue;
            };
            for name in tenant.plugin_names() {
                if let Some(slot) = self.plugins.get(name)
                    && slot.loaded().is_none()
                    && !slot.is_broken()
                    && !needed.iter().any(|n| std::ptr::eq(*n, slot.as_ref()))
                {
                    needed.push(slot);
                }
            }
        }
        if needed.is_empty() {
            self.scanning.store(false, Ordering::Relaxed);
        } else {
            futures::future::join_all(needed.iter().map(|s| s.load())).await;
        }
    }

    /// Which tenant entry serves a record, or why none does.
    fn route(&self, parsed: &record::ParsedRecord<'_>) -> Routed<'_> {
        let manifest = &self.manifest;
        let Some(route) = manifest.route(parsed.table()) else {
            return Routed::Filtered(FilterReason::NoRoute, None);
        };
        let attribute = match parsed.string_attribute(route.tenant.attribute_name()) {
            Ok(attribute) => attribute,
            Err(e) => return Routed::Bad(e),
        };
        let own_id = attribute.as_deref().and_then(|v| route.tenant.extract(v));
        if let Some(only) = &self.only
            && !own_id.is_some_and(|id| only.contains(id))
        {
            return Routed::Filtered(FilterReason::OtherTenant, own_id.map(str::to_owned));
        }
        match manifest.tenant_entry(own_id.unwrap_or(DEFAULT_TENANT)) {
            Some((entry, tenant)) => Routed::Tenant {
                route,
                entry,
                tenant,
                // A record served by the default entry still runs as its own tenant.
                tenant_id: own_id.unwrap_or(DEFAULT_TENANT).to_owned(),
            },
            None => Routed::Filtered(
                if own_id.is_some() {
                    FilterReason::UnknownTenant
                } else {
                    FilterReason::NoTenant
                },
                own_id.map(str::to_owned),
            ),
        }
    }

    /// Starts a batch with the instances earlier batches left warm; new ones are created
    /// on first use. They go back to the pipeline when the batch ends.
    pub fn batch(&self) -> Batch<'_, S> {
        let mut instances = self
            .warm
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        instances.batch += 1;
        Batch {
            pipeline: self,
            instances,
            calls: Vec::new(),
        }
    }

    /// How many instances are kept warm for the next batch.
    pub fn warm_instances(&self) -> usize {
        self.warm.lock().map_or(0, |w| w.live.len())
    }
}

/// The instance type a slot's plugin makes.
type InstanceOf<S> = <<S as Slot>::Plugin as Transformer>::Instance;

/// Most instances kept warm between batches. The runtime's pool has room for 1,000 live
/// instances; keeping at most half leaves a batch room for 500 pairs that are not warm, and
/// idle warm ones are dropped to make more room when a batch needs it.
pub const MAX_WARM_INSTANCES: usize = 500;

/// Most linear memory the warm instances may hold between batches, all together: a Lambda
/// function's memory is shared by every tenant's instances (a Python plugin starts at about
/// 12 MiB), so the least recently used are dropped past this.
pub const MAX_WARM_BYTES: usize = 256 << 20;

/// One tenant's instances of its plugins, by (tenant, plugin), kept across a warm
/// function's batches so a batch does not pay for instantiating them again. Never shared
/// across tenants: the tenant is part of the key. An instance is replaced by a fresh one
/// after a trap (its state is undefined), after `instance_calls` calls (bounding how long
/// whatever it keeps between records lives), and when its memory has grown past half its
/// limit (a pooled instance keeps its grown memory until dropped: one large record must not
/// hold it between batches).
pub struct Instances<I> {
    live: HashMap<(String, String), Warm<I>>,
    /// The number of the batch now using them.
    batch: u64,
}

impl<I> Default for Instances<I> {
    fn default() -> Self {
        Instances {
            live: HashMap::new(),
            batch: 0,
        }
    }
}

/// One warm instance and what it has served.
struct Warm<I> {
    instance: I,
    calls: u64,
    last_batch: u64,
    /// Its linear memory after its first call (what it starts with), and now.
    first_bytes: usize,
    bytes: usize,
}

impl<I> Instances<I> {
    /// Drops the instances no record of this batch has used, to make room in the pool.
    fn drop_idle(&mut self) -> usize {
        let before = self.live.len();
        let batch = self.batch;
        self.live.retain(|_, w| w.last_batch == batch);
        before - self.live.len()
    }

    /// Keeps the instances used most recently, at most `MAX_WARM_INSTANCES` of them and
    /// `MAX_WARM_BYTES` of memory in all.
    fn trim(&mut self) {
        let bytes: usize = self.live.values().map(|w| w.bytes).sum();
        if self.live.len() <= MAX_WARM_INSTANCES && bytes <= MAX_WARM_BYTES {
            return;
        }
        let mut by_age: Vec<((String, String), u64, usize)> = self
            .live
            .iter()
            .map(|(k, w)| (k.clone(), w.last_batch, w.bytes))
            .collect();
        by_age.sort_by_key(|e| std::cmp::Reverse(e.1));
        let (mut kept, mut held) = (0usize, 0usize);
        for (key, _, bytes) in by_age {
            if kept < MAX_WARM_INSTANCES && held + bytes <= MAX_WARM_BYTES {
                kept += 1;
                held += bytes;
            } else {
                self.live.remove(&key);
            }
        }
    }
}

impl<S: Slot> Drop for Batch<'_, S> {
    fn drop(&mut self) {
        // A panic may have stopped an instance mid-call: its state is undefined, so none of
        // this batch's instances are kept.
        if std::thread::panicking() {
            return;
        }
        let mut instances = std::mem::take(&mut self.instances);
        instances.trim();
        if let Ok(mut warm) = self.pipeline.warm.lock() {
            *warm = instances;
        }
    }
}

/// Where routing sent a record.
enum Routed<'m> {
    /// To a tenant entry (`entry`), running as tenant `tenant_id`.
    Tenant {
        route: &'m Route,
        entry: &'m str,
        tenant: &'m TenantSpec,
        tenant_id: String,
    },
    /// Nowhere, and why (with the tenant it named, if any).
    Filtered(FilterReason, Option<String>),
    /// Nowhere: the value routing reads is one DynamoDB could not have written.
    Bad(record::DecodeError),
}

/// One batch of records. It holds one instance per (tenant, plugin), never shared.
pub struct Batch<'p, S: Slot> {
    pipeline: &'p Pipeline<S>,
    instances: Instances<InstanceOf<S>>,
    /// The plugin calls of the record being processed.
    calls: Vec<PluginCall>,
}

/// One plugin call for a record and what it cost: a line of the per-record report.
#[derive(Debug, Clone, Serialize)]
pub struct PluginCall {
    /// The plugin's name.
    pub plugin: String,
    /// What the call used, beside its limits.
    pub cost: CallCost,
}

impl<S: Slot> Batch<'_, S> {
    /// Runs one record, given as its exact text, to its outcome.
    pub fn process(&mut self, raw: &RawValue) -> Outcome {
        self.process_with_sequence_number(raw).0
    }

    /// [`Self::process`], also giving the record's sequence number (what Lambda needs to
    /// retry it), read by the same parse; a record too broken to parse is scanned for it.
    pub fn process_with_sequence_number(&mut self, raw: &RawValue) -> (Outcome, Option<String>) {
        self.calls.clear();
        let parsed = match record::parse(raw.get()) {
            Ok(p) => p,
            Err(e) => {
                let seq = record::sequence_number_of(raw.get());
                let _record =
                    tracing::info_span!("record", sequenceNumber = seq.as_deref()).entered();
                return (
                    dead(raw, DeadLetterKind::Decode, e.to_string(), Blame::Record),
                    seq,
                );
            }
        };
        let sequence_number = parsed.sequence_number().to_owned();
        // Every log line about this record, the plugin's included, carries its number.
        let _record =
            tracing::info_span!("record", sequenceNumber = sequence_number.as_str()).entered();
        (self.process_parsed(raw, parsed), Some(sequence_number))
    }

    /// The plugin calls the last record made, and what each cost.
    pub fn take_calls(&mut self) -> Vec<PluginCall> {
        std::mem::take(&mut self.calls)
    }

    fn process_parsed(&mut self, raw: &RawValue, parsed: record::ParsedRecord<'_>) -> Outcome {
        let manifest = &self.pipeline.manifest;
        let (route, entry, tenant, tenant_id) = match self.pipeline.route(&parsed) {
            Routed::Tenant {
                route,
                entry,
                tenant,
                tenant_id,
            } => (route, entry, tenant, tenant_id),
            Routed::Filtered(reason, tenant) => return Outcome::Filtered { reason, tenant },
            Routed::Bad(e) => {
                return dead(raw, DeadLetterKind::Decode, e.to_string(), Blame::Record);
            }
        };
        let record = record::LazyRecord::new(parsed);
        let limits = manifest.limits_for(tenant);
        let config = self
            .pipeline
            .configs
            .get(entry)
            .map_or("{}", String::as_str);
        let reject =
            |kind: DeadLetterKind, message: String, blame: Blame, plugin: Option<&S::Plugin>| {
                let mut letter = DeadLetter::new(
                    raw,
                    Reason {
                        kind,
                        message,
                        blame,
                    },
                );
                letter.tenant = Some(tenant_id.clone());
                letter.plugin = plugin.map(|p| p.reference().as_ref().clone());
                Outcome::DeadLetter(Box::new(letter))
            };
        let mut entries = Vec::new();
        let item = record.parsed().item_key();
        for name in tenant.plugin_names() {
            let plugin = match self.pipeline.plugins.get(name).map(|s| s.get()) {
                Some(Ok(p)) => p,
                Some(Err(SlotError::Broken(why))) => {
                    return reject(DeadLetterKind::PluginLoad, why, Blame::Plugin, None);
                }
                Some(Err(SlotError::Unavailable(why))) => {
                    return Outcome::Retry {
                        reason: why,
                        tenant: Some(tenant_id),
                    };
                }
                None => {
                    return reject(
                        DeadLetterKind::HostError,
                        format!("plugin {name:?} is not in the manifest"),
                        Blame::Host,
                        None,
                    );
                }
            };
            let plugin = plugin.as_ref();
            let key = (tenant_id.clone(), name.to_owned());
            let batch = self.instances.batch;
            let report = match self.instances.live.get_mut(&key) {
                Some(warm) => {
                    warm.calls += 1;
                    warm.last_batch = batch;
                    Ok(warm.instance.transform(&record, config))
                }
                None => {
                    let mut made = plugin.instantiate(&tenant_id, limits);
                    // The pool is full: drop the warm instances this batch does not use.
                    if matches!(made, Err(CallError::NoRoom)) && self.instances.drop_idle() > 0 {
                        made = plugin.instantiate(&tenant_id, limits);
                    }
                    if let Err(CallError::NoRoom) = made {
                        return Outcome::Retry {
                            reason: CallError::NoRoom.to_string(),
                            tenant: Some(tenant_id),
                        };
                    }
                    made.map(|mut instance| {
                        let r = instance.transform(&record, config);
                        let warm = Warm {
                            instance,
                            calls: 0,
                            last_batch: batch,
                            first_bytes: r.cost.memory_bytes,
                            bytes: 0,
                        };
                        self.instances.live.insert(key.clone(), warm);
                        r
                    })
                }
            };
            if let Ok(report) = &report
                && let Some(warm) = self.instances.live.get_mut(&key)
            {
                if warm.calls == 0 {
                    warm.calls = 1;
                }
                warm.bytes = report.cost.memory_bytes;
                // Grown past half its limit since its first call (what it starts with does
                // not count: a runtime that starts big is not recycled every call).
                let grown = warm.bytes.saturating_sub(warm.first_bytes) as u64;
                if warm.calls >= limits.instance_calls || grown > (limits.memory_mib << 20) / 2 {
                    // Recycled: the next record of this tenant gets a fresh instance.
                    self.instances.live.remove(&key);
                }
            }
            let result = match report {
                Ok(report) => {
                    self.calls.push(PluginCall {
                        plugin: name.to_owned(),
                        cost: report.cost,
                    });
                    report.result
                }
                Err(e) => Err(e),
            };
            let events = match result {
                Ok(events) => events,
                Err(e) => {
                    if e.poisons_instance() {
                        // A trapped instance is never reused: the next record gets a fresh one.
                        self.instances.live.remove(&key);
                    }
                    return reject(e.kind(), e.to_string(), e.blame(), Some(plugin));
                }
            };
            if let Some(e) = events.iter().find(|e| !tenant.allows(&e.destination)) {
                return reject(
                    DeadLetterKind::InvalidOutput,
                    format!(
                        "event for destination {:?}, which tenant {tenant_id:?} may not use (allowed: {})",
                        e.destination,
                        tenant
                            .destinations
                            .as_deref()
                            .unwrap_or_default()
                            .join(", ")
                    ),
                    Blame::Plugin,
                    Some(plugin),
                );
            }
            let first = entries.len();
            match build_entries(
                record.parsed(),
                &item,
                tenant,
                &tenant_id,
                &route.source,
                manifest,
                &limits,
                plugin.reference(),
                first,
                events,
            ) {
                Ok(built) => entries.extend(built),
                Err(EntryError { kind, message }) => {
                    return reject(kind, message, Blame::Plugin, Some(plugin));
                }
            }
        }
        if entries.is_empty() {
            return Outcome::filtered(FilterReason::NoEvents, Some(&tenant_id));
        }
        Outcome::Publish {
            entries,
            tenant: tenant_id,
        }
    }
}

fn dead(raw: &RawValue, kind: DeadLetterKind, message: String, blame: Blame) -> Outcome {
    Outcome::DeadLetter(Box::new(DeadLetter::new(
        raw,
        Reason {
            kind,
            message,
            blame,
        },
    )))
}

/// Why a plugin's events cannot be published: the dead-letter kind and message.
#[derive(Debug)]
struct EntryError {
    kind: DeadLetterKind,
    message: String,
}

fn invalid(message: String) -> EntryError {
    EntryError {
        kind: DeadLetterKind::InvalidOutput,
        message,
    }
}

/// Validates a plugin's events and wraps each in weir's metadata envelope.
#[allow(clippy::too_many_arguments)]
fn build_entries(
    record: &record::ParsedRecord<'_>,
    item: &str,
    spec: &TenantSpec,
    tenant: &str,
    source: &str,
    manifest: &Manifest,
    limits: &Limits,
    plugin: &Arc<PluginRef>,
    first_index: usize,
    events: Vec<PluginEvent>,
) -> Result<Vec<Entry>, EntryError> {
    if events.len() > limits.max_events {
        return Err(EntryError {
            kind: DeadLetterKind::TooManyEvents,
            message: format!(
                "plugin returned {} events for one record; the limit is {}",
                events.len(),
                limits.max_events
            ),
        });
    }
    let output_bytes: usize = events
        .iter()
        .map(|e| e.detail.len() + e.detail_type.len() + e.destination.len())
        .sum();
    if output_bytes > limits.max_output_bytes {
        return Err(EntryError {
            kind: DeadLetterKind::TooLarge,
            message: format!(
                "plugin returned {output_bytes} bytes of events for one record; the limit is {}",
                limits.max_output_bytes
            ),
        });
    }
    let mut entries = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let (n, index) = (i + 1, first_index + i);
        let chars = event.detail_type.chars().count();
        if chars == 0 || chars > MAX_DETAIL_TYPE_CHARS {
            return Err(invalid(format!(
                "event {n}: detail-type must be 1 to {MAX_DETAIL_TYPE_CHARS} characters, found {chars}"
            )));
        }
        if event.destination.is_empty() {
            return Err(invalid(format!("event {n}: destination is empty")));
        }
        if let Some(r) = event
            .resources
            .iter()
            .find(|r| r.is_empty() || r.chars().count() > MAX_RESOURCE_CHARS)
        {
            return Err(invalid(format!(
                "event {n}: each resource must be 1 to {MAX_RESOURCE_CHARS} characters, found {}",
                r.chars().count()
            )));
        }
        // The envelope adds one level of nesting around the payload.
        validate::check_detail(&event.detail, MAX_DETAIL_DEPTH - 1)
            .map_err(|e| invalid(format!("event {n}: {e}")))?;
        let detail = envelope(record, item, tenant, &plugin.name, index, &event);
        let coalesce = spec
            .coalesces(&event.destination)
            .then(|| format!("{}\u{1f}{item}\u{1f}{}", record.table(), event.destination));
        let entry = Entry {
            source: source.to_owned(),
            detail_type: event.detail_type,
            detail,
            event_bus_name: manifest.event_bus.clone(),
            resources: event.resources,
            plugin: plugin.clone(),
            coalesce,
        };
        let size = entry.size();
        if size > limits.max_entry_bytes {
            return Err(EntryError {
                kind: DeadLetterKind::TooLarge,
                message: format!(
                    "event {n}: entry is {size} bytes; the PutEvents limit is {}",
                    limits.max_entry_bytes
                ),
            });
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// `{"metadata": {...}, "payload": DETAIL}`, written as text so the payload's digits are
/// kept exactly as the plugin wrote them.
fn envelope(
    record: &record::ParsedRecord<'_>,
    item: &str,
    tenant: &str,
    plugin: &str,
    index: usize,
    event: &PluginEvent,
) -> String {
    let mut out = String::with_capacity(event.detail.len() + 320);
    out.push_str("{\"metadata\":{\"id\":");
    write_json_string(&event_id(record.event_id(), index), &mut out);
    out.push_str(",\"tenant\":");
    write_json_string(tenant, &mut out);
    out.push_str(",\"destination\":");
    write_json_string(&event.destination, &mut out);
    out.push_str(",\"plugin\":");
    write_json_string(plugin, &mut out);
    out.push_str(",\"table\":");
    write_json_string(record.table(), &mut out);
    out.push_str(",\"eventID\":");
    write_json_string(record.event_id(), &mut out);
    out.push_str(",\"eventName\":\"");
    out.push_str(record.change().as_str());
    out.push_str("\",\"sequenceNumber\":");
    write_json_string(record.sequence_number(), &mut out);
    out.push_str(",\"item\":");
    write_json_string(item, &mut out);
    out.push_str(",\"position\":");
    match record.position() {
        Some(p) => write_json_string(&p, &mut out),
        None => out.push_str("null"),
    }
    out.push_str(",\"approximateCreationTime\":");
    match record.approximate_creation_time_ms() {
        Some(ms) => write_json_string(&rfc3339_from_ms(ms), &mut out),
        None => out.push_str("null"),
    }
    if record.origin() == record::Origin::Backfill {
        out.push_str(",\"origin\":\"backfill\"");
    }
    out.push_str("},\"payload\":");
    out.push_str(&event.detail);
    out.push('}');
    out
}

/// A deterministic id for the `index`th event of a record: the same record always yields
/// the same ids, so downstream can drop the redeliveries at-least-once delivery brings.
pub fn event_id(stream_event_id: &str, index: usize) -> String {
    let digest = sha2::Sha256::digest(format!("{stream_event_id}/{index}").as_bytes());
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_from_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warm(last_batch: u64, bytes: usize) -> Warm<()> {
        Warm {
            instance: (),
            calls: 1,
            last_batch,
            first_bytes: 0,
            bytes,
        }
    }

    #[test]
    fn warm_instances_are_trimmed_to_the_most_recent_by_count_and_by_memory() {
        let mut by_count = Instances::default();
        for i in 0..(MAX_WARM_INSTANCES as u64 + 10) {
            by_count
                .live
                .insert((format!("t{i}"), "p".into()), warm(i, 1 << 10));
        }
        by_count.trim();
        assert_eq!(by_count.live.len(), MAX_WARM_INSTANCES);
        assert!(
            !by_count.live.contains_key(&("t9".into(), "p".into())),
            "oldest dropped"
        );
        assert!(
            by_count.live.contains_key(&("t509".into(), "p".into())),
            "newest kept"
        );

        let mut by_bytes = Instances::default();
        let big = MAX_WARM_BYTES / 3;
        for i in 0..5u64 {
            by_bytes
                .live
                .insert((format!("t{i}"), "p".into()), warm(i, big));
        }
        by_bytes.trim();
        let mut kept: Vec<String> = by_bytes.live.keys().map(|k| k.0.clone()).collect();
        kept.sort();
        assert_eq!(
            kept,
            ["t2", "t3", "t4"],
            "the three most recent fit the budget"
        );
    }

    #[test]
    fn making_room_drops_only_the_warm_instances_this_batch_has_not_used() {
        let mut instances = Instances {
            batch: 7,
            ..Default::default()
        };
        instances.live.insert(("a".into(), "p".into()), warm(7, 0));
        instances.live.insert(("b".into(), "p".into()), warm(6, 0));
        assert_eq!(instances.drop_idle(), 1);
        assert!(instances.live.contains_key(&("a".into(), "p".into())));
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_ms(1_700_000_000_500),
            "2023-11-14T22:13:20.500Z"
        );
        assert_eq!(rfc3339_from_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn event_ids_are_deterministic_and_distinct() {
        assert_eq!(event_id("abc", 0), event_id("abc", 0));
        assert_ne!(event_id("abc", 0), event_id("abc", 1));
        assert_ne!(event_id("abc", 0), event_id("abd", 0));
        assert_eq!(event_id("abc", 0).len(), 36);
    }
}
