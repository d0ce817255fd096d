//! A loaded [`Plugin`] and one tenant's [`PluginInstance`]: the call, its limits, and what
//! a trap means.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;
use weir_core::manifest::Limits;
use weir_core::model::PluginRef;
use weir_core::record::{Change, LazyRecord, Origin};
use weir_core::transform::{CallCost, CallError, CallReport, PluginEvent};

use super::interfaces::PluginState;
use super::interfaces::clocks::FrozenClock;
use super::interfaces::image::ImageReads;
use super::interfaces::log::PluginLog;
use super::interfaces::memory::MemoryLimiter;
use super::interfaces::stdio::{Captured, CapturedPipe};
use super::{Contract, EPOCH_TICK, bindings, bindings_v01};

/// A loaded plugin, ready to instantiate cheaply for each tenant.
pub struct Plugin {
    /// Whether its engine counts fuel.
    pub(super) fuel: bool,
    pub(super) name: String,
    pub(super) sha256: String,
    pub(super) reference: Arc<PluginRef>,
    pub(super) pre: Pre,
}

/// A plugin ready to instantiate, by the contract it was built against.
pub(super) enum Pre {
    V0_2(bindings::PluginPre<PluginState>),
    V0_1(bindings_v01::PluginPre<PluginState>),
}

/// A live instance's exports, by contract.
enum Exports {
    V0_2(bindings::Plugin),
    V0_1(bindings_v01::Plugin),
}

impl Plugin {
    /// Its name in the manifest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of the component's bytes, as a manifest would pin it.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Name and hash, as dead letters carry them.
    pub fn reference(&self) -> &Arc<PluginRef> {
        &self.reference
    }

    /// The contract it was built against.
    pub fn contract(&self) -> Contract {
        match self.pre {
            Pre::V0_2(_) => Contract::V0_2,
            Pre::V0_1(_) => Contract::V0_1,
        }
    }

    /// A fresh instance for one tenant. Instances are never shared across tenants.
    pub fn instantiate(&self, tenant: &str, limits: Limits) -> Result<PluginInstance, CallError> {
        let engine = match &self.pre {
            Pre::V0_2(pre) => pre.engine(),
            Pre::V0_1(pre) => pre.engine(),
        };
        let captured = Arc::new(Mutex::new(Captured::default()));
        let wasi = WasiCtxBuilder::new()
            .stdout(CapturedPipe(captured.clone()))
            .stderr(CapturedPipe(captured.clone()))
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_mib),
            log: PluginLog::new(&self.name, tenant, limits),
            images: ImageReads::default(),
            captured,
            tenant: tenant.to_owned(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.fuel {
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| CallError::Host(format!("{e:#}")))?;
        }
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(limits.time_ms));
        let instance = match &self.pre {
            Pre::V0_2(pre) => pre.instantiate(&mut store).map(Exports::V0_2),
            Pre::V0_1(pre) => pre.instantiate(&mut store).map(Exports::V0_1),
        };
        let instance = instance.map_err(|e| {
            if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some()
            {
                CallError::NoRoom
            } else {
                classify(e, &mut store, limits)
            }
        })?;
        Ok(PluginInstance {
            store,
            instance,
            limits,
            fuel: self.fuel,
        })
    }
}

pub(super) fn ticks(ms: u64) -> u64 {
    (ms.max(1).saturating_mul(1000) / EPOCH_TICK.as_micros().max(1) as u64).max(1)
}

/// One tenant's live instance of one plugin.
pub struct PluginInstance {
    store: Store<PluginState>,
    instance: Exports,
    limits: Limits,
    fuel: bool,
}

impl weir_core::transform::Plugin for Plugin {
    type Instance = PluginInstance;

    fn reference(&self) -> &Arc<PluginRef> {
        Plugin::reference(self)
    }

    fn instantiate(&self, tenant: &str, limits: Limits) -> Result<PluginInstance, CallError> {
        Plugin::instantiate(self, tenant, limits)
    }
}

impl weir_core::transform::Instance for PluginInstance {
    fn transform(&mut self, record: &LazyRecord<'_>, config_json: &str) -> CallReport {
        PluginInstance::transform(self, record, config_json)
    }
}

impl PluginInstance {
    /// Runs `transform` for one record under this instance's limits.
    pub fn transform(&mut self, record: &LazyRecord<'_>, config_json: &str) -> CallReport {
        let started = Instant::now();
        self.store.set_epoch_deadline(ticks(self.limits.time_ms));
        self.store.data_mut().log.reset();
        // A growth denied in an earlier call (which then returned) says nothing of this one.
        self.store.data_mut().limiter.hit = false;
        let fuel_budget = self.limits.fuel.unwrap_or(u64::MAX);
        if self.fuel && self.store.set_fuel(fuel_budget).is_err() {
            return CallReport {
                result: Err(CallError::Host("cannot set the fuel budget".into())),
                cost: self.cost(started, None),
            };
        }
        let tenant = self.store.data().tenant.clone();
        let outcome = match &self.instance {
            Exports::V0_2(exports) => {
                call_v02(exports, &mut self.store, record, tenant, config_json)
            }
            Exports::V0_1(exports) => match record.decoded() {
                Ok(decoded) => call_v01(exports, &mut self.store, decoded, tenant, config_json),
                Err(e) => Ok(Err(Returned::Decode(e))),
            },
        };
        let result = match outcome {
            Ok(Ok(events)) => Ok(events),
            Ok(Err(Returned::Rejected(reason))) => Err(CallError::Rejected(reason)),
            Ok(Err(Returned::Decode(e))) => Err(CallError::Decode(e)),
            Err(e) => Err(classify(e, &mut self.store, self.limits)),
        };
        self.store.data_mut().flush_captured();
        let used = self
            .fuel
            .then(|| self.store.get_fuel().ok())
            .flatten()
            .map(|left| fuel_budget - left);
        CallReport {
            result,
            cost: self.cost(started, used),
        }
    }

