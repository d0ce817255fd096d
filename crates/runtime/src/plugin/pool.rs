//! The instance pool: how many plugin instances the engine holds room for, sized from the
//! function's memory (the instances it keeps warm, and a batch's worth more), and the
//! address space each one reserves.
//!
//! wasmtime's pooling allocator reserves every slot when the engine starts, so the pool's
//! size is address space reserved before the first record. It follows the instances alive
//! at once, never the manifest's tenant count: a SaaS with ten thousand tenants reserves
//! what one with a hundred does. When the pool is full, the batch drops the warm instances
//! it used least recently to make room (`weir_core::pipeline::Instances`).

use weir_core::manifest::Manifest;
use weir_core::pipeline::WarmBudget;

/// Instances a batch may make beyond the warm ones before it has to drop warm ones: a
/// whole batch of the template's `BatchSize` (100), every record from a tenant not warm.
pub const BATCH_ROOM: u32 = 100;

/// The most instances one engine holds, whatever the function's memory: 4,096 memories
/// of 4 GiB reserve 16 TiB, an eighth of a 47-bit address space.
pub const MAX_LIVE_INSTANCES: u32 = 4096;

/// The instances of an engine no manifest sized ([`PoolSize::without_manifest`]): enough
/// for a few tenants, about 70 GiB of address space. Several engines live side by side in
/// a test process.
pub const WITHOUT_MANIFEST_INSTANCES: u32 = 16;

/// Linear memories one plugin instance may define. componentize-js output defines 3; Rust
/// and componentize-py output define 1. A
/// component with more is refused when it loads, with wasmtime's message saying so, so
/// every plugin that loads fits its share and a full manifest always has room.
pub const MEMORIES_PER_INSTANCE: u32 = 3;

/// Core module instances one plugin instance may create (componentize-py output creates
/// 38: its interpreter and runtime are linked as many modules). They are counted, not
/// reserved, so room costs nothing.
pub const CORE_INSTANCES_PER_INSTANCE: u32 = 64;

/// Tables one plugin instance may define (componentize-js output defines 3). Each reserves
/// [`TABLE_ELEMENTS`] pointers, 1 MiB.
pub const TABLES_PER_INSTANCE: u32 = 4;

/// Elements a table may grow to.
pub const TABLE_ELEMENTS: usize = 1 << 17;

/// The address space reserved for each linear memory: 4 GiB, wasmtime's default on 64-bit
/// hosts, and kept whatever the memory limits say. A 32-bit WebAssembly address cannot
/// reach past 4 GiB, so with this reservation and [`MEMORY_GUARD`] behind it every load
/// and store is checked by the MMU alone, and compiled code has no bounds checks; any
/// smaller reservation puts a compare and branch into each memory access of every plugin
/// (with 64 MiB and a 64 KiB guard, the benchmark's Rust plugin took 1.05× as long per
/// record).
/// It is also part of the compiled code's compatibility: a `.cwasm` (and weir's disk
/// cache) only loads into an engine with the same reservation, so it cannot follow a
/// manifest's limits without making every precompiled plugin stale when they change.
/// The limits bound how far a memory may grow instead ([`PoolSize::max_memory_bytes`]).
pub const MEMORY_RESERVATION: u64 = 4 << 30;

/// The inaccessible guard after each memory (and once before the first): 32 MiB,
/// wasmtime's default. An access whose constant offset is within the guard needs no bounds
/// check; offsets that large are rare, but a smaller guard would save under 1% of each
/// slot's reservation while changing the compiled code's compatibility, so that every
/// existing `.cwasm` would be refused.
pub const MEMORY_GUARD: u64 = 32 << 20;

