//! The memory limit: growth past the tenant's limit is denied, and remembered.

/// Denies memory growth past the tenant's limit, and remembers that it did so a trap
/// that follows can be reported as a memory limit rather than a bare trap.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) hit: bool,
    /// The largest size a memory has been allowed to reach.
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
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
