//! weir: DynamoDB Streams records, mapped by sandboxed WebAssembly plugins, published to
//! Amazon EventBridge. This crate is the Lambda function and the command line; the record
//! path is in the crates it wires together:
//!
//! - `weir-core`: [`record`] decodes, [`pipeline`] routes and transforms, [`validate`]
//!   checks, [`model`] is what a record becomes, [`batch`] gives each record its verdict
//!   through the [`sink`] traits and [`retry`]'s one driver; [`manifest`] is the
//!   configuration. No wasmtime, no AWS SDK.
//! - `weir-runtime`: [`plugin`] runs plugins in wasmtime, [`native`] decides which
//!   precompiled code may run, [`slot`] loads a plugin on first use.
//! - `weir-aws`: [`aws`] builds clients and classifies errors, [`publish`] and
//!   [`dead_letter`] are the EventBridge and SQS sinks, [`store`] reads files and S3,
//!   [`redrive`] sends dead letters back through.
//!
//! Here: [`lambda`] is the handler, [`reload`] keeps the manifest and plugins fresh,
//! [`telemetry`] logs and measures, [`cli`] is the command line (one file per command),
//! [`cases`] runs golden tests, [`scaffold`] writes new plugins and [`infra`] turns
//! destinations into CloudFormation.

#![deny(missing_docs)]

pub use weir_aws::{aws, dead_letter, export, publish, redrive, scan, store};
pub use weir_core::{
    backfill, batch, location, manifest, model, record, retry, sink, transform, validate,
};
pub use weir_runtime::{native, plugin, slot};

/// The pipeline: the core's, with wasmtime slots ([`weir_runtime::Pipeline`]).
pub mod pipeline {
    pub use weir_core::pipeline::*;
    pub use weir_runtime::Pipeline;
}

pub mod cases;
pub mod cli;
pub mod infra;
pub mod lambda;
pub mod reload;
pub mod scaffold;
pub mod telemetry;
