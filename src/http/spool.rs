//! Request bodies larger than memory: past `--body-buffer-size`, a body is written to an
//! unnamed temporary file as it arrives (the spool), so the server holds at most one read's
//! worth of it, however large it is; the handler then gets the whole body, mapped into memory
//! ([`Request::body`]) and as the file itself ([`Request::body_file`], to read it as a stream
//! or send it on without a copy).
//!
//! Spooling rather than handing the handler a stream: a handler runs to completion on the
//! worker's thread, so one that waited for body bytes would stall every connection of its
//! core. The file is created with `O_TMPFILE` (no name, gone when its last descriptor closes),
//! or created and unlinked at once where the filesystem lacks it. Writes go to the page cache
//! synchronously, one read's worth at a time: the worker reads the socket again only once a
//! read is written out, which is the upload's backpressure.
//!
//! [`Request::body`]: super::Request::body
//! [`Request::body_file`]: super::Request::body_file

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A body being written to its temporary file.
#[derive(Debug)]
pub(crate) struct Spool {
    file: File,
    len: u64,
}

impl Spool {
    /// A new, empty spool file in `dir`, readable and writable by this process only.
    pub(crate) fn create(dir: &Path) -> io::Result<Spool> {
        let file = match open_tmpfile(dir) {
            Ok(file) => file,
            // The filesystem has no O_TMPFILE: create a unique name and unlink it at once.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
                create_unlinked(dir)?
            }
            Err(e) => return Err(e),
        };
        Ok(Spool { file, len: 0 })
    }

    /// Append `bytes`.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The whole body, mapped read-only, with its file.
    pub(crate) fn finish(self) -> io::Result<Spooled> {
        let map = Mapped::new(&self.file, self.len)?;
        Ok(Spooled {
            file: self.file,
            map,
        })
    }
}

/// A complete spooled body: its file, and the file mapped into memory.
#[derive(Debug)]
pub(crate) struct Spooled {
    pub(crate) file: File,
    pub(crate) map: Mapped,
}

/// A read-only, private mapping of a whole file (pages are read in when touched, and belong
/// to the page cache: a body that is never read costs no memory).
#[derive(Debug)]
pub(crate) struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone (unmapped once, in Drop);
// reading it from another thread is as safe as reading any immutable bytes.
unsafe impl Send for Mapped {}

impl Mapped {
    pub(crate) fn new(file: &File, len: u64) -> io::Result<Mapped> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "body too large to map"))?;
        if len == 0 {
            return Ok(Mapped {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: maps `len` bytes of a file we hold, read-only and private; the result is
        // checked below, and unmapped once, in Drop.
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
            return Err(io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping is `len` readable bytes, alive until Drop; the spool file is
        // never written again once mapped, and nothing else has it open for writing (it has
        // no name), so the bytes do not change and the pages cannot vanish.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmaps exactly the mapping made in `new`, once; no slice of it outlives
            // `self` (`bytes` borrows it).
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

fn open_tmpfile(dir: &Path) -> io::Result<File> {
    let path = c_path(dir)?;
    // SAFETY: open reads a NUL-terminated path; a non-negative result is a new descriptor
    // owned by nobody else.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn create_unlinked(dir: &Path) -> io::Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    for _ in 0..16 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = dir.join(format!(".ringcorn-body-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&name)
        {
            Ok(file) => {
                std::fs::remove_file(&name)?;
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no unused temporary file name",
    ))
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn spooled_bytes_are_mapped_and_readable_from_the_file() {
        let mut spool = Spool::create(&std::env::temp_dir()).expect("spool");
        spool.write(b"hello ").expect("write");
        spool.write(b"world").expect("write");
        assert_eq!(spool.len(), 11);
        let spooled = spool.finish().expect("finish");
        assert_eq!(spooled.map.bytes(), b"hello world");
        let mut text = String::new();
        let mut file = &spooled.file;
        std::io::Seek::rewind(&mut file).expect("rewind");
        file.read_to_string(&mut text).expect("read");
        assert_eq!(text, "hello world");
    }

    #[test]
    fn the_fallback_leaves_no_name_behind() {
        let dir = std::env::temp_dir().join(format!("ringcorn-spool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut file = create_unlinked(&dir).expect("file");
        file.write_all(b"x").expect("write");
        assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 0);
        std::fs::remove_dir(&dir).expect("rmdir");
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        assert!(Spool::create(Path::new("/nonexistent-ringcorn-dir")).is_err());
    }
}
