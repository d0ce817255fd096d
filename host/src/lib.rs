//! weir: DynamoDB Streams records, mapped by sandboxed WebAssembly plugins, published to
//! Amazon EventBridge.
//!
//! Each module does one job: [`record`] decodes stream records, [`manifest`] reads the
//! configuration, [`store`] reads files and S3 objects, [`reload`] loads and hot-reloads
//! the manifest and plugins, [`plugin`] runs sandboxed plugins, [`native`] decides which precompiled code may run, [`validate`] checks what EventBridge
//! would refuse, [`pipeline`] takes each record to its outcome, [`publish`] sends entries
//! to EventBridge, [`dead_letter`] keeps what was rejected, [`batch`] gives every record of
//! a batch its verdict, [`lambda`] is the handler, [`infra`] turns destinations into CloudFormation, [`telemetry`] logs and measures, and
//! [`cli`] is the command line.

pub mod batch;
pub mod bench;
pub mod cases;
pub mod cli;
pub mod dead_letter;
pub mod infra;
pub mod lambda;
pub mod manifest;
pub mod native;
pub mod pipeline;
pub mod plugin;
pub mod publish;
pub mod record;
pub mod redrive;
pub mod reload;
pub mod scaffold;
pub mod store;
pub mod telemetry;
pub mod validate;
