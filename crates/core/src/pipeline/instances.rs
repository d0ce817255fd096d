//! The warm instances: one per (tenant, plugin), kept between a warm function's batches,
//! recycled and trimmed so they never outstay their limits or the function's memory.

use std::collections::HashMap;

use crate::manifest::Limits;
use crate::record::LazyRecord;
use crate::transform::{CallError, CallReport, Instance, Plugin};

/// The function memory a budget is sized for when nobody says: the SAM template's
/// `MemorySize` (1,769 MB, one full vCPU).
pub const DEFAULT_FUNCTION_MEMORY_MB: u64 = 1769;

/// The memory a Lambda function may have, in MB: what `--memory-mb` accepts, and what a
/// budget is sized within.
pub const FUNCTION_MEMORY_MB: std::ops::RangeInclusive<u64> = 128..=10_240;

/// The linear memory a warm instance is assumed to hold at least, in sizing the count: a
/// Rust plugin's memory is about 1.1 MiB (its 1 MiB stack and its data), and nothing
/// smaller is worth keeping a pool slot for.
const SMALLEST_INSTANCE_BYTES: u64 = 1 << 20;

/// How many instances stay warm between batches, and how much linear memory they may
/// hold in all, sized from the memory the function has: three quarters of it for the
/// instances (by linear memory size, which bounds what an instance can hold resident: a
/// Rust plugin's 1.1 MiB memory holds about 56 KiB), the rest for the host and the batch.
/// A SaaS with a thousand tenants keeps them all warm in the template's 1,769 MB function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmBudget {
    /// Most instances kept warm.
    pub instances: usize,
    /// Most linear memory the warm instances hold, all together, in bytes.
    pub bytes: u64,
}

impl WarmBudget {
    /// The budget for a function of `memory_mb` MB (Lambda's
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, or `--memory-mb` on the command line).
    pub fn for_memory_mb(memory_mb: u64) -> Self {
        let memory_mb = memory_mb.clamp(*FUNCTION_MEMORY_MB.start(), *FUNCTION_MEMORY_MB.end());
        let bytes = memory_mb.saturating_mul(3 << 20) / 4;
        WarmBudget {
            instances: usize::try_from(bytes / SMALLEST_INSTANCE_BYTES).unwrap_or(usize::MAX),
            bytes,
        }
    }
}

impl Default for WarmBudget {
    fn default() -> Self {
        WarmBudget::for_memory_mb(DEFAULT_FUNCTION_MEMORY_MB)
    }
}

impl std::fmt::Display for WarmBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at most {} instances warm, holding at most {} MiB of linear memory",
            self.instances,
            self.bytes >> 20
        )
    }
}

/// One tenant's instances of its plugins, by (tenant, plugin), kept across a warm
/// function's batches so a batch does not pay for instantiating them again. Never shared
/// across tenants: the tenant is part of the key. An instance is replaced by a fresh one
/// after a trap (its state is undefined), after `instance_calls` calls (bounding how long
/// whatever it keeps between records lives), and when its memory has grown past half its
/// limit (a pooled instance keeps its grown memory until dropped: one large record must not
/// hold it between batches).
pub struct Instances<I> {
    pub(super) live: HashMap<(String, String), Warm<I>>,
    /// The number of the batch now using them.
    pub(super) batch: u64,
    /// Calls made so far: an instance's last call says how recently it was used.
    calls: u64,
}

impl<I> Default for Instances<I> {
    fn default() -> Self {
        Instances {
            live: HashMap::new(),
            batch: 0,
            calls: 0,
        }
    }
}

/// One warm instance and what it has served.
pub(super) struct Warm<I> {
    instance: I,
    calls: u64,
    last_batch: u64,
    /// [`Instances`]' call count (it runs across batches) at its last call.
    last_call: u64,
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

    /// Drops the least recently used instance, whatever batch used it (every instance
    /// here is between calls): the pool is full even of this batch's instances, and a
    /// record waiting for room costs more than one instance made again.
    fn drop_least_recent(&mut self) -> bool {
        let oldest = self
            .live
            .iter()
            .min_by_key(|(_, w)| w.last_call)
            .map(|(k, _)| k.clone());
        oldest.is_some_and(|k| self.live.remove(&k).is_some())
    }

