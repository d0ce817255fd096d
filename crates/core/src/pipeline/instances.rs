//! The warm instances: one per (tenant, plugin), kept between a warm function's batches,
//! recycled and trimmed so they never outstay their limits.

use std::collections::HashMap;

use crate::manifest::Limits;
use crate::record::LazyRecord;
use crate::transform::{CallError, CallReport, Instance, Plugin};

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
    pub(super) live: HashMap<(String, String), Warm<I>>,
    /// The number of the batch now using them.
    pub(super) batch: u64,
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
pub(super) struct Warm<I> {
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
    pub(super) fn trim(&mut self) {
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

impl<I: Instance> Instances<I> {
    /// Runs `record` through `tenant`'s instance of `plugin` (named `name`): the warm one
    /// if it is kept, else a new one, made after dropping the idle warm ones if the pool is
    /// full. Afterwards the instance is dropped if it trapped, has served its calls or has
    /// grown past half its memory limit. An error is an instance that could not be made:
    /// [`CallError::NoRoom`] when the pool has no room even then.
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
        let report = match self.live.get_mut(&key) {
            Some(warm) => {
                warm.calls += 1;
                warm.last_batch = batch;
                warm.instance.transform(record, config)
            }
            None => {
                let mut made = plugin.instantiate(tenant, limits);
                // The pool is full: drop the warm instances this batch does not use.
                if matches!(made, Err(CallError::NoRoom)) && self.drop_idle() > 0 {
                    made = plugin.instantiate(tenant, limits);
                }
                let mut instance = made?;
                let report = instance.transform(record, config);
                let warm = Warm {
                    instance,
                    calls: 0,
                    last_batch: batch,
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
}
