//! weir: DynamoDB Streams records, mapped by sandboxed WebAssembly plugins, published to
//! Amazon EventBridge. This crate is the Lambda function and the command line; the record
//! path is in the crates it wires together, and each item is used from the crate and module
//! that define it (this crate re-exports none of them):
//!
//! - `weir-core`: [`weir_core::record`] decodes, [`weir_core::pipeline`] routes and
//!   transforms, [`weir_core::validate`] checks, [`weir_core::model`] is what a record
//!   becomes, [`weir_core::batch`] gives each record its verdict through the
//!   [`weir_core::sink`] traits and [`weir_core::retry`]'s one driver;
//!   [`weir_core::manifest`] is the configuration. No wasmtime, no AWS SDK.
//! - `weir-runtime`: [`weir_runtime::plugin`] runs plugins in wasmtime,
//!   [`weir_runtime::native`] decides which precompiled code may run, [`weir_runtime::slot`]
//!   loads a plugin on first use; [`weir_runtime::Pipeline`] is the pipeline with those slots.
//! - `weir-aws`: [`weir_aws::client`] builds clients and classifies errors,
//!   [`weir_aws::publish`] and [`weir_aws::dead_letter`] are the EventBridge and SQS sinks,
//!   [`weir_aws::store`] reads files and S3, [`weir_aws::redrive`] sends dead letters back
//!   through.
//!
//! Here: [`lambda`] is the handler (its manifest and plugins kept fresh by
//! [`weir_runtime::loader`], reading through [`weir_aws::store`]), [`telemetry`] logs and
//! measures, [`cli`] is the command line (one file per command), [`cases`] runs golden
//! tests, [`scaffold`] writes new plugins and [`infra`] turns destinations into
//! CloudFormation.

#![deny(missing_docs)]

pub mod cases;
pub mod cli;
pub mod infra;
pub mod lambda;
pub mod scaffold;
pub mod telemetry;
