//! Per record: route → decode → transform → validate → PutEvents entries. Every record
//! ends in exactly one [`Outcome`].
//!
//! Its steps, a file each: `route` finds the tenant entry that serves a record;
//! `instances` keeps each (tenant, plugin) instance warm between batches and runs the
//! record on it; `envelope` checks the plugin's events against the tenant's allow-list
//! and EventBridge's limits and wraps each in weir's metadata.

mod envelope;
mod instances;
mod route;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::manifest::Manifest;
use crate::model::{Blame, DeadLetter, DeadLetterKind, Entry, Reason};
use crate::record;
use crate::transform::{CallCost, CallError, LoadProblem, LoadProblems, Plugin, Slot, SlotError};

use envelope::EntryError;
pub use envelope::{event_id, rfc3339_from_ms};
pub use instances::{DEFAULT_FUNCTION_MEMORY_MB, FUNCTION_MEMORY_MB, Instances, WarmBudget};
use route::Routed;

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
    /// How many instances stay warm between batches, sized from the function's memory.
    warm_budget: WarmBudget,
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
            warm_budget: WarmBudget::default(),
            scanning: std::sync::atomic::AtomicBool::new(true),
            only: None,
        }
    }

    /// The same pipeline serving only `tenants`' records (by tenant id); the rest are
    /// filtered as [`FilterReason::OtherTenant`]. Its plugins are the same slots, so
    /// nothing is loaded twice.
    pub fn only_tenants(&self, tenants: std::collections::BTreeSet<String>) -> Self {
        let mut p = Pipeline::new(self.manifest.clone(), self.plugins.clone())
            .with_warm_budget(self.warm_budget());
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

    /// The same pipeline keeping `budget`'s instances warm between batches.
    pub fn with_warm_budget(mut self, budget: WarmBudget) -> Self {
        self.warm_budget = budget;
        self
    }

    /// How many instances may stay warm between batches.
    pub fn warm_budget(&self) -> WarmBudget {
        self.warm_budget
    }

    /// How many instances are kept warm for the next batch.
    pub fn warm_instances(&self) -> usize {
        self.warm.lock().map_or(0, |w| w.live.len())
    }
}

/// The instance type a slot's plugin makes.
type InstanceOf<S> = <<S as Slot>::Plugin as Plugin>::Instance;

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

    /// The record's way, step by step: route it to a tenant entry, run each of the
    /// tenant's plugins on its warm instance, check the events against the tenant's
    /// allow-list, and wrap them in the envelope.
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
                    return reject(
                        DeadLetterKind::PluginLoad,
                        why.to_string(),
                        Blame::Plugin,
                        None,
                    );
                }
                Some(Err(SlotError::Unavailable(why))) => {
                    return Outcome::Retry {
                        reason: why.to_string(),
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
            let report = match self
                .instances
                .transform(&tenant_id, name, plugin, &record, config, limits)
            {
                Err(CallError::NoRoom) => {
                    return Outcome::Retry {
                        reason: CallError::NoRoom.to_string(),
                        tenant: Some(tenant_id),
                    };
                }
                report => report,
            };
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
                Err(e) => return reject(e.kind(), e.to_string(), e.blame(), Some(plugin)),
            };
            let built = envelope::check_destinations(tenant, &tenant_id, &events).and_then(|()| {
                envelope::build_entries(
                    record.parsed(),
                    &item,
                    tenant,
                    &tenant_id,
                    &route.source,
                    manifest,
                    &limits,
                    plugin.reference(),
                    entries.len(),
                    events,
                )
            });
            match built {
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

impl<S: Slot> Drop for Batch<'_, S> {
    fn drop(&mut self) {
        // A panic may have stopped an instance mid-call: its state is undefined, so none of
        // this batch's instances are kept.
        if std::thread::panicking() {
            return;
        }
        let mut instances = std::mem::take(&mut self.instances);
        instances.trim(self.pipeline.warm_budget);
        if let Ok(mut warm) = self.pipeline.warm.lock() {
            *warm = instances;
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