    /// Keeps the instances used most recently, at most the budget's count and bytes.
    pub(super) fn trim(&mut self, budget: WarmBudget) {
        let bytes: u64 = self.live.values().map(|w| w.bytes as u64).sum();
        if self.live.len() <= budget.instances && bytes <= budget.bytes {
            return;
        }
        let mut by_age: Vec<((String, String), u64, u64)> = self
            .live
            .iter()
            .map(|(k, w)| (k.clone(), w.last_call, w.bytes as u64))
            .collect();
        by_age.sort_by_key(|e| std::cmp::Reverse(e.1));
        let (mut kept, mut held) = (0usize, 0u64);
        for (key, _, bytes) in by_age {
            if kept < budget.instances && held.saturating_add(bytes) <= budget.bytes {
                kept += 1;
                held += bytes;
            } else {
                self.live.remove(&key);
            }
        }
    }
}

impl<I: Instance> Instances<I> {
    /// Runs `record` through `tenant`'s instance of `plugin` (named `name`): the warm one
    /// if it is kept, else a new one, made after dropping the idle warm ones if the pool is
    /// full. Afterwards the instance is dropped if it trapped, has served its calls or has
    /// grown past half its memory limit. An error is an instance that could not be made:
    /// [`CallError::NoRoom`] when the pool has no room even with every other instance
    /// dropped (other batches hold the rest).
    pub(super) fn transform<P: Plugin<Instance = I>>(
        &mut self,
        tenant: &str,
        name: &str,
        plugin: &P,
        record: &LazyRecord<'_>,
        config: &str,
        limits: Limits,
    ) -> Result<CallReport, CallError> {
        let key = (tenant.to_owned(), name.to_owned());
        let batch = self.batch;
        self.calls += 1;
        let now = self.calls;
        let report = match self.live.get_mut(&key) {
            Some(warm) => {
                warm.calls += 1;
                warm.last_batch = batch;
                warm.last_call = now;
                warm.instance.transform(record, config)
            }
            None => {
                let mut made = plugin.instantiate(tenant, limits);
                // The pool is full: drop the warm instances this batch does not use, then
                // the least recently used of the rest, one at a time (an instance of
                // another plugin may hold fewer memories than this one needs).
                if matches!(made, Err(CallError::NoRoom)) && self.drop_idle() > 0 {
                    made = plugin.instantiate(tenant, limits);
                }
                while matches!(made, Err(CallError::NoRoom)) && self.drop_least_recent() {
                    made = plugin.instantiate(tenant, limits);
                }
                let mut instance = made?;
                let report = instance.transform(record, config);
                let warm = Warm {
                    instance,
                    calls: 0,
                    last_batch: batch,
                    last_call: now,
                    first_bytes: report.cost.memory_bytes,
                    bytes: 0,
                };
                self.live.insert(key.clone(), warm);
                report
            }
        };
        if let Some(warm) = self.live.get_mut(&key) {
            if warm.calls == 0 {
                warm.calls = 1;
            }
            warm.bytes = report.cost.memory_bytes;
            // Grown past half its limit since its first call (what it starts with does
            // not count: a runtime that starts big is not recycled every call).
            let grown = warm.bytes.saturating_sub(warm.first_bytes) as u64;
            if warm.calls >= limits.instance_calls || grown > (limits.memory_mib << 20) / 2 {
                // Recycled: the next record of this tenant gets a fresh instance.
                self.live.remove(&key);
            }
        }
        if report
            .result
            .as_ref()
            .is_err_and(CallError::poisons_instance)
        {
            // A trapped instance is never reused: the next record gets a fresh one.
            self.live.remove(&key);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warm(last_batch: u64, bytes: usize) -> Warm<()> {
        Warm {
            instance: (),
            calls: 1,
            last_batch,
            last_call: last_batch,
            first_bytes: 0,
            bytes,
        }
    }

    #[test]
    fn warm_instances_are_trimmed_to_the_most_recent_by_count_and_by_memory() {
        let budget = WarmBudget::default();
        let mut by_count = Instances::default();
        for i in 0..(budget.instances as u64 + 10) {
            by_count
                .live
                .insert((format!("t{i}"), "p".into()), warm(i, 1 << 10));
        }
        by_count.trim(budget);
        assert_eq!(by_count.live.len(), budget.instances);
        assert!(
            !by_count.live.contains_key(&("t9".into(), "p".into())),
            "oldest dropped"
        );
        let newest = format!("t{}", budget.instances + 9);
        assert!(
            by_count.live.contains_key(&(newest, "p".into())),
            "newest kept"
        );

        let mut by_bytes = Instances::default();
        let big = (budget.bytes / 3) as usize;
        for i in 0..5u64 {
            by_bytes
                .live
                .insert((format!("t{i}"), "p".into()), warm(i, big));
        }
        by_bytes.trim(budget);
        let mut kept: Vec<String> = by_bytes.live.keys().map(|k| k.0.clone()).collect();
        kept.sort();
        assert_eq!(
            kept,
            ["t2", "t3", "t4"],
            "the three most recent fit the budget"
        );
    }

    /// A pool with room for `room` live instances, as wasmtime's pooling allocator has.
    struct SmallPool {
        room: usize,
        live: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        reference: std::sync::Arc<crate::model::PluginRef>,
    }

    /// An instance that gives its slot back when dropped.
    struct Slot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Drop for Slot {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Instance for Slot {
        fn transform(&mut self, _: &LazyRecord<'_>, _: &str) -> CallReport {
            CallReport {
                result: Ok(Vec::new()),
                cost: crate::transform::CallCost {
                    elapsed: std::time::Duration::ZERO,
                    fuel: None,
                    memory_bytes: 1 << 20,
                    limits: Limits::default(),
                },
            }
        }
    }

    impl Plugin for SmallPool {
        type Instance = Slot;

        fn reference(&self) -> &std::sync::Arc<crate::model::PluginRef> {
            &self.reference
        }

        fn instantiate(&self, _: &str, _: Limits) -> Result<Slot, CallError> {
            use std::sync::atomic::Ordering;
            if self.live.fetch_add(1, Ordering::SeqCst) >= self.room {
                self.live.fetch_sub(1, Ordering::SeqCst);
                return Err(CallError::NoRoom);
            }
            Ok(Slot(self.live.clone()))
        }
    }

    #[test]
    fn a_full_pool_drops_the_least_recently_used_instance_even_of_this_batch() {
        let pool = SmallPool {
            room: 3,
            live: Default::default(),
            reference: std::sync::Arc::new(crate::model::PluginRef {
                name: "p".into(),
                sha256: String::new(),
            }),
        };
        let text = r#"{"eventID":"1","eventName":"INSERT","eventSourceARN":"arn:aws:dynamodb:us-east-1:1:table/T/stream/x","dynamodb":{"Keys":{"id":{"S":"a"}},"SequenceNumber":"1"}}"#;
        let record = LazyRecord::new(crate::record::parse(text).expect("record"));
        let mut instances = Instances {
            batch: 1,
            ..Default::default()
        };
        // One batch meets five tenants in a pool with room for three: every record is
        // served, the least recently used instances making room.
        for tenant in ["a", "b", "c", "a", "d", "e"] {
            let report = instances
                .transform(tenant, "p", &pool, &record, "{}", Limits::default())
                .expect("an instance, made by dropping the least recently used");
            assert!(report.result.is_ok());
        }
        let mut kept: Vec<&str> = instances.live.keys().map(|k| k.0.as_str()).collect();
        kept.sort();
        // b and c were used least recently ("a" was used again before d came).
        assert_eq!(kept, ["a", "d", "e"]);
        assert_eq!(pool.live.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn the_warm_budget_follows_the_functions_memory() {
        let template = WarmBudget::for_memory_mb(DEFAULT_FUNCTION_MEMORY_MB);
        assert_eq!(template, WarmBudget::default());
        assert!(
            template.instances >= 1000,
            "a thousand tenants stay warm in the template's function: {template}"
        );
        assert!(template.bytes < DEFAULT_FUNCTION_MEMORY_MB << 20);
        let small = WarmBudget::for_memory_mb(128);
        assert!(small.instances < template.instances && small.bytes < template.bytes);
        assert!(small.instances >= 64);
        assert_eq!(
            WarmBudget::for_memory_mb(0),
            small,
            "below Lambda's least is its least"
        );
        let largest = WarmBudget::for_memory_mb(10_240);
        assert!(largest.bytes <= 10_240 << 20);
        assert_eq!(
            WarmBudget::for_memory_mb(u64::MAX),
            largest,
            "above Lambda's most is its most"
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
}
