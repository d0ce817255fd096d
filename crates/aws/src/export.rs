//! A DynamoDB export to S3 in `DYNAMODB_JSON` format, read for a backfill: a point-in-time
//! copy of the table that costs it no read capacity.
//!
//! The export's folder, `s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID`, holds
//! `manifest-summary.json` (the table's ARN, the item count, where the file list is),
//! `manifest-files.json` (one JSON object per line, each naming a data file by
//! `dataFileS3Key` with its `itemCount`), and the data files: gzipped JSON lines, one
//! `{"Item": {...}}` per item, the item in DynamoDB's typed JSON.

use std::io::Read as _;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Where exports are read from: S3 with the SDK's standard configuration and retries.
#[derive(Clone)]
pub struct Exports {
    client: aws_sdk_s3::Client,
}

impl Exports {
    /// Exports read with `sdk`.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Exports {
            client: crate::aws::s3(sdk),
        }
    }

    /// The export at `url`: `s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID`.
    pub fn open(&self, url: &str) -> anyhow::Result<ExportSource> {
        ExportSource::new(self.client.clone(), url)
    }
}

/// One export's folder in S3.
#[derive(Clone)]
pub struct ExportSource {
    client: aws_sdk_s3::Client,
    bucket: String,
    folder: String,
}

/// What `manifest-summary.json` says that a backfill needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSummary {
    /// The exported table, which routes every item.
    pub table_arn: String,
    /// Items in the export.
    #[serde(default)]
    pub item_count: Option<u64>,
    /// `DYNAMODB_JSON` (the only format read here) or `ION`.
    #[serde(default)]
    pub export_format: Option<String>,
    /// The key of `manifest-files.json`.
    #[serde(default)]
    pub manifest_files_s3_key: Option<String>,
}

/// One data file of the export.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFile {
    /// Its key in the export's bucket.
    pub data_file_s3_key: String,
    /// Items in it.
    #[serde(default)]
    pub item_count: Option<u64>,
}

impl ExportSource {
    /// The export at `url`: `s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID`.
    pub fn new(client: aws_sdk_s3::Client, url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .with_context(|| format!("{url}: an export is an s3:// URL"))?;
        let (bucket, folder) = rest
            .split_once('/')
            .with_context(|| format!("{url}: no folder after the bucket"))?;
        if !folder.contains("AWSDynamoDB/") {
            bail!("{url}: expected s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID");
        }
        Ok(ExportSource {
            client,
            bucket: bucket.to_owned(),
            folder: folder.trim_end_matches('/').to_owned(),
        })
    }

    async fn object(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", crate::aws::describe_sdk_error(&e)))
            .with_context(|| format!("cannot read s3://{}/{key}", self.bucket))?;
        Ok(out
            .body
            .collect()
            .await
            .with_context(|| format!("cannot read s3://{}/{key}", self.bucket))?
            .into_bytes()
            .to_vec())
    }

    /// The export's summary; an export in another format than `DYNAMODB_JSON` is refused.
    pub async fn summary(&self) -> anyhow::Result<ExportSummary> {
        let key = format!("{}/manifest-summary.json", self.folder);
        let summary: ExportSummary = serde_json::from_slice(&self.object(&key).await?)
            .with_context(|| format!("s3://{}/{key}: not an export summary", self.bucket))?;
        match summary.export_format.as_deref() {
            None | Some("DYNAMODB_JSON") => Ok(summary),
            Some(other) => bail!("the export is in {other}; weir reads DYNAMODB_JSON exports"),
        }
    }

    /// Its data files, in the order `manifest-files.json` lists them.
    pub async fn files(&self, summary: &ExportSummary) -> anyhow::Result<Vec<DataFile>> {
        let key = summary
            .manifest_files_s3_key
            .clone()
            .unwrap_or_else(|| format!("{}/manifest-files.json", self.folder));
        let text = String::from_utf8(self.object(&key).await?)
            .with_context(|| format!("s3://{}/{key} is not UTF-8", self.bucket))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).with_context(|| {
                    format!("s3://{}/{key}: not a data-file line: {l}", self.bucket)
                })
            })
            .collect()
    }

    /// A data file's items, each as typed JSON text, in file order.
    pub async fn items(&self, file: &DataFile) -> anyhow::Result<Vec<String>> {
        let gz = self.object(&file.data_file_s3_key).await?;
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(gz.as_slice())
            .read_to_string(&mut text)
            .with_context(|| format!("{}: not gzipped UTF-8", file.data_file_s3_key))?;
        #[derive(Deserialize)]
        struct Line<'a> {
            #[serde(rename = "Item", borrow)]
            item: &'a RawValue,
        }
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str::<Line<'_>>(l)
                    .map(|line| line.item.get().to_owned())
                    .with_context(|| {
                        format!(
                            "{} line {}: not {{\"Item\": ...}}",
                            file.data_file_s3_key,
                            i + 1
                        )
                    })
            })
            .collect()
    }
}