/// How large the engine's instance pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    /// Plugin (component) instances alive at once. There are as many linear memories (and
    /// [`MEMORIES_PER_INSTANCE`] more, so one instance of any plugin always fits): a plugin
    /// with three memories (componentize-js output) fits a third as many instances.
    pub instances: u32,
    /// How far one linear memory may grow: the largest `memory_mib` any tenant has. The
    /// per-tenant limit is enforced on each instance; this is a second wall, in the pool. A
    /// plugin whose memory starts larger could serve no tenant, and is refused at load.
    pub max_memory_bytes: u64,
}

impl PoolSize {
    /// Room for the instances `warm` keeps and a batch's worth more ([`BATCH_ROOM`]),
    /// at most [`MAX_LIVE_INSTANCES`], whatever the manifest's tenant count; memories as
    /// large as the largest memory limit the manifest sets.
    pub fn for_manifest(manifest: &Manifest, warm: WarmBudget) -> Self {
        let memory_mib = manifest
            .tenants
            .values()
            .map(|t| manifest.limits_for(t).memory_mib)
            .max()
            .unwrap_or(1)
            .max(1);
        let warm = u32::try_from(warm.instances).unwrap_or(u32::MAX);
        PoolSize {
            instances: warm.saturating_add(BATCH_ROOM).clamp(1, MAX_LIVE_INSTANCES),
            max_memory_bytes: memory_mib.saturating_mul(1 << 20).min(MEMORY_RESERVATION),
        }
    }

    /// The pool of an engine used before any manifest sized it (loading plugins directly,
    /// as tests do): [`WITHOUT_MANIFEST_INSTANCES`] instances, memories of any size a limit
    /// allows.
    pub fn without_manifest() -> Self {
        PoolSize {
            instances: WITHOUT_MANIFEST_INSTANCES,
            max_memory_bytes: MEMORY_RESERVATION,
        }
    }

    /// The pool of an engine that only compiles (`weir compile`): one instance, as it
    /// never instantiates anything; its compiled code is the same as any pool's.
    pub fn compile_only() -> Self {
        PoolSize {
            instances: 1,
            max_memory_bytes: MEMORY_RESERVATION,
        }
    }

    /// The linear memories in the pool.
    pub fn memories(&self) -> u32 {
        self.instances.saturating_add(MEMORIES_PER_INSTANCE - 1)
    }

    /// The address space the pool reserves when the engine starts: every memory slot with
    /// its guard, one leading guard, and every table.
    pub fn reserved_bytes(&self) -> u64 {
        let memories = u64::from(self.memories())
            .saturating_mul(MEMORY_RESERVATION.max(self.max_memory_bytes) + MEMORY_GUARD);
        let tables = u64::from(self.instances.saturating_mul(TABLES_PER_INSTANCE))
            .saturating_mul((TABLE_ELEMENTS * std::mem::size_of::<usize>()) as u64);
        memories.saturating_add(MEMORY_GUARD).saturating_add(tables)
    }

    /// wasmtime's pooling settings for this pool.
    ///
    /// - Per plugin instance, at most [`MEMORIES_PER_INSTANCE`] memories,
    ///   [`TABLES_PER_INSTANCE`] tables and [`CORE_INSTANCES_PER_INSTANCE`] core instances:
    ///   a component with more is refused at load, so one instance of any plugin that
    ///   loads always fits an empty pool.
    /// - A freed memory keeps the pages its instance wrote, reset in place to the plugin's
    ///   image (the kernel's `PAGEMAP_SCAN` finds them; up to 256 KiB), so the next
    ///   instance in that slot takes no page faults; a slot goes to the plugin that used it
    ///   last, least recently used first, so the slots ever touched are the instances
    ///   alive at once. (Without `PAGEMAP_SCAN`, before Linux 6.7, the first 256 KiB are
    ///   reset whole.) Measured in BENCHMARKS.md, "Many tenants".
    pub(crate) fn pooling_config(&self) -> wasmtime::PoolingAllocationConfig {
        let n = self.instances;
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_INSTANCE))
            .max_core_instances_per_component(CORE_INSTANCES_PER_INSTANCE)
            .total_memories(self.memories())
            .max_memories_per_component(MEMORIES_PER_INSTANCE)
            .max_memories_per_module(1)
            .max_memory_size(usize::try_from(self.max_memory_bytes).unwrap_or(usize::MAX))
            .total_tables(n.saturating_mul(TABLES_PER_INSTANCE))
            .max_tables_per_component(TABLES_PER_INSTANCE)
            .max_tables_per_module(4)
            .table_elements(TABLE_ELEMENTS)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(4 << 20)
            .linear_memory_keep_resident(256 << 10)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .max_unused_warm_slots(0);
        pool
    }
}

