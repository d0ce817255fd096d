//! Native code: which precompiled plugins weir lets run in the host.
//!
//! A `.wasm` plugin is sandboxed; a `.cwasm` is machine code the host jumps into. Whoever can
//! make weir load a `.cwasm` runs code with the function's role and every tenant's records,
//! so weir trusts exactly two sources of native code, and nothing a file says about itself:
//! - a `.cwasm` whose own bytes the manifest pins (`compiled_sha256`): the manifest is written
//!   by operators and is the trust root;
//! - its own compiled-code cache ([`CompiledCache`]), in a directory that only the current
//!   user can write.
//!
//! Check and use are one open ([`crate::open`]): a pinned `.cwasm` is opened once, through
//! its directory's handle, never through a link and without blocking, and must be a regular
//! file within [`MAX_FILE_BYTES`]. One that others could rewrite is read into memory, hashed
//! and deserialized from those same bytes (a mapped file rewritten in place would change the
//! code under the host); one only its owner (this user or root) can write is hashed and
//! deserialized through a mapping of that same open file. Cache entries are opened the same
//! way, through the cache directory's one handle.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sha2::Digest as _;
use weir_core::location::{MAX_FILE_BYTES, ReadError};

use crate::open::Dir;

/// The last line of a `.cwasm` written by `weir compile`, after wasmtime's artifact: it
/// names the plugin it was compiled from (`weir-cwasm-2 <sha256>`), so a stale one is
/// found and reported. It is a label, never proof: the manifest's pin is.
pub const CWASM_MAGIC: &str = "weir-cwasm-2";

/// The longest trailer: "\n", the magic, a space, 64 hex digits, "\n".
const CWASM_TRAILER_MAX: usize = 1 + 12 + 1 + 64 + 1;

/// The trailer `weir compile` appends to a plugin's compiled artifact.
pub fn cwasm_trailer(made_from_sha256: &str) -> String {
    format!("\n{CWASM_MAGIC} {made_from_sha256}\n")
}

/// A precompiled plugin found for a `.wasm`: bytes read from S3, or a local file.
#[derive(Debug, Clone)]
pub enum Precompiled {
    /// Read from `from` (an `s3://` URL).
    Bytes {
        /// The URL the bytes were read from.
        from: String,
        /// The whole `.cwasm`, trailer included.
        bytes: Vec<u8>,
    },
    /// A local file, read when it is checked.
    File(PathBuf),
}

impl Precompiled {
    /// Where it came from, as warnings name it (escaped: a manifest names it).
    pub fn location(&self) -> String {
        let shown = match self {
            Precompiled::Bytes { from, .. } => from.clone(),
            Precompiled::File(path) => path.display().to_string(),
        };
        weir_core::text::one_line(&shown).into_owned()
    }
}

