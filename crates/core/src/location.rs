//! Where manifests and plugins are read from, as the core sees it: a [`Location`] (a file or
//! an S3 object) and the [`Fetch`] trait that reads one. The reader with an S3 client lives
//! in the AWS crate; the core never links an AWS SDK.
//!
//! Local files are read through [`read_regular_file`]: opened once, without following a
//! link and without blocking, checked on that handle (a regular file, within a size cap) and
//! read from it, so a FIFO, a device or a swapped name never stands in for a file.

use std::future::Future;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// Text that cannot name a [`Location`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// It starts with `s3://` but does not go on with a bucket, a `/` and a key.
    #[error("{text:?} is not s3://BUCKET/KEY")]
    NotS3Url {
        /// The text, as given.
        text: String,
    },
}

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
    pub fn parse(text: &str) -> Result<Self, LocationError> {
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest
                    .split_once('/')
                    .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                    .ok_or_else(|| LocationError::NotS3Url {
                        text: text.to_owned(),
                    })?;
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
    pub fn join(&self, reference: &str) -> Result<Location, LocationError> {
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

/// The most bytes weir reads for a plugin, a `.cwasm` or any other file or S3 object: the
/// largest plugin built here (the Python one) is 18 MB and its `.cwasm` 35 MB; 256 MiB
/// leaves room for several times that while bounding what a wrong path (a device, a huge
/// file) costs a function with a few hundred MB of memory.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The most bytes weir reads for a manifest: 16 MiB holds about 100,000 tenants of a few
/// lines each, ten times the largest deployment benchmarked, and is far below the function's
/// memory.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Why a local file was not read: callers match on it to say which file and why. Paths are
/// kept escaped ([`crate::text::one_line`]): a manifest names them.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The operating system refused (missing, no permission, ...).
    #[error("{path}: cannot read: {error}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error: in the message, so not also a source (a chain
        /// printed whole would say it twice).
        error: std::io::Error,
    },
    /// The name is a symbolic link: weir reads files without following links, so the file
    /// checked is the file named.
    #[error(
        "{path}: not read: it is a symbolic link (weir does not follow links; name the file itself)"
    )]
    Symlink {
        /// The link.
        path: String,
    },
    /// Not a regular file (a FIFO would block, a device never ends).
    #[error("{path}: not read: it is {kind}, not a regular file")]
    NotRegular {
        /// The file.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// Larger than the cap for its kind of file.
    #[error("{path}: not read: it is {size} bytes, more than the cap of {cap} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size (or, for a stream, the bytes seen before stopping).
        size: u64,
        /// The cap.
        cap: u64,
    },
}

/// Open flags the standard library has no names for. They are the kernel's values for
/// each target; `weir-runtime`'s tests check them against libc's.
#[doc(hidden)]
pub mod open_flags {
    /// Do not follow a symbolic link at the last component (`O_NOFOLLOW`).
    #[cfg(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "riscv64",
            target_arch = "s390x",
            target_arch = "loongarch64"
        )
    ))]
    pub const NOFOLLOW: i32 = 0o400000;
    /// Do not follow a symbolic link at the last component (`O_NOFOLLOW`).
    #[cfg(all(
        target_os = "linux",
        any(
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "powerpc",
            target_arch = "powerpc64"
        )
    ))]
    pub const NOFOLLOW: i32 = 0o100000;
    /// Do not block opening a FIFO (`O_NONBLOCK`).
    #[cfg(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "riscv64",
            target_arch = "s390x",
            target_arch = "loongarch64",
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "powerpc",
            target_arch = "powerpc64"
        )
    ))]
    pub const NONBLOCK: i32 = 0o4000;
    /// Do not follow a symbolic link at the last component (`O_NOFOLLOW`).
    #[cfg(target_os = "macos")]
    pub const NOFOLLOW: i32 = 0x100;
    /// Do not block opening a FIFO (`O_NONBLOCK`).
    #[cfg(target_os = "macos")]
    pub const NONBLOCK: i32 = 0x4;
}

/// What a file type is, in words, for [`ReadError::NotRegular`].
pub fn file_kind(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Checks an open file's metadata: a regular file of at most `cap` bytes.
pub fn check_regular(meta: &std::fs::Metadata, path: &str, cap: u64) -> Result<(), ReadError> {
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_owned(),
            kind: file_kind(meta.file_type()),
        });
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            cap,
        });
    }
    Ok(())
}