impl std::fmt::Display for PoolSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} plugin instances, {} memories of up to {} MiB, {:.1} GiB of address space reserved",
            self.instances,
            self.memories(),
            self.max_memory_bytes >> 20,
            self.reserved_bytes() as f64 / f64::from(1u32 << 30)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::location::Location;

    fn manifest(tenants: &str) -> Manifest {
        let text = format!(
            "event_bus = \"b\"\n[plugins.a]\npath = \"a.wasm\"\n[plugins.b]\npath = \"b.wasm\"\n\
             [[routes]]\ntable = \"T\"\nsource = \"s\"\ntenant = {{ attribute = \"t\" }}\n{tenants}"
        );
        Manifest::parse(&text, Location::File("/m/weir.toml".into())).expect("manifest")
    }

    #[test]
    fn the_pool_follows_the_warm_budget_and_never_the_tenant_count() {
        let warm = WarmBudget::for_memory_mb(1769);
        let tenants = |n: usize| {
            let mut text = String::new();
            for i in 0..n {
                text.push_str(&format!("[tenants.t{i}]\nplugin = \"a\"\n"));
            }
            PoolSize::for_manifest(&manifest(&text), warm)
        };
        let hundred = tenants(100);
        assert_eq!(
            hundred.instances,
            u32::try_from(warm.instances).expect("fits") + BATCH_ROOM
        );
        assert_eq!(
            tenants(1000),
            hundred,
            "a thousand tenants reserve the same"
        );
        assert_eq!(
            tenants(10_000),
            hundred,
            "ten thousand tenants reserve the same"
        );
        assert_eq!(tenants(1).reserved_bytes(), hundred.reserved_bytes());
        assert_eq!(
            hundred.max_memory_bytes,
            64 << 20,
            "the default memory limit"
        );
        // The largest memory limit any tenant has sizes the memories.
        let big = PoolSize::for_manifest(
            &manifest(
                "[tenants.x]\nplugin = \"a\"\n[tenants.z]\nplugin = \"b\"\nlimits = { memory_mib = 256 }\n",
            ),
            warm,
        );
        assert_eq!(big.max_memory_bytes, 256 << 20);
        assert_eq!(big.instances, hundred.instances);
        // A smaller function keeps fewer warm and reserves less; no function reserves more
        // than MAX_LIVE_INSTANCES.
        let small = PoolSize::for_manifest(&manifest(""), WarmBudget::for_memory_mb(128));
        assert!(small.instances < hundred.instances);
        assert!(small.reserved_bytes() < hundred.reserved_bytes());
        let huge = PoolSize::for_manifest(&manifest(""), WarmBudget::for_memory_mb(10_240 * 100));
        assert_eq!(huge.instances, MAX_LIVE_INSTANCES);
    }

    #[test]
    fn the_reservation_is_the_memories_with_their_guards_and_the_tables() {
        let three = PoolSize {
            instances: 3,
            max_memory_bytes: 64 << 20,
        };
        // 5 memories (one per instance, and room for one 3-memory instance) of 4 GiB +
        // 32 MiB, one leading guard, 12 tables of 1 MiB.
        assert_eq!(
            three.reserved_bytes(),
            5 * ((4 << 30) + (32 << 20)) + (32 << 20) + 12 * (1 << 20)
        );
        assert!(PoolSize::without_manifest().reserved_bytes() < 200 << 30);
    }
}
