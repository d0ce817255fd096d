//! The import policy: what a plugin may import, and the linker that provides it. Every
//! WASI interface is backed by a context that grants nothing (see [`super::host`]).

use wasmtime::Engine;
use wasmtime::component::Linker;

use super::interfaces::PluginState;
use super::interfaces::clocks::{MONOTONIC_CLOCK, ready_now};
use super::interfaces::image::ImageReads;
use super::interfaces::log::PluginLog;
use super::{bindings, bindings_v01};

/// The interfaces a plugin may import. Everything else is refused at load.
const ALLOWED_IMPORT_PREFIXES: &[&str] = &[
    "weir:transform/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// The linker every plugin is instantiated against: WASI (denying everything), sleeps that
/// are ready at once, and weir's own `log`.
pub(super) fn linker(engine: &Engine) -> anyhow::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    // Host time does not pass for plugins: a sleep (a pollable on the monotonic clock)
    // is ready at once, so it cannot park the host thread where the epoch deadline
    // cannot reach it. A plugin that sleeps in a loop is a busy loop, and time-limited.
    linker.allow_shadowing(true);
    {
        let mut clock = linker.instance(MONOTONIC_CLOCK)?;
        clock.func_wrap("subscribe-duration", |mut cx, (_,): (u64,)| {
            Ok((ready_now(cx.data_mut())?,))
        })?;
        clock.func_wrap("subscribe-instant", |mut cx, (_,): (u64,)| {
            Ok((ready_now(cx.data_mut())?,))
        })?;
    }
    linker.allow_shadowing(false);
    // weir's own interfaces, each on its own part of the store: the log sees only the
    // instance's log, the images only the record being transformed.
    use bindings::weir::transform as v02;
    use wasmtime::component::HasSelf;
    v02::log::add_to_linker::<PluginState, HasSelf<PluginLog>>(&mut linker, |s| &mut s.log)?;
    v02::types::add_to_linker::<PluginState, HasSelf<ImageReads>>(&mut linker, |s| &mut s.images)?;
    bindings_v01::Plugin::add_to_linker::<PluginState, HasSelf<PluginLog>>(&mut linker, |s| {
        &mut s.log
    })?;
    Ok(linker)
}

/// Why an import is refused, or `None` if plugins may have it.
pub(super) fn forbidden(import: &str) -> Option<&'static str> {
    if import.starts_with("wasi:http/") || import.starts_with("wasi:sockets/") {
        Some(
            "weir plugins have no network; EventBridge API destinations make the calls (build JavaScript without http/fetch, and keep std::net out of Rust plugins)",
        )
    } else if ALLOWED_IMPORT_PREFIXES
        .iter()
        .any(|p| import.starts_with(p))
    {
        None
    } else {
        Some(
            "weir provides only weir:transform and wasi cli, io, clocks, random and filesystem (no preopens)",
        )
    }
}
