//! Where manifests and plugins are read from: a local file or an S3 object, with a
//! version tag so a reload can ask "has it changed?" without downloading it again.
//!
//! Every read is bounded: a file is opened once, without following a link or blocking, and
//! must be a regular file; an object's declared length is checked before its body is read,
//! and the body is read only up to the cap. The cap is [`MAX_FILE_BYTES`] unless the caller
//! gives a smaller one ([`ObjectStore::read_at_most`], for manifests
//! [`weir_core::location::MAX_MANIFEST_BYTES`]).

use std::time::UNIX_EPOCH;

use anyhow::Context as _;
use weir_core::location::{
    Fetch, FetchError, FetchErrorKind, FetchFuture, Fetched, Location, MAX_FILE_BYTES, ReadError,
};

/// Reads locations. The S3 client is made on first use from the standard AWS SDK
/// configuration, unless one is given.
#[derive(Clone, Default)]
pub struct ObjectStore {
    s3: std::sync::Arc<tokio::sync::OnceCell<aws_sdk_s3::Client>>,
}

impl ObjectStore {
    /// A store that reads S3 with `client`.
    pub fn with_s3(client: aws_sdk_s3::Client) -> Self {
        ObjectStore {
            s3: std::sync::Arc::new(tokio::sync::OnceCell::new_with(Some(client))),
        }
    }

    async fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3
            .get_or_init(|| async { crate::client::s3(&crate::client::sdk_config().await) })
            .await
    }

    /// Reads `location`, or says it has not changed since `known_version`. S3 uses a
    /// conditional GET on the ETag; files use their size and modification time. At most
    /// [`MAX_FILE_BYTES`] are read.
    pub async fn fetch(
        &self,
        location: &Location,
        known_version: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        self.fetch_at_most(location, known_version, MAX_FILE_BYTES)
            .await
    }

    /// [`Self::fetch`], reading at most `cap` bytes: a larger file or object is refused
    /// with an error naming it and the cap.
    pub async fn fetch_at_most(
        &self,
        location: &Location,
        known_version: Option<&str>,
        cap: u64,
    ) -> Result<Fetched, FetchError> {
        match location {
            Location::File(path) => {
                // One handle: the version, the checks and the bytes are all this open file's.
                let (mut file, meta) = weir_core::location::open_regular_file(path, cap)?;
                let version = version_of(&meta);
                if known_version == Some(version.as_str()) {
                    return Ok(Fetched::NotModified);
                }
                let bytes = weir_core::location::read_at_most(
                    &mut file,
                    meta.len(),
                    &shown(location),
                    cap,
                )?;
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
                        let bytes = body_at_most(location, out, cap).await?;
                        Ok(Fetched::Content { bytes, version })
                    }
                    Err(e) => {
                        let not_modified =
                            e.raw_response().is_some_and(|r| r.status().as_u16() == 304);
                        if not_modified {
                            Ok(Fetched::NotModified)
                        } else {
                            Err(sdk_error(location, "cannot read", e))
                        }
                    }
                }
            }
        }
    }

    /// Reads `location` in full, refusing more than `cap` bytes: manifests are read with
    /// [`weir_core::location::MAX_MANIFEST_BYTES`].
    pub async fn read_at_most(
        &self,
        location: &Location,
        cap: u64,
    ) -> Result<(Vec<u8>, String), FetchError> {
        match self.fetch_at_most(location, None, cap).await? {
            Fetched::Content { bytes, version } => Ok((bytes, version)),
            Fetched::NotModified => Err(no_version(location)),
        }
    }

    /// The version `fetch` would report for `location`, without reading its content (S3:
    /// a HEAD request for the ETag).
    pub async fn version(&self, location: &Location) -> Result<String, FetchError> {
        match location {
            Location::File(path) => {
                let (_, meta) = weir_core::location::open_regular_file(path, MAX_FILE_BYTES)?;
                Ok(version_of(&meta))
            }
            Location::S3 { bucket, key } => {
                let out = self
                    .s3()
                    .await
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| sdk_error(location, "cannot read", e))?;
                Ok(out.e_tag().unwrap_or_default().to_owned())
            }
        }
    }

    /// Reads `location` in full, or `None` where nothing is there yet (no such file or
    /// key): a checkpoint not yet written.
    pub async fn read_if_exists(&self, location: &Location) -> Result<Option<Vec<u8>>, FetchError> {
        match location {
            Location::File(path) => {
                match weir_core::location::read_regular_file(path, MAX_FILE_BYTES) {
                    Ok((bytes, _)) => Ok(Some(bytes)),
                    Err(ReadError::Io { error: source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
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
                    Ok(out) => Ok(Some(body_at_most(location, out, MAX_FILE_BYTES).await?)),
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                        Ok(None)
                    }
                    Err(e) => Err(sdk_error(location, "cannot read", e)),
                }
            }
        }
    }

    /// Replaces `location` with `bytes` whole: a file is written beside it and renamed over
    /// it, an S3 object is put in one request, so a reader (or a kill) sees the old content
    /// or the new, never part of either.
    pub async fn write(&self, location: &Location, bytes: Vec<u8>) -> anyhow::Result<()> {
        match location {
            // A new file beside it, created exclusively and never through a link.
            Location::File(path) => weir_core::location::replace_file(path, &bytes, 0o644)
                .with_context(|| format!("{}: cannot write", shown(location))),
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
                            "{}: cannot write: {}",
                            shown(location),
                            crate::client::describe_sdk_error(&e)
                        )
                    })?;
                Ok(())
            }
        }
    }

    /// Reads `location` in full.
    pub async fn read(&self, location: &Location) -> Result<(Vec<u8>, String), FetchError> {
        match self.fetch(location, None).await? {
            Fetched::Content { bytes, version } => Ok((bytes, version)),
            Fetched::NotModified => Err(no_version(location)),
        }
    }
}