/// Why a precompiled plugin is not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No pin: a `.cwasm` beside a plugin proves nothing about who made it.
    #[error(
        "{file} not used: the manifest does not pin it (compiled_sha256); a .cwasm is native code and runs only when pinned (weir compile prints the pin)"
    )]
    Unpinned {
        /// The `.cwasm`'s location.
        file: String,
    },
    /// Pinned, but these are other bytes.
    #[error("{file} not used: its sha256 is {actual}, but the manifest pins {pinned}")]
    PinMismatch {
        /// The `.cwasm`'s location.
        file: String,
        /// The sha256 the manifest pins.
        pinned: String,
        /// The sha256 of the bytes found.
        actual: String,
    },
    /// Pinned, but compiled from another plugin than the one it stands beside.
    #[error(
        "{file} not used: it was compiled from a plugin with sha256 {made_from}, not this one ({sha256})"
    )]
    OtherPlugin {
        /// The `.cwasm`'s location.
        file: String,
        /// The sha256 of the plugin its trailer names.
        made_from: String,
        /// The sha256 of the plugin it stands beside.
        sha256: String,
    },
    /// Unreadable, not from `weir compile`, or made for another engine or CPU.
    #[error("{file} not used: {message}")]
    Unusable {
        /// The `.cwasm`'s location.
        file: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A pinned `.cwasm`, checked: its bytes hash to the pin, and its trailer says it was
/// compiled from the plugin it stands for. It reaches wasmtime as exactly the bytes hashed.
#[derive(Debug)]
pub enum VerifiedArtifact {
    /// Bytes in memory (from S3, or read from a file that others could rewrite): wasmtime
    /// copies these, so a file changed after the check cannot slip in.
    Bytes {
        /// The whole `.cwasm`, as hashed.
        bytes: Vec<u8>,
        /// Where wasmtime's artifact ends and the trailer begins.
        end: usize,
    },
    /// A file only its owner (this user, or root) can write, checked through a read-only
    /// mapping of this open file; wasmtime maps the same open file. Nobody the host does
    /// not already trust can change it in place, and a rename over its name does not
    /// change this open file.
    OwnFile(std::fs::File),
}

/// Checks `precompiled` against the manifest's pin and the plugin it must have been
/// compiled from (`made_from`, a sha256).
pub fn verify(
    precompiled: Precompiled,
    pin: Option<&str>,
    made_from: &str,
) -> Result<VerifiedArtifact, Refused> {
    let file = precompiled.location();
    let Some(pin) = pin else {
        return Err(Refused::Unpinned { file });
    };
    let unusable = |message: String| Refused::Unusable {
        file: file.clone(),
        message,
    };
    match precompiled {
        Precompiled::Bytes { bytes, .. } => {
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(unusable(not_read(&ReadError::TooLarge {
                    path: file.clone(),
                    size: bytes.len() as u64,
                    cap: MAX_FILE_BYTES,
                })));
            }
            let end = check(&bytes, pin, made_from, &file)?;
            Ok(VerifiedArtifact::Bytes { bytes, end })
        }
        Precompiled::File(path) => {
            // One open: the file is opened once, through its directory's handle, without
            // following a link or blocking; kind, size, owner and mode are checked on that
            // handle, and the bytes hashed are read (or mapped) from it.
            let (mut f, meta) = crate::open::open_regular(&path, MAX_FILE_BYTES)
                .map_err(|e| unusable(not_read(&e)))?;
            if only_its_owner_can_write(&meta) {
                let len = usize::try_from(meta.len()).map_err(|e| unusable(e.to_string()))?;
                let mapped =
                    ReadOnlyMap::new(&f, len).map_err(|e| unusable(format!("cannot map: {e}")))?;
                check(mapped.bytes(), pin, made_from, &file)?;
                Ok(VerifiedArtifact::OwnFile(f))
            } else {
                let bytes =
                    weir_core::location::read_at_most(&mut f, meta.len(), &file, MAX_FILE_BYTES)
                        .map_err(|e| unusable(not_read(&e)))?;
                let end = check(&bytes, pin, made_from, &file)?;
                Ok(VerifiedArtifact::Bytes { bytes, end })
            }
        }
    }
}

/// A read error's reason, without the file name a [`Refused`] already starts with.
fn not_read(e: &ReadError) -> String {
    match e {
        ReadError::Io { error: source, .. } => format!("cannot read: {source}"),
        ReadError::Symlink { .. } => {
            "it is a symbolic link, and weir does not follow links to native code".to_owned()
        }
        ReadError::NotRegular { kind, .. } => format!("it is {kind}, not a regular file"),
        ReadError::TooLarge { size, cap, .. } => {
            format!("it is {size} bytes, more than the cap of {cap} bytes")
        }
    }
}

/// The pin and trailer checks; where wasmtime's artifact ends.
fn check(bytes: &[u8], pin: &str, made_from: &str, file: &str) -> Result<usize, Refused> {
    let actual = hex::encode(sha2::Sha256::digest(bytes));
    if !actual.eq_ignore_ascii_case(pin) {
        return Err(Refused::PinMismatch {
            file: file.to_owned(),
            pinned: pin.to_owned(),
            actual,
        });
    }
    let tail = &bytes[bytes.len().saturating_sub(CWASM_TRAILER_MAX)..];
    let (trailer_sha, end) =
        parse_trailer(tail, bytes.len()).map_err(|message| Refused::Unusable {
            file: file.to_owned(),
            message,
        })?;
    if !trailer_sha.eq_ignore_ascii_case(made_from) {
        return Err(Refused::OtherPlugin {
            file: file.to_owned(),
            made_from: trailer_sha.to_owned(),
            sha256: made_from.to_owned(),
        });
    }
    Ok(end)
}

