//! Where manifests and plugins are read from: a local file or an S3 object, with a
//! version tag so a reload can ask "has it changed?" without downloading it again.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::Context as _;

/// A file path or an `s3://bucket/key` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A local file.
    File(PathBuf),
    /// An S3 object.
    S3 {
        /// The bucket's name.
        bucket: String,
        /// The object's key.
        key: String,
    },
}

impl Location {
    /// Parses `s3://bucket/key`, or takes anything else as a file path.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest
                    .split_once('/')
                    .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                    .with_context(|| format!("{text:?} is not s3://BUCKET/KEY"))?;
                Ok(Location::S3 {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                })
            }
            None => Ok(Location::File(PathBuf::from(text))),
        }
    }

    /// `reference` (a plugin path written in a manifest) resolved against this location:
    /// absolute paths and S3 URLs stand as they are; relative ones are taken from the
    /// manifest's own directory or key prefix.
    pub fn join(&self, reference: &str) -> anyhow::Result<Location> {
        if reference.starts_with("s3://") || Path::new(reference).is_absolute() {
            return Location::parse(reference);
        }
        Ok(match self {
            Location::File(p) => Location::File(
                p.parent()
                    .map(|d| d.join(reference))
                    .unwrap_or_else(|| PathBuf::from(reference)),
            ),
            Location::S3 { bucket, key } => {
                let mut parts: Vec<&str> = key.split('/').collect();
                parts.pop();
                for segment in reference.split('/') {
                    match segment {
                        "" | "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                Location::S3 {
                    bucket: bucket.clone(),
                    key: parts.join("/"),
                }
            }
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// What a read found.
#[derive(Debug)]
pub enum Fetched {
    /// The content, and the tag to ask with next time.
    Content {
        /// The bytes read.
        bytes: Vec<u8>,
        /// The object's ETag, or the file's size and modification time.
        version: String,
    },
    /// Same version as the one asked with.
    NotModified,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_paths_resolve_against_their_manifest() {
        let s3 = Location::parse("s3://bucket/tenants/weir.toml").expect("s3");
        assert_eq!(
            s3.join("plugins/mapping.wasm").expect("join"),
            Location::S3 {
                bucket: "bucket".into(),
                key: "tenants/plugins/mapping.wasm".into()
            }
        );
        assert_eq!(
            s3.join("../shared/p.wasm").expect("join").to_string(),
            "s3://bucket/shared/p.wasm"
        );
        assert_eq!(
            s3.join("s3://other/p.wasm").expect("join").to_string(),
            "s3://other/p.wasm"
        );
        let file = Location::parse("/etc/weir/weir.toml").expect("file");
        assert_eq!(
            file.join("p.wasm").expect("join").to_string(),
            "/etc/weir/p.wasm"
        );
        assert_eq!(
            file.join("/abs/p.wasm").expect("join").to_string(),
            "/abs/p.wasm"
        );
        assert!(Location::parse("s3://bucket").is_err());
        assert!(Location::parse("s3:///key").is_err());
    }
}
