//! Clocks: frozen at zero, so plugins get no host time beyond the record's own; and sleeps
//! that are ready at once, so a sleeping plugin cannot park the host thread where the epoch
//! deadline cannot reach it (a plugin that sleeps in a loop is a busy loop, time-limited).

use std::time::Duration;

use super::PluginState;

/// A clock stuck at zero: plugins get no host time beyond the record's own.
pub(crate) struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The monotonic clock interface as wasmtime-wasi 48 defines it; older 0.2 imports link
/// to it by semver.
pub(crate) const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A pollable that is already ready: what every sleep gets.
struct ReadyNow;

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for ReadyNow {
    async fn ready(&mut self) {}
}

pub(crate) fn ready_now(
    state: &mut PluginState,
) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
    let ready = state.table.push(ReadyNow)?;
    wasmtime_wasi::p2::subscribe(&mut state.table, ready)
}
