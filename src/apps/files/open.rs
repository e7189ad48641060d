//! Opening files beneath the root directory, so that no path, symlink or race leads outside it.
//!
//! The root is held open (`O_PATH`) and every file is opened relative to it with `openat2(2)`
//! and `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: the kernel itself refuses (`EXDEV`) any
//! resolution that would leave the root: a `..` that climbs above it, an absolute symlink, a
//! relative one that climbs out, a `/proc` magic link. Symlinks that stay inside are followed.
//! The check is done during the walk, so renaming directories meanwhile does not defeat it.
//!
//! Where `openat2` does not exist (Linux before 5.6: `ENOSYS`) or a seccomp filter refuses it
//! (older container profiles: `EPERM`, found once by [`probe`]), a fallback walks the path one
//! component at a time with `openat` and `O_NOFOLLOW`: it refuses every symlink, inside the
//! root or not (404), since following one safely is what it cannot do. `.` and `..` never
//! reach either (see [`super::path`]).
//!
//! Every file is opened `O_NONBLOCK`, so that a FIFO under the root never blocks the worker
//! (a FIFO is then refused by its type); [`clear_nonblock`] takes the flag off a regular file
//! before it is sent. A device node under the root is opened (and then refused by its type),
//! so none belongs there.
//!
//! Cost: the open and the `fstat` that follows are synchronous system calls on the worker's
//! thread, once per request (no cache of descriptors); on a warm dentry cache each is a few
//! microseconds, while a cold disk makes the worker wait for it.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How paths are resolved beneath the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolver {
    /// `openat2` with `RESOLVE_BENEATH`: symlinks inside the root are followed.
    Openat2,
    /// One `openat(O_NOFOLLOW)` per component: every symlink is refused.
    Walk,
}

/// Flags of every file opened for serving.
const FILE_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;

/// Opens `root` as the directory files are served from (`O_PATH | O_DIRECTORY | O_CLOEXEC`).
/// The error names the path and says why (missing, not a directory, not searchable).
pub(crate) fn open_root(root: &Path) -> Result<OwnedFd, String> {
    let c = std::ffi::CString::new(root.as_os_str().as_bytes())
        .map_err(|_| format!("{}: the path has a NUL byte", root.display()))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call; open returns a new
    // descriptor or -1.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOTDIR) => format!("{}: not a directory", root.display()),
            _ => format!("{}: {e}", root.display()),
        });
    }
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Serving needs search permission (x) on the root; reading it (listing) is never done.
    // SAFETY: `fd` is open; "." is a NUL-terminated literal.
    let rc = unsafe { libc::faccessat(fd.as_raw_fd(), c".".as_ptr(), libc::X_OK, 0) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(format!("{}: cannot be searched: {e}", root.display()));
    }
    Ok(fd)
}

/// Finds out once whether `openat2` works here, by opening the root itself through it.
pub(crate) fn probe(root: BorrowedFd<'_>) -> Resolver {
    match openat2_beneath(root, c".", libc::O_PATH | libc::O_CLOEXEC) {
        Ok(_) => Resolver::Openat2,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
            Resolver::Walk
        }
        // Any other error is the root's, not openat2's: requests will report it.
        Err(_) => Resolver::Openat2,
    }
}

/// Opens `rel` (relative, `/`-separated, no `.`/`..` segments; empty for the root itself)
/// beneath `root` for reading. `cpath` is scratch space for its NUL-terminated copy.
pub(crate) fn open_beneath(
    root: BorrowedFd<'_>,
    resolver: Resolver,
    rel: &[u8],
    cpath: &mut Vec<u8>,
) -> io::Result<File> {
    cpath.clear();
    cpath.extend_from_slice(if rel.is_empty() { b"." } else { rel });
    cpath.push(0);
    let c =
        CStr::from_bytes_with_nul(cpath).map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?;
    let fd = match resolver {
        Resolver::Openat2 => match openat2_beneath(root, c, FILE_FLAGS) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => walk_nofollow(root, rel)?,
            other => other?,
        },
        Resolver::Walk => walk_nofollow(root, rel)?,
    };
    Ok(File::from(fd))
}

/// `openat2(root, path, {flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS})`, retried a few
/// times on `EAGAIN` (the kernel's answer when a concurrent rename might have let a `..`
/// escape).
fn openat2_beneath(root: BorrowedFd<'_>, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `open_how` is plain integers (libc marks it non-exhaustive, so it cannot be
    // built field by field); all zero is a valid value, and the fields are set next.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a valid `open_how` whose size is
        // passed with it; both outlive the call, which returns a new descriptor or -1.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if rc >= 0 {
            // A descriptor fits in RawFd: the kernel hands out ints.
            let fd = RawFd::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
            // SAFETY: `fd` was just returned by openat2 and is owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) if tries < 3 => tries += 1,
            _ => return Err(e),
        }
    }
}

