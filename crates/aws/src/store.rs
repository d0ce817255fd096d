//! Where manifests and plugins are read from: a local file or an S3 object, with a
//! version tag so a reload can ask "has it changed?" without downloading it again.

use std::path::Path;
use std::time::UNIX_EPOCH;

use anyhow::Context as _;
pub use weir_core::location::{Fetch, FetchFuture, Fetched, Location};

/// Reads locations. The S3 client is made on first use from the standard AWS SDK
/// configuration, unless one is given.
#[derive(Clone, Default)]
pub struct Store {
    s3: std::sync::Arc<tokio::sync::OnceCell<aws_sdk_s3::Client>>,
}

impl Store {
    /// A store that reads S3 with `client`.
    pub fn with_s3(client: aws_sdk_s3::Client) -> Self {
        Store {
            s3: std::sync::Arc::new(tokio::sync::OnceCell::new_with(Some(client))),
        }
    }

    async fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3
            .get_or_init(|| async { crate::aws::s3(&crate::aws::sdk_config().await) })
            .await
    }

    /// Reads `location`, or says it has not changed since `known_version`. S3 uses a
    /// conditional GET on the ETag; files use their size and modification time.
    pub async fn fetch(
        &self,
        location: &Location,
        known_version: Option<&str>,
    ) -> anyhow::Result<Fetched> {
        match location {
            Location::File(path) => {
                let version = file_version(path)?;
                if known_version == Some(version.as_str()) {
                    return Ok(Fetched::NotModified);
                }
                let bytes = std::fs::read(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                Ok(Fetched::Content { bytes, version })
            }
            Location::S3 { bucket, key } => {
                let s3 = self.s3().await;
                let mut get = s3.get_object().bucket(bucket).key(key);
                if let Some(v) = known_version {
                    get = get.if_none_match(v);
                }
                match get.send().await {
                    Ok(out) => {
                        let version = out.e_tag().unwrap_or_default().to_owned();
                        let bytes = out
                            .body
                            .collect()
                            .await
                            .with_context(|| format!("{location}: download broke off"))?
                            .into_bytes()
                            .to_vec();
                        Ok(Fetched::Content { bytes, version })
                    }
                    Err(e) => {
                        let not_modified =
                            e.raw_response().is_some_and(|r| r.status().as_u16() == 304);
                        if not_modified {
                            Ok(Fetched::NotModified)
                        } else {
                            Err(anyhow::anyhow!(
                                "{location}: cannot read: {}",
                                crate::aws::describe_sdk_error(&e)
                            ))
                        }
                    }
                }
            }
        }
    }

    /// The version `fetch` would report for `location`, without reading its content (S3:
    /// a HEAD request for the ETag).
    pub async fn version(&self, location: &Location) -> anyhow::Result<String> {
        match location {
            Location::File(path) => file_version(path),
            Location::S3 { bucket, key } => {
                let out = self
                    .s3()
                    .await
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{location}: cannot read: {}",
                            crate::aws::describe_sdk_error(&e)
                        )
                    })?;
                Ok(out.e_tag().unwrap_or_default().to_owned())
            }
        }
    }

    /// Reads `location` in full, or `None` where nothing is there yet (no such file or
    /// key): a checkpoint not yet written.
    pub async fn read_if_exists(&self, location: &Location) -> anyhow::Result<Option<Vec<u8>>> {
        match location {
            Location::File(path) => match std::fs::read(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
            },
            Location::S3 { bucket, key } => {
                match self
                    .s3()
                    .await
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                {
                    Ok(out) => Ok(Some(
                        out.body
                            .collect()
                            .await
                            .with_context(|| format!("{location}: download broke off"))?
                            .into_bytes()
                            .to_vec(),
                    )),
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                        Ok(None)
                    }
                    Err(e) => Err(anyhow::anyhow!(
                        "{location}: cannot read: {}",
                        crate::aws::describe_sdk_error(&e)
                    )),
                }
            }
        }
    }

    /// Replaces `location` with `bytes` whole: a file is written beside it and renamed over
    /// it, an S3 object is put in one request, so a reader (or a kill) sees the old content
    /// or the new, never part of either.
    pub async fn write(&self, location: &Location, bytes: Vec<u8>) -> anyhow::Result<()> {
        match location {
            Location::File(path) => {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, bytes)
                    .with_context(|| format!("{}: cannot write", tmp.display()))?;
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("{}: cannot write", path.display()))
            }
            Location::S3 { bucket, key } => {
                self.s3()
                    .await
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(bytes.into())
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{location}: cannot write: {}",
                            crate::aws::describe_sdk_error(&e)
                        )
                    })?;
                Ok(())
            }
        }
    }

    /// Reads `location` in full.
    pub async fn read(&self, location: &Location) -> anyhow::Result<(Vec<u8>, String)> {
        match self.fetch(location, None).await? {
            Fetched::Content { bytes, version } => Ok((bytes, version)),
            Fetched::NotModified => anyhow::bail!("{location}: unexpected 304 without a version"),
        }
    }
}

/// A file's version: its size and modification time.
fn file_version(path: &Path) -> anyhow::Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{}-{mtime}", meta.len()))
}

impl Fetch for Store {
    fn fetch<'a>(
        &'a self,
        location: &'a Location,
        known_version: Option<&'a str>,
    ) -> FetchFuture<'a, Fetched> {
        Box::pin(Store::fetch(self, location, known_version))
    }

    fn version<'a>(&'a self, location: &'a Location) -> FetchFuture<'a, String> {
        Box::pin(Store::version(self, location))
    }

    fn read<'a>(&'a self, location: &'a Location) -> FetchFuture<'a, (Vec<u8>, String)> {
        Box::pin(Store::read(self, location))
    }
}
