//! weir's plugin runtime, over wasmtime: it implements the core's
//! [`weir_core::transform`] traits.
//!
//! [`plugin`] holds the engine, the sandbox and its import policy, the limits, and the
//! instances that run one tenant's records; [`native`] decides which precompiled code may
//! run; [`slot`] loads a plugin the manifest names on first use, reading it through the
//! core's `Fetch` trait (files, or S3 through the AWS crate); [`loader`] reads a manifest,
//! makes its slots and reloads both while warm.

#![deny(missing_docs)]

pub mod loader;
pub mod native;
pub mod open;
pub mod plugin;
pub mod slot;

/// The pipeline as weir runs it: plugins in wasmtime slots.
pub type Pipeline = weir_core::pipeline::Pipeline<slot::PluginSlot>;
