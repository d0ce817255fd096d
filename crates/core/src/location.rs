//! Where manifests and plugins are read from, as the core sees it: a [`Location`] (a file or
//! an S3 object) and the [`Fetch`] trait that reads one. The reader with an S3 client lives
//! in the AWS crate; the core never links an AWS SDK.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

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

/// A boxed future, so [`Fetch`] can be used as `dyn Fetch`.
pub type FetchFuture<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

/// Reads locations: a file, or an S3 object through the AWS crate's `Store`.
pub trait Fetch: Send + Sync {
    /// Reads `location`, or says it has not changed since `known_version` (the tag an
    /// earlier read gave).
    fn fetch<'a>(
        &'a self,
        location: &'a Location,
        known_version: Option<&'a str>,
    ) -> FetchFuture<'a, Fetched>;

    /// The version `fetch` would report for `location`, without reading its content.
    fn version<'a>(&'a self, location: &'a Location) -> FetchFuture<'a, String>;

    /// Reads `location` in full: its bytes and version.
    fn read<'a>(&'a self, location: &'a Location) -> FetchFuture<'a, (Vec<u8>, String)> {
        Box::pin(async move {
            match self.fetch(location, None).await? {
                Fetched::Content { bytes, version } => Ok((bytes, version)),
                Fetched::NotModified => {
                    anyhow::bail!("{location}: unexpected 304 without a version")
                }
            }
        })
    }
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