/// A regular file that only its owner can write, owned by this user or by root: nobody
/// the host does not already trust can rewrite it in place.
fn only_its_owner_can_write(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    meta.file_type().is_file()
        && (meta.uid() == effective_uid() || meta.uid() == 0)
        && meta.mode() & 0o022 == 0
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A whole file mapped read-only, unmapped when dropped: hashing it costs no copy.
struct ReadOnlyMap {
    ptr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

impl ReadOnlyMap {
    fn new(file: &std::fs::File, len: usize) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd as _;
        if len == 0 {
            return Err(std::io::Error::other("the file is empty"));
        }
        // SAFETY: a new read-only private mapping of an open file, read only within `len`
        // and unmapped on drop. The file can be truncated under it only by its owner (this
        // user or root), which `only_its_owner_can_write` checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        std::ptr::NonNull::new(ptr)
            .map(|ptr| ReadOnlyMap { ptr, len })
            .ok_or_else(|| std::io::Error::other("mmap returned null"))
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for ReadOnlyMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made, once.
        unsafe {
            libc::munmap(self.ptr.as_ptr(), self.len);
        }
    }
}

/// The sha256 a `.cwasm`'s trailer names and where wasmtime's artifact ends.
fn parse_trailer(tail: &[u8], len: usize) -> Result<(&str, usize), String> {
    let body = tail
        .strip_suffix(b"\n")
        .ok_or("not a weir .cwasm (no trailer)")?;
    let start = body
        .iter()
        .rposition(|&b| b == b'\n')
        .ok_or("not a weir .cwasm (no trailer)")?;
    let line = std::str::from_utf8(&body[start + 1..]).map_err(|_| "not a weir .cwasm")?;
    let (magic, made_from) = line.split_once(' ').ok_or("not a weir .cwasm")?;
    if magic != CWASM_MAGIC {
        return Err(format!("not a weir .cwasm (trailer {magic:?})"));
    }
    Ok((made_from, len - (tail.len() - start)))
}

/// weir's own compiled-code cache: components it compiled itself, serialized, in a
/// directory only the current user can write.
///
/// Entries carry no pin: their trust is the directory. It is created `0700` and opened
/// once, without following a link; every directory on its path is checked on its own handle
/// too, since whoever can rename an entry of an ancestor can swap the cache for another
/// directory. An ancestor writable by another user (group or others, without the sticky bit
/// that keeps them from renaming what they do not own) or owned by another user (not root)
/// makes the cache unusable. Entries are opened relative to that one directory handle,
/// never through a link, and checked on their own handle (owned by this user, a regular
/// file writable by nobody else) before they are read from it; they are written `0600`
/// under a new name and renamed into place. A cache that fails is not used (one warning),
/// and weir runs without a disk cache rather than run code someone else could have put
/// there.
#[derive(Debug)]
pub struct CompiledCache {
    dir: Dir,
    warned: AtomicBool,
    /// Makes each temporary file's name unique within this process.
    writes: AtomicUsize,
}

impl CompiledCache {
    /// Where the cache lives unless `WEIR_CACHE_DIR` says otherwise: in Lambda (whose
    /// `/tmp` is the function's own) `/tmp/weir-cache`; elsewhere the user's cache
    /// directory, `$XDG_CACHE_HOME/weir` or `~/.cache/weir`. Never a shared temporary
    /// directory, where whoever creates the folder first would own it.
    pub fn default_dir() -> Option<PathBuf> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = var("WEIR_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if var("AWS_LAMBDA_FUNCTION_NAME").is_some() {
            return Some(PathBuf::from("/tmp/weir-cache"));
        }
        var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("weir"))
    }

    /// The cache in `dir`, created `0700` if missing and opened once; `None`, with a
    /// warning naming the directory and why, if another user could write it or swap it.
    pub fn open(dir: PathBuf) -> Option<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        let refuse = |why: &str| {
            tracing::warn!(
                cache = %dir.display(),
                "compiled-code cache not used, running without a disk cache: {why}"
            );
        };
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
        {
            refuse(&format!("cannot create it: {e}"));
            return None;
        }
        match open_unswappable(&dir).and_then(|d| private(&d).map(|()| d)) {
            Ok(handle) => Some(CompiledCache {
                dir: handle,
                warned: AtomicBool::new(false),
                writes: AtomicUsize::new(0),
            }),
            Err(why) => {
                refuse(&why);
                None
            }
        }
    }

    /// The directory, as it was named when opened (for messages).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An entry, opened once and checked on its handle, if it and the directory are still
    /// private to this user; `None` if there is no entry or it cannot be trusted (warned
    /// once). Read (or map) the bytes from this handle: its name is not looked up again.
    pub fn open_entry(&self, name: &str) -> Option<std::fs::File> {
        let checked = private(&self.dir).and_then(|()| {
            match crate::open::open_regular_in(&self.dir, name, MAX_FILE_BYTES) {
                Ok((file, meta)) => {
                    owned_by_me_alone(&meta, &self.dir.path().join(name)).map(|()| Some(file))
                }
                Err(ReadError::Io { error: source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(None)
                }
                Err(e) => Err(e.to_string()),
            }
        });
        match checked {
            Ok(file) => file,
            Err(why) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        cache = %self.dir.path().display(),
                        "compiled-code cache entry not used: {why}"
                    );
                }
                None
            }
        }
    }

    /// Writes an entry: a new `0600` file (never an existing name, never through a link),
    /// renamed over the name, so a reader never sees half of one.
    pub fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        private(&self.dir).map_err(std::io::Error::other)?;
        let tmp = format!(
            ".{name}.tmp{}-{}",
            std::process::id(),
            self.writes.fetch_add(1, Ordering::Relaxed)
        );
        let written = self
            .dir
            .create_new(&tmp, 0o600)
            .and_then(|mut f| f.write_all(bytes))
            .and_then(|()| self.dir.rename(&tmp, name));
        if written.is_err() {
            let _ = self.dir.remove_file(&tmp);
        }
        written
    }
}

