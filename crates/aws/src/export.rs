//! A DynamoDB export to S3 in `DYNAMODB_JSON` format (or a local copy of its folder), read
//! for a backfill: a point-in-time copy of the table that costs it no read capacity.
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

    /// The export at `url`: `s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID`, or a local copy of
    /// that folder (a directory path).
    pub fn open(&self, url: &str) -> anyhow::Result<ExportSource> {
        if url.starts_with("s3://") {
            ExportSource::new(self.client.clone(), url)
        } else {
            ExportSource::local(url)
        }
    }
}

/// One export's folder: in S3, or a copy of it on this machine.
#[derive(Clone)]
pub struct ExportSource {
    place: Place,
    folder: String,
}

#[derive(Clone)]
enum Place {
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
    /// A local copy: the export folder's files, `data/` included, under this directory.
    Dir(std::path::PathBuf),
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
            place: Place::S3 {
                client,
                bucket: bucket.to_owned(),
            },
            folder: folder.trim_end_matches('/').to_owned(),
        })
    }

    /// A local copy of an export's folder (`manifest-summary.json`, `manifest-files.json`,
    /// `data/`): its files are found by name, wherever the export's keys said they were.
    pub fn local(dir: &str) -> anyhow::Result<Self> {
        let dir = std::path::PathBuf::from(dir);
        if !dir.join("manifest-summary.json").is_file() {
            bail!(
                "{}: no manifest-summary.json (not an export's folder)",
                dir.display()
            );
        }
        Ok(ExportSource {
            place: Place::Dir(dir),
            folder: String::new(),
        })
    }

    async fn object(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        match &self.place {
            Place::S3 { client, bucket } => {
                let out = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", crate::aws::describe_sdk_error(&e)))
                    .with_context(|| format!("cannot read s3://{bucket}/{key}"))?;
                Ok(out
                    .body
                    .collect()
                    .await
                    .with_context(|| format!("cannot read s3://{bucket}/{key}"))?
                    .into_bytes()
                    .to_vec())
            }
            Place::Dir(dir) => {
                // A key of the export (`PREFIX/AWSDynamoDB/ID/data/X.json.gz`) is found
                // under the folder by what follows the export's id.
                let name = key.rsplit_once("/data/").map_or_else(
                    || key.rsplit('/').next().unwrap_or(key).to_owned(),
                    |(_, file)| format!("data/{file}"),
                );
                let path = dir.join(name);
                tokio::fs::read(&path)
                    .await
                    .with_context(|| format!("cannot read {}", path.display()))
            }
        }
    }

    fn describe(&self, key: &str) -> String {
        match &self.place {
            Place::S3 { bucket, .. } => format!("s3://{bucket}/{key}"),
            Place::Dir(dir) => dir.join(key).display().to_string(),
        }
    }

    /// The export's summary; an export in another format than `DYNAMODB_JSON` is refused.
    pub async fn summary(&self) -> anyhow::Result<ExportSummary> {
        let key = self.key("manifest-summary.json");
        let summary: ExportSummary = serde_json::from_slice(&self.object(&key).await?)
            .with_context(|| format!("{}: not an export summary", self.describe(&key)))?;
        match summary.export_format.as_deref() {
            None | Some("DYNAMODB_JSON") => Ok(summary),
            Some(other) => bail!("the export is in {other}; weir reads DYNAMODB_JSON exports"),
        }
    }

    /// Its data files, in the order `manifest-files.json` lists them.
    pub async fn files(&self, summary: &ExportSummary) -> anyhow::Result<Vec<DataFile>> {
        let key = match (&self.place, &summary.manifest_files_s3_key) {
            (Place::S3 { .. }, Some(k)) => k.clone(),
            _ => self.key("manifest-files.json"),
        };
        let text = String::from_utf8(self.object(&key).await?)
            .with_context(|| format!("{} is not UTF-8", self.describe(&key)))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .with_context(|| format!("{}: not a data-file line: {l}", self.describe(&key)))
            })
            .collect()
    }

    /// A file of the export's folder by name.
    fn key(&self, name: &str) -> String {
        if self.folder.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.folder)
        }
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