/// Reads an open, checked file whole, never more than `cap` bytes (it may have grown since
/// it was checked).
pub fn read_at_most(
    file: &mut std::fs::File,
    size_hint: u64,
    path: &str,
    cap: u64,
) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::with_capacity(usize::try_from(size_hint.min(cap)).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io {
            path: path.to_owned(),
            error: source,
        })?;
    let read = bytes.len() as u64;
    if read > cap {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            size: read,
            cap,
        });
    }
    Ok(bytes)
}

/// Opens `path` for reading once, without following a link at its last component and
/// without blocking (a FIFO opens at once), and checks on that handle that it is a regular
/// file of at most `cap` bytes. Returns the handle and its metadata.
pub fn open_regular_file(
    path: &Path,
    cap: u64,
) -> Result<(std::fs::File, std::fs::Metadata), ReadError> {
    let shown = crate::text::one_line(&path.display().to_string()).into_owned();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(open_flags::NOFOLLOW | open_flags::NONBLOCK)
        .open(path)
        .map_err(|source| {
            // Only to say why: what was opened is decided by the flags above.
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => ReadError::Symlink {
                    path: shown.clone(),
                },
                _ => ReadError::Io {
                    path: shown.clone(),
                    error: source,
                },
            }
        })?;
    let meta = file.metadata().map_err(|source| ReadError::Io {
        path: shown.clone(),
        error: source,
    })?;
    check_regular(&meta, &shown, cap)?;
    Ok((file, meta))
}

/// Reads a local file whole through one handle ([`open_regular_file`], then at most `cap`
/// bytes), with the metadata of that same handle.
pub fn read_regular_file(path: &Path, cap: u64) -> Result<(Vec<u8>, std::fs::Metadata), ReadError> {
    let (mut file, meta) = open_regular_file(path, cap)?;
    let shown = crate::text::one_line(&path.display().to_string()).into_owned();
    let bytes = read_at_most(&mut file, meta.len(), &shown, cap)?;
    Ok((bytes, meta))
}

/// Numbers this process's temporary files ([`replace_file`]), so no two share a name.
static TEMPORARIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Replaces the file at `path` with `bytes` whole: a new temporary file beside it, created
/// exclusively (never an existing name, never through a link) with `mode`, written, then
/// renamed over `path`. A reader (or a kill) sees the old content or the new, and a link
/// planted at a temporary name redirects nothing.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{}: not a file name", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut attempts = 0;
    let (tmp, mut file) = loop {
        let n = TEMPORARIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp{}-{n}", std::process::id()));
        let tmp = dir.join(tmp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(open_flags::NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            // Taken (perhaps planted): another name, a bounded number of times.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: cannot create: {e}", tmp.display()),
                ));
            }
        }
    };
    let written = file
        .write_all(bytes)
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
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

/// What kind of failure a [`FetchError`] is: a caller decides by it whether to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchErrorKind {
    /// Nothing is there (no such file, no such key or bucket).
    NotFound,
    /// Something is there but will not be read as it is: no permission, a link, not a
    /// regular file, over the size cap. Asking again returns the same until someone acts.
    Refused,
    /// The read did not complete (a network or service error, a download that broke off):
    /// asking again may succeed.
    Unavailable,
}