/// Opens `dir` once, walking from `/` one directory handle at a time, never through a link
/// at a step, and checks at each step that no other user can swap the next directory:
/// the one holding it is owned by this user or root, and writable by no one else unless its
/// sticky bit keeps others from renaming a directory this user (or root) owns. The links of
/// the path above `dir` are resolved first; `dir` itself must not be one.
fn open_unswappable(dir: &Path) -> Result<Dir, String> {
    use std::os::unix::fs::MetadataExt as _;
    let shown = |p: &Path| p.display().to_string();
    let absolute = std::path::absolute(dir).map_err(|e| format!("{}: {e}", shown(dir)))?;
    let (Some(parent), Some(last)) = (absolute.parent(), absolute.file_name()) else {
        return Err(format!("{} is not a directory weir can own", shown(dir)));
    };
    let parent = std::fs::canonicalize(parent).map_err(|e| format!("{}: {e}", shown(parent)))?;
    let mut steps: Vec<String> = Vec::new();
    for c in parent
        .components()
        .chain([std::path::Component::Normal(last)])
    {
        match c {
            std::path::Component::RootDir => {}
            std::path::Component::Normal(n) => steps.push(
                n.to_str()
                    .ok_or_else(|| format!("{}: not a UTF-8 path", shown(dir)))?
                    .to_owned(),
            ),
            _ => return Err(format!("{}: not a plain path", shown(dir))),
        }
    }
    let me = effective_uid();
    let mut holder = Dir::open(Path::new("/"), false).map_err(|e| format!("/: {e}"))?;
    let mut holder_meta = holder.metadata().map_err(|e| format!("/: {e}"))?;
    for step in &steps {
        let at = holder.path().join(step);
        let child = holder.child_dir(step).map_err(|e| {
            format!(
                "{} is not a directory (a symlink or something else): {e}",
                shown(&at)
            )
        })?;
        let child_meta = child
            .metadata()
            .map_err(|e| format!("{}: {e}", shown(&at)))?;
        let holder_owner = holder_meta.uid();
        let holder_mode = holder_meta.mode();
        let child_owner = child_meta.uid();
        if holder_owner != me && holder_owner != 0 {
            return Err(format!(
                "{} is owned by uid {holder_owner}, who can swap {} (this user is uid {me})",
                shown(holder.path()),
                shown(&at)
            ));
        }
        let sticky = holder_mode & 0o1000 != 0;
        if holder_mode & 0o022 != 0 && !(sticky && (child_owner == me || child_owner == 0)) {
            return Err(format!(
                "{} is writable by {} (mode {:o}){}, so they can swap {}",
                shown(holder.path()),
                if holder_mode & 0o002 != 0 {
                    "other users"
                } else {
                    "its group"
                },
                holder_mode & 0o7777,
                if sticky {
                    format!(" and {} is owned by uid {child_owner}", shown(&at))
                } else {
                    " without the sticky bit".to_owned()
                },
                shown(&at)
            ));
        }
        holder = child;
        holder_meta = child_meta;
    }
    // Messages name the directory as it was given.
    Ok(Dir::with_path(holder, dir))
}

