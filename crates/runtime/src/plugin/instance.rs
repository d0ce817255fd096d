//! A loaded [`Plugin`] and one tenant's [`PluginInstance`]: the call, its limits, and what
//! a trap means.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;
use weir_core::manifest::Limits;
use weir_core::model::PluginRef;
use weir_core::record::{Change, StreamRecord};
use weir_core::transform::{CallCost, CallError, CallReport, PluginEvent};

use super::bindings::weir::transform::types as wit;
use super::host::PluginState;
use super::host::clocks::FrozenClock;
use super::host::log::PluginLog;
use super::host::memory::MemoryLimiter;
use super::host::stdio::{Captured, CapturedPipe};
use super::{EPOCH_TICK, bindings};

/// A loaded plugin, ready to instantiate cheaply for each tenant.
pub struct Plugin {
    /// Whether its engine counts fuel.
    pub(super) fuel: bool,
    pub(super) name: String,
    pub(super) sha256: String,
    pub(super) reference: Arc<PluginRef>,
    pub(super) pre: bindings::PluginPre<PluginState>,
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

    /// A fresh instance for one tenant. Instances are never shared across tenants.
    pub fn instantiate(&self, tenant: &str, limits: Limits) -> Result<PluginInstance, CallError> {
        let engine = self.pre.engine();
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
        let instance = self.pre.instantiate(&mut store).map_err(|e| {
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
    instance: bindings::Plugin,
    limits: Limits,
    fuel: bool,
}

impl weir_core::transform::Transformer for Plugin {
    type Instance = PluginInstance;

    fn reference(&self) -> &Arc<PluginRef> {
        Plugin::reference(self)
    }

    fn instantiate(&self, tenant: &str, limits: Limits) -> Result<PluginInstance, CallError> {
        Plugin::instantiate(self, tenant, limits)
    }
}

impl weir_core::transform::Instance for PluginInstance {
    fn transform(&mut self, record: &StreamRecord, config_json: &str) -> CallReport {
        PluginInstance::transform(self, record, config_json)
    }
}

impl PluginInstance {
    /// Runs `transform` for one record under this instance's limits.
    pub fn transform(&mut self, record: &StreamRecord, config_json: &str) -> CallReport {
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
            id: self.store.data().tenant.clone(),
            config: config_json.to_owned(),
        };
        let outcome = self.instance.weir_transform_transformer().call_transform(
            &mut self.store,
            &wit_record,
            &tenant,
        );
        let result = match outcome {
            Ok(Ok(events)) => Ok(events
                .into_iter()
                .map(|e| PluginEvent {
                    destination: e.destination,
                    detail_type: e.detail_type,
                    detail: e.detail,
                    resources: e.resources,
                })
                .collect()),
            Ok(Err(reason)) => Err(CallError::Rejected(reason)),
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
