//! Another thread's line to a worker's ring: an eventfd the worker keeps a read armed on. The
//! master writes one to ask the worker to drain (graceful shutdown); with `--threads`, the
//! worker's handler threads write theirs when replies are ready (see `pool`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug)]
pub struct Wake {
    fd: OwnedFd,
}

impl Wake {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd has no pointer arguments; a non-negative result is a new descriptor
        // that we own from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        Ok(Wake {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Ask the worker to drain. Safe to call any number of times, from any thread.
    pub fn drain(&self) {
        // A failure leaves the worker to the graceful timeout.
        self.signal();
    }

    /// Complete the worker's read on this eventfd (at once, or when it is armed next).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own open eventfd. It cannot fail at
        // these counts (the counter does not overflow).
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}