/// The fallback without `openat2`: each directory component with `O_PATH | O_DIRECTORY |
/// O_NOFOLLOW`, the last with [`FILE_FLAGS`]` | O_NOFOLLOW`; a symlink anywhere fails
/// (`ENOTDIR` or `ELOOP`). Only safe because `rel` has no `.` or `..` segments and is relative.
pub(crate) fn walk_nofollow(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    if rel.first() == Some(&b'/') {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    let mut components = rel
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .peekable();
    if components.peek().is_none() {
        return openat_nofollow(root, b".", FILE_FLAGS);
    }
    let mut dir: Option<OwnedFd> = None;
    while let Some(component) = components.next() {
        if component == b"." || component == b".." {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let at = dir.as_ref().map_or(root, |d| d.as_fd());
        if components.peek().is_none() {
            return openat_nofollow(at, component, FILE_FLAGS);
        }
        let next = openat_nofollow(
            at,
            component,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )?;
        dir = Some(next);
    }
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

/// `openat(at, name, flags | O_NOFOLLOW)`, retried on `EINTR`.
fn openat_nofollow(at: BorrowedFd<'_>, name: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let mut c = Vec::with_capacity(name.len() + 1);
    c.extend_from_slice(name);
    c.push(0);
    let c =
        CStr::from_bytes_with_nul(&c).map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?;
    loop {
        // SAFETY: `c` is NUL-terminated and outlives the call; openat returns a new
        // descriptor or -1.
        let fd = unsafe { libc::openat(at.as_raw_fd(), c.as_ptr(), flags | libc::O_NOFOLLOW) };
        if fd >= 0 {
            // SAFETY: `fd` was just returned by openat and is owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Takes `O_NONBLOCK` off a regular file before it is sent (see the module doc).
pub(crate) fn clear_nonblock(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open for as long as `file` is borrowed; F_GETFL takes no argument.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        return Ok(());
    }
    // SAFETY: as above; F_SETFL takes an int of status flags.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The status an open error is answered with: 403 for `EACCES`, 404 for what says the name
/// leads to no file that may be served, 500 (logged by the caller) for anything else.
pub(crate) fn status_of(e: &io::Error) -> u16 {
    match e.raw_os_error() {
        Some(libc::EACCES) => 403,
        Some(
            libc::ENOENT
            | libc::ENOTDIR
            | libc::ELOOP
            | libc::EXDEV
            | libc::ENAMETOOLONG
            | libc::ENXIO
            | libc::ENODEV,
        ) => 404,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    /// A fresh directory under the system temp dir, removed on drop.
    struct Tmp(std::path::PathBuf);

    impl Tmp {
        fn new(tag: &str) -> Tmp {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "ringcorn-files-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("create temp dir");
            Tmp(p)
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// root/ with a.txt, sub/b.txt, in-link -> a.txt, sub/up-link -> ../a.txt, out-link ->
    /// ../secret, abs-link -> /etc/hostname, dir-link -> sub; and secret beside root.
    fn tree() -> (Tmp, std::path::PathBuf) {
        let t = Tmp::new("open");
        let root = t.0.join("root");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("a.txt"), b"A").expect("write");
        std::fs::write(root.join("sub/b.txt"), b"B").expect("write");
        std::fs::write(t.0.join("secret"), b"SECRET").expect("write");
        symlink("a.txt", root.join("in-link")).expect("symlink");
        symlink("../a.txt", root.join("sub/up-link")).expect("symlink");
        symlink("../secret", root.join("out-link")).expect("symlink");
        symlink("/etc/hostname", root.join("abs-link")).expect("symlink");
        symlink("sub", root.join("dir-link")).expect("symlink");
        (t, root)
    }

    fn read(r: io::Result<File>) -> io::Result<String> {
        let mut s = String::new();
        r?.read_to_string(&mut s)?;
        Ok(s)
    }

    fn errno<T>(r: io::Result<T>) -> i32 {
        match r {
            Ok(_) => panic!("opened"),
            Err(e) => e.raw_os_error().expect("an OS error"),
        }
    }

    #[test]
    fn root_must_be_a_searchable_directory() {
        let (t, root) = tree();
        assert!(open_root(&root).is_ok());
        let e = open_root(&root.join("a.txt")).expect_err("a file");
        assert!(e.contains("not a directory"), "{e}");
        let e = open_root(&t.0.join("missing")).expect_err("missing");
        assert!(e.contains("No such file"), "{e}");
        // The root may itself be reached through a symlink (it is the operator's choice).
        symlink(&root, t.0.join("root-link")).expect("symlink");
        assert!(open_root(&t.0.join("root-link")).is_ok());
    }

    #[test]
    fn openat2_stays_beneath_the_root() {
        let (_t, root) = tree();
        let fd = open_root(&root).expect("root");
        let r = fd.as_fd();
        if probe(r) != Resolver::Openat2 {
            eprintln!("openat2 unavailable here: skipping");
            return;
        }
        let mut c = Vec::new();
        let mut open = |rel: &str| open_beneath(r, Resolver::Openat2, rel.as_bytes(), &mut c);
        assert_eq!(read(open("a.txt")).expect("a"), "A");
        assert_eq!(read(open("sub/b.txt")).expect("b"), "B");
        // Symlinks that stay inside are followed.
        assert_eq!(read(open("in-link")).expect("in-link"), "A");
        assert_eq!(read(open("sub/up-link")).expect("up-link"), "A");
        assert_eq!(read(open("dir-link/b.txt")).expect("dir-link"), "B");
        // Those that leave are refused by the kernel.
        assert_eq!(errno(open("out-link")), libc::EXDEV);
        assert_eq!(errno(open("abs-link")), libc::EXDEV);
        // As are `..` and absolute paths, should they ever get this far.
        assert_eq!(errno(open("../secret")), libc::EXDEV);
        assert_eq!(errno(open("sub/../../secret")), libc::EXDEV);
        assert_eq!(errno(open("/etc/hostname")), libc::EXDEV);
        assert_eq!(errno(open("missing")), libc::ENOENT);
        assert_eq!(errno(open("a.txt/x")), libc::ENOTDIR);
        // The root itself, and directories, open (their type is checked by the caller).
        assert!(open("").expect("root").metadata().expect("fstat").is_dir());
        assert!(open("sub")
            .expect("sub")
            .metadata()
            .expect("fstat")
            .is_dir());
    }

    #[test]
    fn the_walk_fallback_refuses_every_symlink() {
        let (_t, root) = tree();
        let fd = open_root(&root).expect("root");
        let r = fd.as_fd();
        let mut c = Vec::new();
        let mut open = |rel: &str| open_beneath(r, Resolver::Walk, rel.as_bytes(), &mut c);
        assert_eq!(read(open("a.txt")).expect("a"), "A");
        assert_eq!(read(open("sub/b.txt")).expect("b"), "B");
        assert_eq!(errno(open("in-link")), libc::ELOOP);
        assert_eq!(errno(open("out-link")), libc::ELOOP);
        assert_eq!(errno(open("abs-link")), libc::ELOOP);
        assert_eq!(errno(open("sub/up-link")), libc::ELOOP);
        assert_eq!(errno(open("dir-link/b.txt")), libc::ENOTDIR);
        assert_eq!(errno(open("../secret")), libc::ENOENT);
        assert_eq!(errno(open("/etc/hostname")), libc::EXDEV);
        assert_eq!(errno(open("missing")), libc::ENOENT);
        assert_eq!(errno(open("missing/x")), libc::ENOENT);
        assert_eq!(errno(open("a.txt/x")), libc::ENOTDIR);
        assert!(open("").expect("root").metadata().expect("fstat").is_dir());
        assert!(open("sub")
            .expect("sub")
            .metadata()
            .expect("fstat")
            .is_dir());
    }

    #[test]
    fn a_fifo_opens_without_blocking_and_nonblock_comes_off() {
        let (_t, root) = tree();
        let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).expect("c");
        // SAFETY: `fifo` is NUL-terminated.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let fd = open_root(&root).expect("root");
        let mut c = Vec::new();
        for resolver in [Resolver::Openat2, Resolver::Walk] {
            if resolver == Resolver::Openat2 && probe(fd.as_fd()) != resolver {
                continue;
            }
            let f = open_beneath(fd.as_fd(), resolver, b"fifo", &mut c).expect("fifo");
            assert!(!f.metadata().expect("fstat").is_file());
        }
        let f = open_beneath(fd.as_fd(), Resolver::Walk, b"a.txt", &mut c).expect("a");
        clear_nonblock(&f).expect("fcntl");
        // SAFETY: plain F_GETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
    }

    #[test]
    fn statuses_of_errors() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(status_of(&e(libc::EACCES)), 403);
        for n in [
            libc::ENOENT,
            libc::ENOTDIR,
            libc::ELOOP,
            libc::EXDEV,
            libc::ENAMETOOLONG,
        ] {
            assert_eq!(status_of(&e(n)), 404);
        }
        assert_eq!(status_of(&e(libc::EMFILE)), 500);
        assert_eq!(status_of(&e(libc::EIO)), 500);
    }
}