/// Why a [`Fetch`] could not read a location. Its message names the location (escaped) and
/// says why, on one line; [`FetchError::kind`] says whether trying again may help, and
/// [`std::error::Error::source`] is the underlying error (a [`ReadError`], an SDK error).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    kind: FetchErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl FetchError {
    /// A failure of `kind`, said by `message` (which names the location), caused by `source`.
    pub fn new(
        kind: FetchErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        FetchError {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A failure of `kind` with no underlying error to carry (`message` says it all).
    pub fn message(kind: FetchErrorKind, message: impl Into<String>) -> Self {
        FetchError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Whether the location is missing, refused, or only unavailable for now.
    pub fn kind(&self) -> FetchErrorKind {
        self.kind
    }
}

impl From<ReadError> for FetchError {
    /// A local file not read: missing, refused (a link, not a regular file, too large, no
    /// permission), or an I/O failure that may pass.
    fn from(error: ReadError) -> Self {
        let kind = match &error {
            ReadError::Io { error: source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => FetchErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => FetchErrorKind::Refused,
                _ => FetchErrorKind::Unavailable,
            },
            ReadError::Symlink { .. }
            | ReadError::NotRegular { .. }
            | ReadError::TooLarge { .. } => FetchErrorKind::Refused,
        };
        FetchError::new(kind, error.to_string(), error)
    }
}

/// A boxed future, so [`Fetch`] can be used as `dyn Fetch`.
pub type FetchFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, FetchError>> + Send + 'a>>;

/// Reads locations: a file, or an S3 object through the AWS crate's `ObjectStore`.
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
                Fetched::NotModified => Err(FetchError::message(
                    FetchErrorKind::Unavailable,
                    format!(
                        "{}: unexpected 304 without a version",
                        crate::text::one_line(&location.to_string())
                    ),
                )),
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

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
    }

    #[test]
    fn only_regular_files_within_the_cap_are_read_and_nothing_blocks() {
        let dir = std::env::temp_dir().join(format!("weir-location-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let good = dir.join("good.toml");
        std::fs::write(&good, b"event_bus = \"b\"\n").expect("write");
        let (bytes, meta) = read_regular_file(&good, 100).expect("a regular file");
        assert_eq!(bytes, b"event_bus = \"b\"\n");
        assert_eq!(meta.len(), 16);

        // A FIFO nobody writes: opened without blocking, refused by what it is.
        let fifo = dir.join("fifo.cwasm");
        mkfifo(&fifo);
        let err = read_regular_file(&fifo, MAX_FILE_BYTES).expect_err("a FIFO");
        assert!(
            matches!(err, ReadError::NotRegular { kind: "a FIFO", .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not read: it is a FIFO, not a regular file",
                fifo.display()
            )
        );
        // A link to a device that never ends: not followed.
        let zero = dir.join("zero.cwasm");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        let err = read_regular_file(&zero, MAX_FILE_BYTES).expect_err("a link");
        assert!(matches!(err, ReadError::Symlink { .. }), "{err}");
        // A link to a regular file: not followed either.
        let link = dir.join("link.toml");
        std::os::unix::fs::symlink(&good, &link).expect("symlink");
        assert!(matches!(
            read_regular_file(&link, 100),
            Err(ReadError::Symlink { .. })
        ));
        // The device itself, and a directory.
        assert!(matches!(
            read_regular_file(Path::new("/dev/zero"), 100),
            Err(ReadError::NotRegular {
                kind: "a character device",
                ..
            })
        ));
        assert!(matches!(
            read_regular_file(&dir, 100),
            Err(ReadError::NotRegular {
                kind: "a directory",
                ..
            })
        ));
        // Over the cap: refused by its size, before a byte is read (a sparse file).
        let huge = dir.join("huge.wasm");
        std::fs::File::create(&huge)
            .and_then(|f| f.set_len(MAX_FILE_BYTES + 1))
            .expect("sparse file");
        let err = read_regular_file(&huge, MAX_FILE_BYTES).expect_err("too large");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not read: it is 268435457 bytes, more than the cap of 268435456 bytes",
                huge.display()
            )
        );
        // A file that grows after the check is still read only up to the cap.
        let mut open = std::fs::File::open(&good).expect("open");
        assert!(matches!(
            read_at_most(&mut open, 0, "good.toml", 4),
            Err(ReadError::TooLarge {
                size: 5,
                cap: 4,
                ..
            })
        ));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn replacing_a_file_never_writes_through_a_planted_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("weir-replace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let victim = dir.join("victim.txt");
        std::fs::write(&victim, b"the user's file").expect("write");
        let out = dir.join("state.json");
        // Links at every temporary name the next writes could try first.
        let next = TEMPORARIES.load(std::sync::atomic::Ordering::Relaxed);
        for n in next..next + 20 {
            std::os::unix::fs::symlink(
                &victim,
                dir.join(format!(".state.json.tmp{}-{n}", std::process::id())),
            )
            .expect("plant");
        }
        replace_file(&out, b"new", 0o600).expect("written beside the links");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"the user's file");
        let meta = std::fs::symlink_metadata(&out).expect("out");
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&out).expect("out"), b"new");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