/// Whether the open directory is one only the current user can write: owned by this user,
/// not writable by group or others.
fn private(dir: &Dir) -> Result<(), String> {
    let meta = dir
        .metadata()
        .map_err(|e| format!("{}: {e}", dir.path().display()))?;
    owned_by_me_alone(&meta, dir.path())
}

/// Whether `meta` (of an open file or directory) is owned by this user and writable by
/// nobody else.
fn owned_by_me_alone(meta: &std::fs::Metadata, path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let me = effective_uid();
    if meta.uid() != me {
        return Err(format!(
            "{} is owned by uid {}, not by this user (uid {me})",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by {} (mode {:o})",
            path.display(),
            if meta.mode() & 0o002 != 0 {
                "other users"
            } else {
                "its group"
            },
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cwasm(body: &[u8], made_from: &str) -> Vec<u8> {
        let mut b = body.to_vec();
        b.extend_from_slice(cwasm_trailer(made_from).as_bytes());
        b
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(bytes))
    }

    #[test]
    fn only_pinned_bytes_made_from_this_plugin_pass() {
        let plugin = "a".repeat(64);
        let good = cwasm(b"artifact", &plugin);
        let bytes = |b: &[u8]| Precompiled::Bytes {
            from: "s3://b/p.cwasm".into(),
            bytes: b.to_vec(),
        };
        match verify(bytes(&good), Some(&sha(&good)), &plugin) {
            Ok(VerifiedArtifact::Bytes { bytes, end }) => assert_eq!(&bytes[..end], b"artifact"),
            other => panic!("{other:?}"),
        }
        // A file only its owner can write is checked through a mapping and handed over as
        // the open file; one others can write is read, and the bytes checked are handed over.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.cwasm");
        std::fs::write(&path, &good).expect("write");
        let as_file = || verify(Precompiled::File(path.clone()), Some(&sha(&good)), &plugin);
        assert!(matches!(as_file(), Ok(VerifiedArtifact::OwnFile(_))));
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        }
        assert!(matches!(as_file(), Ok(VerifiedArtifact::Bytes { .. })));
        assert!(matches!(
            verify(bytes(&good), None, &plugin),
            Err(Refused::Unpinned { .. })
        ));
        assert!(matches!(
            verify(bytes(&good), Some(&"0".repeat(64)), &plugin),
            Err(Refused::PinMismatch { .. })
        ));
        // A forged trailer does not help: the pin is over the whole file.
        let forged = cwasm(b"other code", &plugin);
        assert!(matches!(
            verify(bytes(&forged), Some(&sha(&good)), &plugin),
            Err(Refused::PinMismatch { .. })
        ));
        // Pinned, but made from another plugin: the operator pinned the wrong pair.
        let other = cwasm(b"artifact", &"b".repeat(64));
        assert!(matches!(
            verify(bytes(&other), Some(&sha(&other)), &plugin),
            Err(Refused::OtherPlugin { .. })
        ));
        let untrailed = b"artifact".to_vec();
        assert!(matches!(
            verify(bytes(&untrailed), Some(&sha(&untrailed)), &plugin),
            Err(Refused::Unusable { .. })
        ));
    }

    #[test]
    fn the_cache_is_created_private_and_refused_when_others_can_write_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/b/weir");
        let cache = CompiledCache::open(dir.clone()).expect("created");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        cache.write("e.cwasm", b"x").expect("write");
        assert_eq!(mode(&dir.join("e.cwasm")), 0o600);
        assert!(cache.open_entry("e.cwasm").is_some());
        assert!(cache.open_entry("missing.cwasm").is_none());

        // An entry someone else could have written is not trusted.
        std::fs::set_permissions(dir.join("e.cwasm"), std::fs::Permissions::from_mode(0o666))
            .expect("chmod");
        assert!(cache.open_entry("e.cwasm").is_none());

        // Neither is a directory that became writable by others after it was opened...
        std::fs::set_permissions(dir.join("e.cwasm"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(cache.open_entry("e.cwasm").is_none());
        assert!(cache.write("f.cwasm", b"x").is_err());
        // ...nor is one opened that way, nor a symlink to a private directory.
        assert!(CompiledCache::open(dir.clone()).is_none());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        assert!(CompiledCache::open(link).is_none());
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
    }

    #[test]
    fn a_cache_whose_path_others_can_swap_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        let root = tempfile::tempdir().expect("tempdir");
        // XDG_CACHE_HOME in a directory anyone can write, without the sticky bit: whoever
        // can write it can rename `weir` away and put their own directory in its place.
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        chmod(&shared, 0o777);
        let cache = shared.join("cache/weir");
        assert!(CompiledCache::open(cache.clone()).is_none());
        // Its group alone can write it: the same.
        chmod(&shared, 0o775);
        assert!(CompiledCache::open(cache.clone()).is_none());
        // With the sticky bit (as /tmp), others cannot rename what this user owns.
        chmod(&shared, 0o1777);
        assert!(CompiledCache::open(cache.clone()).is_some());
        chmod(&shared, 0o755);
        assert!(CompiledCache::open(cache.clone()).is_some());
        // As root, the tests can give a directory on the path away: its owner can swap
        // what it holds, however tight its mode.
        if effective_uid() == 0 {
            std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).expect("chown");
            assert!(CompiledCache::open(cache.clone()).is_none());
            // ...and a sticky, world-writable directory does not protect a child someone
            // else owns.
            std::os::unix::fs::chown(&shared, Some(0), Some(0)).expect("chown");
            chmod(&shared, 0o1777);
            std::os::unix::fs::chown(shared.join("cache"), Some(65534), Some(65534))
                .expect("chown");
            assert!(CompiledCache::open(cache).is_none());
        }
    }

    #[test]
    fn a_cache_entry_is_read_from_the_directory_opened_even_after_the_path_is_swapped() {
        use std::io::Read as _;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("weir");
        let cache = CompiledCache::open(dir.clone()).expect("opened");
        cache.write("e.cwasm", b"weir's own").expect("write");
        // The path is swapped for another private directory holding other code under the
        // same name (what a swap of a shared ancestor would do).
        std::fs::rename(&dir, root.path().join("moved")).expect("rename");
        let other = CompiledCache::open(dir.clone()).expect("the other");
        other.write("e.cwasm", b"attacker's").expect("write");
        let mut read = String::new();
        cache
            .open_entry("e.cwasm")
            .expect("the entry")
            .read_to_string(&mut read)
            .expect("read");
        assert_eq!(read, "weir's own");
        // An entry that is a FIFO or a link is refused without blocking.
        mkfifo(&root.path().join("moved/fifo.cwasm"));
        assert!(cache.open_entry("fifo.cwasm").is_none());
        std::os::unix::fs::symlink("/dev/zero", root.path().join("moved/zero.cwasm"))
            .expect("link");
        assert!(cache.open_entry("zero.cwasm").is_none());
    }

    #[test]
    fn a_cwasm_that_is_not_a_regular_file_or_too_large_is_refused_without_reading_it() {
        let plugin = "a".repeat(64);
        let dir = tempfile::tempdir().expect("tempdir");
        let verdict = |name: &str| match verify(
            Precompiled::File(dir.path().join(name)),
            Some(&"0".repeat(64)),
            &plugin,
        ) {
            Err(Refused::Unusable { file, message }) => {
                assert_eq!(file, dir.path().join(name).display().to_string());
                message
            }
            other => panic!("{other:?}"),
        };
        mkfifo(&dir.path().join("fifo.cwasm"));
        assert_eq!(verdict("fifo.cwasm"), "it is a FIFO, not a regular file");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.cwasm")).expect("link");
        assert_eq!(
            verdict("zero.cwasm"),
            "it is a symbolic link, and weir does not follow links to native code"
        );
        std::fs::write(dir.path().join("real.cwasm"), b"x").expect("write");
        std::os::unix::fs::symlink(dir.path().join("real.cwasm"), dir.path().join("l.cwasm"))
            .expect("link");
        assert!(verdict("l.cwasm").contains("symbolic link"));
        std::fs::create_dir(dir.path().join("d.cwasm")).expect("mkdir");
        assert_eq!(verdict("d.cwasm"), "it is a directory, not a regular file");
        std::fs::File::create(dir.path().join("huge.cwasm"))
            .and_then(|f| f.set_len(MAX_FILE_BYTES + 1))
            .expect("sparse");
        assert_eq!(
            verdict("huge.cwasm"),
            "it is 268435457 bytes, more than the cap of 268435456 bytes"
        );
    }
}
