//! weir's integration tests, in one binary (wasmtime and the AWS SDKs are linked once): one
//! module per area, the shared fixtures in `support`. Run one area with
//! `cargo test -p weir --test it AREA::` (for example `faults::`).
//!
//! All areas share one process and run in parallel: a test that needs the process to
//! itself (the fault matrix's peak memory) runs itself in a child process, and a test
//! gives a child process its environment rather than setting the process's own.

mod support;

/// The plugin author's path: example plugins' golden cases, `weir test`, `weir new plugin`.
mod authoring;
/// `weir backfill` from a table's Scan or export, killed and resumed, paced.
mod backfill;
/// The `bootstrap` binary under cargo-lambda's Lambda Runtime API emulator.
mod bootstrap;
/// The `weir` command line end to end on the example manifest and plugins.
mod cli;
/// Installing `weir`: `--version`, completions, one-line AWS errors, EventBridge quotas.
mod cli_install;
/// `weir run --publish` to EventBridge and SQS.
mod cli_publish;
/// Per-item coalescing within a batch.
mod coalesce;
/// The deployment template, `weir infra`, and allow-listed destinations.
mod deploy;
/// The fault matrix: misbehaving plugins and bad input (docs/RELIABILITY.md).
mod faults;
/// The command line's edges: a closed stdout, flags and files out of range.
mod flags_and_pipes;
/// Events in the shapes other tools write them.
mod foreign_events;
/// A `weir` binary copied outside any checkout scaffolds, builds and tests plugins.
mod installed;
/// The Lambda handler, called directly.
mod lambda;
/// The JavaScript and Python builds of a plugin against the Rust one.
mod languages;
/// Native code runs only as far as the operator said: pins, trust, the compiled-code cache.
mod native_code;
/// Each item has one public path: no re-exports of another crate's or a public module's items.
mod public_paths;
/// Redrive of dead letters and of an API destination's failures.
mod redrive;
/// Manifests and plugins in S3: hot reload, the compiled cache, tenant isolation.
mod reload;
