//! weir: DynamoDB Streams records, mapped by sandboxed WebAssembly plugins, published to
//! Amazon EventBridge.
//!
//! Each module does one job. A record's path: [`record`] decodes it, [`pipeline`] routes it
//! to its tenant's plugins, [`plugin`] runs them sandboxed, [`validate`] checks what
//! EventBridge would refuse, and it ends as a [`model`] `Entry` or `DeadLetter`;
//! [`batch`] gives every record of a batch its verdict, [`publish`] sends entries to
//! EventBridge and [`dead_letter`] keeps what was rejected, both through [`retry`]'s one
//! retry driver. Around it: [`manifest`] reads
//! the configuration, [`store`] reads files and S3 objects, [`slot`] loads one plugin on
//! first use, [`reload`] keeps the manifest and plugins fresh, [`native`] decides which
//! precompiled code may run, [`aws`] classifies AWS errors, [`lambda`] is the handler,
//! [`infra`] turns destinations into CloudFormation, [`telemetry`] logs and measures, and
//! [`cli`] is the command line.

#![deny(missing_docs)]

pub mod aws;
pub mod batch;
pub mod bench;
pub mod cases;
pub mod cli;
pub mod dead_letter;
pub mod infra;
pub mod lambda;
pub mod manifest;
pub mod model;
pub mod native;
pub mod pipeline;
pub mod plugin;
pub mod publish;
pub mod record;
pub mod redrive;
pub mod reload;
pub mod retry;
pub mod scaffold;
pub mod slot;
pub mod store;
pub mod telemetry;
pub mod validate;
