//! The instance pool: how many plugin instances the engine holds room for, sized from what
//! a manifest can use, and the address space each one reserves.
//!
//! wasmtime's pooling allocator reserves every slot when the engine starts, so the pool's
//! size is address space reserved before the first record. Sized for 1,000 instances it
//! was about 8 TiB: free on an ordinary kernel, but an emulator or sandbox that accounts
//! for reserved memory page by page (qemu-user among them) never got the function
//! started, and it would not fit a 39-bit address space. Sized from the manifest, the
//! example manifest reserves 36 GiB and twenty single-plugin tenants 242 GiB
//! (BENCHMARKS.md, "Reserved address space").

use std::collections::BTreeSet;

use weir_core::manifest::{DEFAULT_TENANT, Manifest};

/// The most (tenant, plugin) instances one engine holds, whatever the manifest: the warm
/// ones kept between batches and the ones a batch adds. When the pool is full, the batch
/// drops the warm instances it does not use; if there is still no room, instantiating
/// fails with `CallError::NoRoom` and those records are retried.
pub const MAX_LIVE_INSTANCES: u32 = 1000;

/// The instances of an engine no manifest sized ([`PoolSize::without_manifest`]): enough
/// for a few tenants, about 200 GiB of address space. Several engines live side by side in
/// a test process, and at [`MAX_LIVE_INSTANCES`] each would reserve 12 TiB.
pub const WITHOUT_MANIFEST_INSTANCES: u32 = 16;

/// Tenant ids the manifest's `default` entry is given room for, per plugin it names. Each
/// id the default entry serves runs in instances of its own, so the number is not in the
/// manifest: this is a whole batch of the template's `BatchSize` (100), every record from
/// another tenant. More distinct ids than this in one batch make the rest wait for room
/// (retried), as a full pool always did.
pub const DEFAULT_TENANT_ROOM: u32 = 100;

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
    /// Plugin (component) instances alive at once.
    pub instances: u32,
    /// How far one linear memory may grow: the largest `memory_mib` any tenant has. The
    /// per-tenant limit is enforced on each instance; this is a second wall, in the pool. A
    /// plugin whose memory starts larger could serve no tenant, and is refused at load.
    pub max_memory_bytes: u64,
}

impl PoolSize {
    /// Room for everything `manifest` can run at once: one instance per tenant and plugin
    /// it names, [`DEFAULT_TENANT_ROOM`] tenants for the `default` entry, at least 1 and at
    /// most [`MAX_LIVE_INSTANCES`]; memories as large as the largest memory limit.
    pub fn for_manifest(manifest: &Manifest) -> Self {
        let mut instances: u64 = 0;
        let mut memory_mib: u64 = 1;
        for (id, tenant) in &manifest.tenants {
            let plugins = tenant.plugin_names().collect::<BTreeSet<_>>().len() as u64;
            let ids = if id == DEFAULT_TENANT {
                u64::from(DEFAULT_TENANT_ROOM)
            } else {
                1
            };
            instances = instances.saturating_add(plugins.saturating_mul(ids));
            memory_mib = memory_mib.max(manifest.limits_for(tenant).memory_mib);
        }
        PoolSize {
            instances: instances.clamp(1, u64::from(MAX_LIVE_INSTANCES)) as u32,
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

    /// Whether everything `other` has room for fits in this pool.
    pub fn covers(&self, other: PoolSize) -> bool {
        self.instances >= other.instances && self.max_memory_bytes >= other.max_memory_bytes
    }

    /// The linear memories in the pool.
    pub fn memories(&self) -> u32 {
        self.instances.saturating_mul(MEMORIES_PER_INSTANCE)
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
    ///   [`TABLES_PER_INSTANCE`] tables and [`CORE_INSTANCES_PER_INSTANCE`] core instances,
    ///   and the pool has that much for each of its instances: a component that would not
    ///   fit its share is refused at load, so the pool never runs out before `instances`.
    /// - The first pages of a reused memory stay mapped: a plugin's stack and hot data live
    ///   there, and zeroing them is cheaper than faulting them in again.
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
            .table_keep_resident(64 << 10);
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
    fn the_pool_holds_one_instance_per_tenant_and_plugin_and_room_for_default_tenants() {
        let named = manifest(
            "[tenants.x]\nplugin = \"a\"\n[tenants.y]\nplugins = [\"a\", \"b\"]\n\
             [tenants.z]\nplugin = \"b\"\nlimits = { memory_mib = 256 }\n",
        );
        assert_eq!(
            PoolSize::for_manifest(&named),
            PoolSize {
                instances: 4,
                max_memory_bytes: 256 << 20
            }
        );
        let with_default =
            manifest("[tenants.x]\nplugin = \"a\"\n[tenants.default]\nplugins = [\"a\", \"b\"]\n");
        let pool = PoolSize::for_manifest(&with_default);
        assert_eq!(pool.instances, 1 + 2 * DEFAULT_TENANT_ROOM);
        assert_eq!(pool.max_memory_bytes, 64 << 20, "the default memory limit");
        let mut many = String::new();
        for i in 0..1500 {
            many.push_str(&format!("[tenants.t{i}]\nplugin = \"a\"\n"));
        }
        assert_eq!(
            PoolSize::for_manifest(&manifest(&many)).instances,
            MAX_LIVE_INSTANCES
        );
        assert_eq!(PoolSize::for_manifest(&manifest("")).instances, 1);
        // A manifest that needs more of either is not covered.
        assert!(pool.covers(PoolSize::for_manifest(&manifest(
            "[tenants.x]\nplugin = \"a\"\n"
        ))));
        assert!(
            !pool.covers(PoolSize::for_manifest(&named)),
            "a larger memory limit"
        );
        assert!(
            !PoolSize::for_manifest(&named).covers(pool),
            "more instances"
        );
        let largest = PoolSize {
            instances: MAX_LIVE_INSTANCES,
            max_memory_bytes: MEMORY_RESERVATION,
        };
        assert!(largest.covers(pool));
        assert!(!pool.covers(largest));
    }

    #[test]
    fn the_reservation_is_the_memories_with_their_guards_and_the_tables() {
        let three = PoolSize {
            instances: 3,
            max_memory_bytes: 64 << 20,
        };
        // 9 memories of 4 GiB + 32 MiB, one leading guard, 12 tables of 1 MiB.
        assert_eq!(
            three.reserved_bytes(),
            9 * ((4 << 30) + (32 << 20)) + (32 << 20) + 12 * (1 << 20)
        );
        assert!(PoolSize::without_manifest().reserved_bytes() < 200 << 30);
    }
}
