//! weir's AWS edges, the only crate besides the Lambda function that links an AWS SDK.
//!
//! [`aws`] builds every client (the SDK's own retries off where weir retries) and
//! classifies errors; [`publish`] is the EventBridge event sink and [`dead_letter`] the
//! SQS dead-letter sink, both retried by the core's one driver; [`store`] reads files and
//! S3 objects; [`redrive`] sends dead letters back through the pipeline; [`scan`] and
//! [`export`] read a table's items for a backfill (a Scan, or an export to S3).

#![deny(missing_docs)]

pub mod client;
pub mod dead_letter;
pub mod export;
pub mod publish;
pub mod redrive;
pub mod scan;
pub mod store;
