//! The host side of what a plugin may import, one interface per file, each on its own small
//! part of the store's state: [`log`] (weir's `log`), [`image`] (the record's images, for
//! `weir:transform@0.2.0`), [`stdio`] (stdout and stderr,
//! captured), [`clocks`] (frozen), [`memory`] (the limit). Everything else WASI offers is
//! backed by a context that grants nothing: no preopened directories, no environment, no
//! arguments, stdin empty, no network.

use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub(super) mod clocks;
pub(super) mod image;
pub(super) mod log;
pub(super) mod memory;
pub(super) mod stdio;

/// Everything one instance's store holds. No field is shared with another tenant.
pub(super) struct PluginState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: memory::MemoryLimiter,
    pub(super) log: log::PluginLog,
    /// The images of the record being transformed, for 0.2 plugins.
    pub(super) images: image::ImageReads,
    pub(super) captured: Arc<Mutex<stdio::Captured>>,
    pub(super) tenant: String,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
