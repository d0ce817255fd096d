//! weir's core: a DynamoDB Streams record's whole path, without a plugin runtime and
//! without an AWS SDK.
//!
//! A record's path: [`record`] decodes it, [`pipeline`] routes it to its tenant's plugins
//! and runs them through the [`transform`] traits (wasmtime implements them in the runtime
//! crate), [`validate`] checks what EventBridge would refuse, and it ends as a [`model`]
//! `Entry` or `DeadLetter`. [`batch`] gives every record of a batch its verdict, sending
//! entries and dead letters to the [`sink`]s, whose AWS implementations retry through
//! [`retry`]'s one driver. Around it: [`manifest`] is the configuration and [`location`]
//! says where it and the plugins are read from. [`image`] reads an item image lazily by
//! JSON pointer, as `weir:transform@0.2.0` plugins read it; [`text`] escapes what others
//! wrote before it is printed.

#![deny(missing_docs)]

pub mod backfill;
pub mod batch;
pub mod image;
mod json;
pub mod location;
pub mod manifest;
pub mod model;
pub mod pipeline;
pub mod record;
pub mod retry;
pub mod sink;
pub mod text;
pub mod transform;
pub mod validate;