    fn cost(&self, started: Instant, fuel: Option<u64>) -> CallCost {
        CallCost {
            elapsed: started.elapsed(),
            fuel,
            memory_bytes: self.store.data().limiter.peak,
            limits: self.limits,
        }
    }
}

/// Why a call that ran to its end returned no events.
enum Returned {
    /// The plugin returned `err(reason)`.
    Rejected(String),
    /// A value it read (or, for 0.1, the images it is given) was written wrongly.
    Decode(weir_core::record::DecodeError),
}

type Outcome = wasmtime::Result<Result<Vec<PluginEvent>, Returned>>;

/// A call's `result<list<event>, string>` as the core's events; each contract version has
/// its own generated `event` type with the same fields.
macro_rules! plugin_events {
    ($returned:expr) => {
        $returned
            .map(|events| {
                events
                    .into_iter()
                    .map(|e| PluginEvent {
                        destination: e.destination,
                        detail_type: e.detail_type,
                        detail: e.detail,
                        resources: e.resources,
                    })
                    .collect()
            })
            .map_err(Returned::Rejected)
    };
}

/// One call of a 0.2 plugin: the images are handles it reads through the host.
fn call_v02(
    exports: &bindings::Plugin,
    store: &mut Store<PluginState>,
    record: &LazyRecord<'_>,
    tenant: String,
    config_json: &str,
) -> Outcome {
    use bindings::weir::transform::types as wit;
    let parsed = record.parsed();
    let (keys, new_image, old_image) = store.data_mut().images.start(record);
    let wit_record = wit::StreamRecord {
        table: parsed.table().to_owned(),
        event_id: parsed.event_id().to_owned(),
        change: match parsed.change() {
            Change::Insert => wit::Change::Insert,
            Change::Modify => wit::Change::Modify,
            Change::Remove => wit::Change::Remove,
        },
        origin: match record.origin() {
            Origin::Stream => wit::Origin::Stream,
            Origin::Backfill => wit::Origin::Backfill,
        },
        sequence_number: parsed.sequence_number().to_owned(),
        approximate_creation_time_ms: parsed.approximate_creation_time_ms(),
        keys,
        new_image,
        old_image,
        removed_by_ttl: parsed.removed_by_ttl(),
    };
    let tenant = wit::Tenant {
        id: tenant,
        config: config_json.to_owned(),
    };
    let outcome =
        exports
            .weir_transform_transformer()
            .call_transform(&mut *store, &wit_record, &tenant);
    let unreadable = store.data_mut().images.finish();
    let returned = outcome?;
    if let Some(e) = unreadable {
        return Ok(Err(Returned::Decode(e)));
    }
    Ok(plugin_events!(returned))
}

/// One call of a 0.1 plugin: the images are plain JSON text.
fn call_v01(
    exports: &bindings_v01::Plugin,
    store: &mut Store<PluginState>,
    record: &weir_core::record::StreamRecord,
    tenant: String,
    config_json: &str,
) -> Outcome {
    use bindings_v01::weir::transform::types as wit;
    let wit_record = wit::StreamRecord {
        table: record.table.clone(),
        event_id: record.event_id.clone(),
        change: match record.change {
            Change::Insert => wit::Change::Insert,
            Change::Modify => wit::Change::Modify,
            Change::Remove => wit::Change::Remove,
        },
        sequence_number: record.sequence_number.clone(),
        approximate_creation_time_ms: record.approximate_creation_time_ms,
        keys: record.keys.clone(),
        new_image: record.new_image.clone(),
        old_image: record.old_image.clone(),
        removed_by_ttl: record.removed_by_ttl,
    };
    let tenant = wit::Tenant {
        id: tenant,
        config: config_json.to_owned(),
    };
    let returned =
        exports
            .weir_transform_transformer()
            .call_transform(&mut *store, &wit_record, &tenant)?;
    Ok(plugin_events!(returned))
}

fn classify(e: wasmtime::Error, store: &mut Store<PluginState>, limits: Limits) -> CallError {
    let state = store.data_mut();
    let stderr_tail = state.flush_captured();
    let detail = if stderr_tail.is_empty() {
        String::new()
    } else {
        format!(": {stderr_tail}")
    };
    if state.limiter.hit {
        return CallError::MemoryLimit {
            limit_mib: limits.memory_mib,
            detail,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::TimeLimit {
            limit_ms: limits.time_ms,
        },
        Some(Trap::OutOfFuel) => CallError::FuelLimit {
            limit: limits.fuel.unwrap_or(u64::MAX),
        },
        Some(Trap::StackOverflow) => CallError::StackOverflow(detail),
        Some(trap) => CallError::Trap(format!("{trap}{detail}")),
        // Errors raised inside host calls on the guest's behalf (e.g. a WASI stream) are
        // still the guest's doing.
        None => CallError::Trap(format!("{e:#}{detail}")),
    }
}
