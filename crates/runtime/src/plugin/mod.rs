//! The plugin runtime: one wasmtime engine, plugins loaded from components, and instances
//! that run one tenant's records under that tenant's limits.
//!
//! Sandbox policy: a plugin may import only the `weir:transform` log and the WASI
//! interfaces a language runtime links for computing (cli, io, clocks, random,
//! filesystem). Those are backed by a context that grants nothing: no preopened
//! directories, no environment, no arguments, stdin empty, clocks frozen at zero.
//! `wasi:http` and `wasi:sockets` (a plugin has no network: API destinations make the
//! calls), and any interface weir does not know, are refused when the plugin is loaded,
//! with a message naming the import. The sockets context is still deny-all (TCP, UDP and
//! name lookup disabled), as a second wall.
//!
//! [`engine`](PluginEngine) loads components (pins, trusted native code, the import policy
//! in `imports`, the contract's export); [`pool`] sizes its instance pool from the
//! manifest; `instance` runs one tenant's calls; `host` holds what plugins may import, one
//! interface per file.

mod engine;
mod imports;
mod instance;
mod interfaces;
pub mod pool;

pub use engine::{Compile, CompileNotice, LoadError, LoadOptions, PluginEngine, target_triple};
pub use instance::{Plugin, PluginInstance};

/// How often the epoch advances; time limits are counted in these ticks.
const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(1);

/// The host side of the `weir:transform@0.2.0` WIT world (wit/transform.wit).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plugin",
    });
}

/// The host side of `weir:transform@0.1.0` (wit/0.1.0), for plugins built against it:
/// they keep loading, and get the record's images as plain JSON text.
mod bindings_v01 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        world: "plugin",
    });
}

/// The contract versions a plugin may be built against, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `weir:transform@0.2.0`: images are resources read through the host.
    V0_2,
    /// `weir:transform@0.1.0`: images are JSON text.
    V0_1,
}

impl Contract {
    /// The export that says a component is a plugin of this version.
    pub fn export(self) -> &'static str {
        match self {
            Contract::V0_2 => "weir:transform/transformer@0.2.0",
            Contract::V0_1 => "weir:transform/transformer@0.1.0",
        }
    }
}
