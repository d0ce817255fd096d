//! The memory limit: growth past the tenant's limit is denied, and remembered.
//!
//! The limit is per instance: a component can hold several core modules, each with its own
//! linear memory, and tables besides. Every memory and table of the instance counts toward
//! one total, so three memories of 60 MiB are 180 MiB against a 64 MiB limit, not 60.

/// What one table element is counted as: a pointer, as the host stores it.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Most elements one table may hold, whatever the memory limit.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Denies growth of any memory or table that would take the instance's total past the
/// tenant's limit, and remembers that it did so a trap that follows can be reported as a
/// memory limit rather than a bare trap.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) hit: bool,
    /// The bytes of all the instance's memories and tables now. Neither shrinks, so this
    /// is also the most they have held: what reports and the warm pool count.
    pub(crate) peak: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(mib: u64) -> Self {
        MemoryLimiter {
            max_bytes: usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            hit: false,
            peak: 0,
        }
    }

    /// Admits `more` bytes if the total stays within the limit.
    fn admit(&mut self, more: usize) -> bool {
        match self.peak.checked_add(more) {
            Some(total) if total <= self.max_bytes => {
                self.peak = total;
                true
            }
            _ => {
                self.hit = true;
                false
            }
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    /// Called for each memory's first allocation (`current` 0, at instantiation) and for
    /// every growth after it.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.admit(desired.saturating_sub(current)))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.hit = true;
            return Ok(false);
        }
        Ok(self.admit(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Instantiates `wat` in a store limited to `mib`; the limiter after it.
    fn instantiate(wat: &str, mib: u64) -> (bool, MemoryLimiter) {
        let engine = wasmtime::Engine::default();
        let module =
            wasmtime::Module::new(&engine, wat::parse_str(wat).expect("wat")).expect("module");
        let mut store = wasmtime::Store::new(&engine, MemoryLimiter::new(mib));
        store.limiter(|l| l);
        let ok = wasmtime::Instance::new(&mut store, &module, &[]).is_ok();
        (ok, store.into_data())
    }

    #[test]
    fn every_memory_and_table_of_an_instance_counts_toward_one_limit() {
        // Three memories of 60 MiB (960 pages of 64 KiB): each is under 64 MiB, all
        // three are not.
        let three = "(module (memory 960) (memory 960) (memory 960))";
        let (ok, limiter) = instantiate(three, 64);
        assert!(!ok, "three 60 MiB memories ran under a 64 MiB limit");
        assert!(limiter.hit);
        assert!(limiter.peak <= 64 << 20, "{}", limiter.peak);
        let (ok, limiter) = instantiate(three, 200);
        assert!(ok);
        assert_eq!(limiter.peak, 3 * (60 << 20));

        // Growth counts against what the others hold.
        let grows = r#"(module (memory 512) (memory $b 512)
            (func $grow (drop (memory.grow $b (i32.const 16))))
            (start $grow))"#;
        let (ok, limiter) = instantiate(grows, 64);
        assert!(ok && limiter.hit, "a growth past the total was allowed");
        assert_eq!(limiter.peak, 64 << 20);

        // A table counts too.
        let table = "(module (memory 960) (table 1000000 funcref))";
        let (ok, limiter) = instantiate(table, 64);
        assert!(!ok && limiter.hit, "{}", limiter.peak);
        let (ok, _) = instantiate(table, 70);
        assert!(ok);
    }
}