/// A 304 to a read that named no version: S3 (or what stands in for it) misbehaved.
fn no_version(location: &Location) -> FetchError {
    FetchError::message(
        FetchErrorKind::Unavailable,
        format!("{}: unexpected 304 without a version", shown(location)),
    )
}

/// An S3 request that failed, `doing` what (\"cannot read\"), typed by its HTTP status: 404
/// is not found, 401 and 403 refused, anything else (throttling, a 5xx, no response at all)
/// unavailable for now.
fn sdk_error<E>(
    location: &Location,
    doing: &str,
    error: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> FetchError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = match error.raw_response().map(|r| r.status().as_u16()) {
        Some(404) => FetchErrorKind::NotFound,
        Some(401 | 403) => FetchErrorKind::Refused,
        _ => FetchErrorKind::Unavailable,
    };
    let message = format!(
        "{}: {doing}: {}",
        shown(location),
        crate::client::describe_sdk_error(&error)
    );
    FetchError::new(kind, message, error)
}

/// A location as messages name it: escaped, since manifests name plugins and keys.
fn shown(location: &Location) -> String {
    weir_core::text::one_line(&location.to_string()).into_owned()
}

/// A file's version, from its open handle's metadata: its size and modification time.
fn version_of(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}-{mtime}", meta.len())
}

/// An object's body, at most `cap` bytes: its declared length is checked before any of it
/// is read, and the stream is cut off past the cap whatever the length said.
async fn body_at_most(
    location: &Location,
    out: aws_sdk_s3::operation::get_object::GetObjectOutput,
    cap: u64,
) -> Result<Vec<u8>, FetchError> {
    let too_large = |size: u64| ReadError::TooLarge {
        path: shown(location),
        size,
        cap,
    };
    let declared = out.content_length().and_then(|n| u64::try_from(n).ok());
    if let Some(n) = declared.filter(|&n| n > cap) {
        return Err(too_large(n).into());
    }
    let mut body = out.body;
    let mut bytes = Vec::with_capacity(usize::try_from(declared.unwrap_or(0)).unwrap_or(0));
    while let Some(chunk) = body.try_next().await.map_err(|e| {
        FetchError::new(
            FetchErrorKind::Unavailable,
            format!("{}: download broke off: {e}", shown(location)),
            e,
        )
    })? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > cap {
            return Err(too_large(bytes.len() as u64).into());
        }
    }
    Ok(bytes)
}

impl Fetch for ObjectStore {
    fn fetch<'a>(
        &'a self,
        location: &'a Location,
        known_version: Option<&'a str>,
    ) -> FetchFuture<'a, Fetched> {
        Box::pin(ObjectStore::fetch(self, location, known_version))
    }

    fn version<'a>(&'a self, location: &'a Location) -> FetchFuture<'a, String> {
        Box::pin(ObjectStore::version(self, location))
    }

    fn read<'a>(&'a self, location: &'a Location) -> FetchFuture<'a, (Vec<u8>, String)> {
        Box::pin(ObjectStore::read(self, location))
    }
}
