//! Check and use are one open: a directory opened once, and the files in it opened relative
//! to that handle, never following a link, so the file checked (owner, mode, kind, size,
//! hash) is the file used, whatever happens to the paths meanwhile.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// An open directory, and the path it was opened at (for messages only: nothing is looked
/// up by that path again).
#[derive(Debug)]
pub struct Dir {
    handle: File,
    path: PathBuf,
}

/// A file name as the kernel takes it: one component, no `/`, not `.` or `..`.
fn component(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// The result of a call that returns a file descriptor, as an owned [`File`].
fn owned(fd: libc::c_int) -> io::Result<File> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel, is open, and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

impl Dir {
    /// Opens the directory at `path`. With `follow` false, a symbolic link at its last
    /// component is refused (the kernel says ELOOP or ENOTDIR).
    pub fn open(path: &Path, follow: bool) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        // SAFETY: a NUL-terminated path and flags; the result is checked by `owned`.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | nofollow,
            )
        };
        Ok(Dir {
            handle: owned(fd)?,
            path: path.to_owned(),
        })
    }

    /// The same handle, named `path` in messages (a path that reaches it by other links).
    pub fn with_path(dir: Dir, path: &Path) -> Dir {
        Dir {
            handle: dir.handle,
            path: path.to_owned(),
        }
    }

    /// The path it was opened at, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's own metadata, from the handle (`fstat`).
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.handle.metadata()
    }

    /// The directory `name` inside this one, never through a link.
    pub fn child_dir(&self, name: &str) -> io::Result<Dir> {
        let c = component(name)?;
        // SAFETY: an open directory descriptor, a NUL-terminated single name; checked.
        let fd = unsafe {
            libc::openat(
                self.handle.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        Ok(Dir {
            handle: owned(fd)?,
            path: self.path.join(name),
        })
    }

    /// Opens the file `name` in this directory for reading: never through a link, and
    /// without blocking (a FIFO opens at once, and is then refused by what it is).
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        let c = component(name)?;
        // SAFETY: as in `child_dir`.
        let fd = unsafe {
            libc::openat(
                self.handle.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            )
        };
        owned(fd)
    }

    /// Creates the file `name` in this directory, which must not exist (not even as a
    /// link), with `mode`, for writing.
    pub fn create_new(&self, name: &str, mode: u32) -> io::Result<File> {
        let c = component(name)?;
        // SAFETY: as in `child_dir`; the mode is passed as the variadic argument O_CREAT
        // takes.
        let fd = unsafe {
            libc::openat(
                self.handle.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                mode as libc::c_uint,
            )
        };
        owned(fd)
    }

    /// Renames `from` to `to`, both in this directory.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (component(from)?, component(to)?);
        let fd = self.handle.as_raw_fd();
        // SAFETY: an open directory descriptor and two NUL-terminated single names.
        if unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Removes the file `name` from this directory.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        let c = component(name)?;
        // SAFETY: as in `rename`.
        if unsafe { libc::unlinkat(self.handle.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The file `name` in `dir`, opened once ([`Dir::open_file`]) and checked on that handle: a
/// regular file of at most `cap` bytes. Returns the handle and its metadata.
pub fn open_regular_in(
    dir: &Dir,
    name: &str,
    cap: u64,
) -> Result<(File, std::fs::Metadata), weir_core::location::ReadError> {
    use weir_core::location::ReadError;
    let shown =
        weir_core::text::one_line(&dir.path().join(name).display().to_string()).into_owned();
    let file = dir.open_file(name).map_err(|source| {
        // ELOOP: the name is a link, which O_NOFOLLOW refused.
        if source.raw_os_error() == Some(libc::ELOOP) {
            ReadError::Symlink {
                path: shown.clone(),
            }
        } else {
            ReadError::Io {
                path: shown.clone(),
                error: source,
            }
        }
    })?;
    let meta = file.metadata().map_err(|source| ReadError::Io {
        path: shown.clone(),
        error: source,
    })?;
    weir_core::location::check_regular(&meta, &shown, cap)?;
    Ok((file, meta))
}

/// The file `path` (a `.cwasm` beside a plugin), opened once through its directory's
/// handle ([`open_regular_in`]). The directory may be reached through links (the operator
/// chose it); the file itself never is.
pub fn open_regular(
    path: &Path,
    cap: u64,
) -> Result<(File, std::fs::Metadata), weir_core::location::ReadError> {
    use weir_core::location::ReadError;
    let shown = weir_core::text::one_line(&path.display().to_string()).into_owned();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ReadError::Io {
            path: shown.clone(),
            error: io::Error::new(io::ErrorKind::InvalidInput, "not a UTF-8 file name"),
        })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = Dir::open(parent, true).map_err(|source| ReadError::Io {
        path: shown.clone(),
        error: source,
    })?;
    open_regular_in(&dir, name, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cores_open_flags_are_the_kernels() {
        use weir_core::location::open_flags;
        assert_eq!(open_flags::NOFOLLOW, libc::O_NOFOLLOW);
        assert_eq!(open_flags::NONBLOCK, libc::O_NONBLOCK);
    }

    #[test]
    fn a_file_opened_through_the_directory_handle_is_the_one_checked_after_a_swap() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("d");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("f"), b"original").expect("write");
        let handle = Dir::open(&dir, false).expect("open");
        // The path now names another directory with other bytes under the same name.
        std::fs::rename(&dir, root.path().join("moved")).expect("rename");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("f"), b"attacker").expect("write");
        let (mut f, meta) = open_regular_in(&handle, "f", 100).expect("open");
        let bytes = weir_core::location::read_at_most(&mut f, meta.len(), "f", 100).expect("read");
        assert_eq!(bytes, b"original");
        assert!(component("../f").is_err() && component("..").is_err());
        // A link at the name is refused, by name.
        std::os::unix::fs::symlink("/dev/zero", root.path().join("moved/z")).expect("link");
        let err = open_regular_in(&handle, "z", 100).expect_err("a link");
        assert!(
            matches!(err, weir_core::location::ReadError::Symlink { .. }),
            "{err}"
        );
    }
}
